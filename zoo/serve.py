"""`zoo serve`: the zoo as an HTTP JSON API (FastAPI + uvicorn, the `serve` extra), with OpenAPI docs at /docs.

    GET  /livez, /healthz              {"status": "ok"}: the server answers (also HEAD; no key needed)
    GET  /readyz                       200 once the preloaded models are loaded and warmed, else 503 and why
    GET  /metrics                      Prometheus metrics (text format)
    GET  /v1/models                    the models: name, task, inputs, labels, test accuracy; one whose card
                                       cannot be read is listed as unavailable, with the reason
    GET  /v1/models/{name}             the model's card, once checked as `zoo.load` checks it
    POST /v1/models/{name}/predict     multipart: `image` (repeated, up to MAX_IMAGES), or `a` and `b` for the
                                       changer; or one image as the raw body (`Content-Type: image/...`);
                                       answers {"predictions": [...]}, one per image or pair, with the fields of
                                       `zoo predict --json`; a form field or query parameter `refine=false` gives
                                       the changer's network estimate alone

A model is loaded (files checked, session created, one warm-up run) on a worker thread, at startup for the
models `--preload` names, else on its first request; a load that failed is remembered for FAILURE_MEMORY seconds.
Each request's images are checked against the request's pixel budget (MAX_REQUEST_PIXELS, read from their
headers before anything is decoded) and decoded on the decoding threads, or on the event loop when their headers
claim INLINE_DECODE_PIXELS or fewer in all; then the requests waiting for a model run as one onnxruntime batch
(up to `max_batch` images, gathered for at most `batch_wait` seconds while other requests are still decoding).
At most `max_queue` requests per model are admitted at once; the next get 503 with Retry-After. The guard
(`zoo.guard`) checks Host, API key, body size and read time first; `zoo.observe` gives request ids, the access
log and the metrics. The routes run over a `Backend`: `LocalModels` here, the Ray Serve deployment in `zoo.ray`
on a cluster.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Protocol, Sequence

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route
from python_multipart.multipart import parse_options_header

from .card import ModelCard
from .engines import requested_runtime
from .errors import ImageError, ModelFileError, UnknownModelError, ZooError
from .files import CARD_FILE, GRAPH_FILE
from .guard import Guard, allowed_hosts, check_binding, timed_protocol
from .limits import (BATCH_WAIT, FAILURE_MEMORY, INLINE_DECODE_PIXELS, MAX_BATCH, MAX_IMAGES, MAX_QUEUE,
                     MAX_REQUEST_PIXELS, READ_TIMEOUT, RETRY_AFTER)
from .model import Model, concatenated, load
from .observe import LOG, METRICS_MEDIA_TYPE, Metrics, Observe, configure_logging
from .preprocess import MAX_PIXELS, ImageInput, claimed_pixels
from .registry import (HOME_ENV, PACKAGE_MODELS, card_dir, card_or_error, index, list_models, models_root,
                       without_folder)
from .release import VERSION
from .runtime import checked_card, sha256_file
from .tasks import Prediction, Task

#: The API's own paths: what the key guards when the API shares a server with other pages (`app.py --api`).
API_PATHS = ("/v1/", "/docs", "/openapi.json", "/metrics")
PREDICT_PATH = "/v1/models/{name}/predict"
#: The media types a raw request body may have: one image.
RAW_IMAGE_TYPES = ("image/", "application/octet-stream")


class QueueFull(ZooError):
    """A model has as many requests as it admits; answered 503 with Retry-After."""


class TooManyPixels(ZooError):
    """A request's images claim more pixels in all than the request's budget; answered 413."""


class Backend(Protocol):
    """Where the API's models live and run."""

    metrics: Metrics

    def loaded(self, name: str) -> bool:
        """Whether model `name` is loaded (and warmed) here."""

    async def model(self, name: str) -> Model:
        """Model `name`, loaded once off the event loop (UnknownModelError when there is none)."""

    def admission(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Holds a place in model `name`'s queue for one request while it is handled (QueueFull when none is
        left)."""

    async def predict(self, name: str, items: list[ImageInput | tuple[ImageInput, ...]],
                      refine: bool = True) -> list[Prediction]:
        """Predictions for one request's inputs, decoded (`prepared`) and run in one batch with other requests
        for the same model; `refine`: the changer's alignment (`Model.predict`)."""


def run_together(model: Model, requests: Sequence[dict[str, np.ndarray]]) -> list[list[Prediction]]:
    """Several requests' feeds through `model` in one onnxruntime run; each request's predictions, in order."""
    predictions = model.predict_prepared(concatenated(requests))
    sizes = [len(next(iter(feeds.values()))) for feeds in requests]
    starts = np.cumsum([0, *sizes])
    return [predictions[start:start + size] for start, size in zip(starts, sizes)]


def images_of(items: Sequence[ImageInput | tuple[ImageInput, ...]]) -> Iterator[ImageInput]:
    for item in items:
        yield from item if isinstance(item, tuple) else (item,)


async def prepared(model: Model, items: list[ImageInput | tuple[ImageInput, ...]], refine: bool = True,
                   decoder: ThreadPoolExecutor | None = None) -> dict[str, np.ndarray]:
    """`model.prepare_batch(items, refine)` within the request's pixel budget: the pixels the encoded images'
    headers claim are added up before anything is decoded (TooManyPixels over MAX_REQUEST_PIXELS); a request
    that claims INLINE_DECODE_PIXELS or fewer is decoded on the event loop, any other on `decoder` (default: the
    loop's threads), so that no upload stalls the loop whatever its size in bytes."""
    claims = [(item, claimed_pixels(image)) for item in items for image in images_of([item])
              if isinstance(image, (bytes, bytearray))]
    too_large = [item for item, claim in claims if claim > MAX_PIXELS]
    if too_large:  # refused from its header with zoo's own message (ZOO_MAX_PIXELS), before anything is decoded
        model.prepare_batch(too_large[:1], refine)
    claimed = sum(claim for _, claim in claims)
    if claimed > MAX_REQUEST_PIXELS:
        raise TooManyPixels(f"the request's images claim {claimed:,} pixels in all, over the limit of "
                            f"{MAX_REQUEST_PIXELS:,} per request (ZOO_MAX_REQUEST_PIXELS): send fewer or smaller "
                            "images per request.")
    if claimed <= INLINE_DECODE_PIXELS and all(isinstance(image, (bytes, bytearray)) for image in images_of(items)):
        return model.prepare_batch(items, refine)
    return await asyncio.get_running_loop().run_in_executor(decoder, model.prepare_batch, items, refine)


@dataclass
class Pending:
    feeds: dict[str, np.ndarray]
    count: int
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """One model's queue: requests that arrive together share one onnxruntime run. Event-driven: the batch
    waits for a request still decoding only until it is queued (or `batch_wait` has passed)."""

    def __init__(self, model: Model, metrics: Metrics, max_batch: int = MAX_BATCH, batch_wait: float = BATCH_WAIT,
                 max_queue: int = MAX_QUEUE) -> None:
        self.model, self.metrics = model, metrics
        self.max_batch, self.batch_wait, self.max_queue = max_batch, batch_wait, max_queue
        self.queue: deque[Pending] = deque()
        self.changed = asyncio.Event()  # set when a request is queued or stops decoding
        self.admitted = 0  # requests holding a place: decoding, queued or running
        self.decoding = 0  # requests whose images are being decoded: they will join the queue soon
        self.worker: asyncio.Task | None = None

    @contextlib.contextmanager
    def admission(self) -> Iterator[None]:
        if self.admitted >= self.max_queue:
            raise QueueFull(f"model {self.model.name!r} has {self.admitted} requests waiting, its limit "
                            f"(--max-queue): try again in {RETRY_AFTER} s.")
        self.admitted += 1
        depth = self.metrics.queue_depth.labels(self.model.name)
        depth.inc()
        try:
            yield
        finally:
            self.admitted -= 1
            depth.dec()

    async def predict(self, items: list[ImageInput | tuple[ImageInput, ...]], refine: bool = True,
                      decoder: ThreadPoolExecutor | None = None) -> list[Prediction]:
        if self.worker is None:
            self.worker = asyncio.create_task(self.run())
        self.decoding += 1
        try:
            feeds = await prepared(self.model, items, refine, decoder)
        finally:
            self.decoding -= 1
            self.changed.set()
        pending = Pending(feeds, len(items))
        self.queue.append(pending)
        self.changed.set()
        return await pending.done

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.changed.clear()
            if not self.queue:
                await self.changed.wait()
                continue
            batch = [self.queue.popleft()]
            size, deadline = batch[0].count, loop.time() + self.batch_wait
            # Take what is queued; wait (up to batch_wait) only while requests are still decoding.
            while size < self.max_batch:
                if self.queue:
                    if size + self.queue[0].count > self.max_batch:
                        break
                    batch.append(self.queue.popleft())
                    size += batch[-1].count
                    continue
                remaining = deadline - loop.time()
                if not self.decoding or remaining <= 0:
                    break
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            self.metrics.batch_size.labels(self.model.name).observe(size)
            try:
                answers = await asyncio.to_thread(run_together, self.model, [pending.feeds for pending in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(exc)
                continue
            self.metrics.images.labels(self.model.name).inc(size)
            for pending, answer in zip(batch, answers):
                if not pending.done.done():  # its client may have left
                    pending.done.set_result(answer)


def warm_up(model: Model) -> None:
    """One run on a blank input, so that the first request does not pay for onnxruntime's first-run setup."""
    height, width = model.card.inputs[0].height, model.card.inputs[0].width
    blank = np.zeros((height, width, 3), np.uint8)
    item = blank if len(model.card.inputs) == 1 else (blank,) * len(model.card.inputs)
    model.predict_prepared(model.prepare_batch([item], refine=False))


def loaded_and_warmed(name: str, metrics: Metrics, device: str = "auto", threads: int = 0,
                      runtime: str | None = None) -> Model:
    """Model `name` as a server runs it (registry names only, threads that sleep between runs), after one warm-up
    run; its load time and loaded state recorded in `metrics`. Blocking: call it on a worker thread."""
    started = time.perf_counter()
    model = load(name, device=device, threads=threads, spinning=False, registry_only=True, runtime=runtime)
    warm_up(model)
    metrics.load_seconds.labels(name).set(time.perf_counter() - started)
    metrics.loaded.labels(name).set(1)
    return model


class LocalModels:
    """`zoo serve`'s backend: each model loaded in this process (on a worker thread, once, and warmed) when it is
    preloaded or first asked for, with its own Batcher; images decoded on `decode_threads` threads."""

    def __init__(self, device: str = "auto", max_batch: int = MAX_BATCH, batch_wait: float = BATCH_WAIT,
                 max_queue: int = MAX_QUEUE, decode_threads: int | None = None, runtime: str | None = None) -> None:
        self.device, self.max_batch, self.batch_wait, self.max_queue = device, max_batch, batch_wait, max_queue
        self.runtime = runtime
        self.metrics = Metrics()
        self.batchers: dict[str, Batcher] = {}
        self.loading: dict[str, asyncio.Future] = {}
        self.failures: dict[str, tuple[float, ZooError]] = {}  # model -> (until when, why)
        self.decoder = ThreadPoolExecutor(decode_threads or os.cpu_count() or 1, thread_name_prefix="zoo-decode")

    def loaded(self, name: str) -> bool:
        return name in self.batchers

    async def model(self, name: str) -> Model:
        if name in self.batchers:
            return self.batchers[name].model
        loop = asyncio.get_running_loop()
        until, failure = self.failures.get(name, (0.0, None))
        if failure is not None and loop.time() < until:
            raise failure
        if name not in self.loading:
            self.loading[name] = asyncio.ensure_future(asyncio.to_thread(self._load, name))
        task = self.loading[name]
        try:
            model = await asyncio.shield(task)  # one client leaving does not cancel the others' load
        except UnknownModelError:
            raise  # not remembered: any name can be asked for
        except ZooError as exc:
            self.failures[name] = (loop.time() + FAILURE_MEMORY, exc)
            raise
        finally:
            if self.loading.get(name) is task and task.done():
                del self.loading[name]
        self.failures.pop(name, None)
        if name not in self.batchers:
            self.batchers[name] = Batcher(model, self.metrics, self.max_batch, self.batch_wait, self.max_queue)
        return self.batchers[name].model

    def _load(self, name: str) -> Model:
        return loaded_and_warmed(name, self.metrics, self.device, runtime=self.runtime)

    def admission(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.batchers[name].admission()

    async def predict(self, name: str, items: list[ImageInput | tuple[ImageInput, ...]],
                      refine: bool = True) -> list[Prediction]:
        await self.model(name)
        return await self.batchers[name].predict(items, refine, self.decoder)


class Readiness:
    """Whether the server is ready (`/readyz`): every model it was asked to preload is loaded and warmed."""

    def __init__(self, backend: Backend, preload: Sequence[str]) -> None:
        self.backend, self.preload = backend, tuple(preload)
        self.failed: dict[str, str] = {}
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.preload:
            self.task = asyncio.create_task(self.load_all())

    async def load_all(self) -> None:
        started = time.perf_counter()
        for name in self.preload:
            try:
                model = await self.backend.model(name)
            except ZooError as exc:
                self.failed[name] = public_message(str(exc))
                LOG.error("not ready: model %r did not load: %s", name, exc)
                continue
            self.failed.pop(name, None)
            LOG.info("loaded %s on %s", name, getattr(model, "device", "?"))
        if not self.failed:
            LOG.info("ready: %d model(s) loaded in %.1f s", len(self.preload), time.perf_counter() - started)

    def state(self) -> tuple[bool, dict[str, Any]]:
        loading = [name for name in self.preload if not self.backend.loaded(name)]
        if not loading:
            return True, {"status": "ready", "models": list(self.preload)}
        failed = {name: reason for name, reason in self.failed.items() if name in loading}
        return False, {"status": "not ready", "loading": [n for n in loading if n not in failed], "failed": failed}


#: The predict route in the OpenAPI schema, so that /docs can send files. The route itself is a plain Starlette
#: route (FastAPI's parameter handling costs more per request than the rest of the framework together), so its
#: operation is written here rather than derived from its signature.
PREDICT_OPENAPI: dict[str, Any] = {
    "summary": "Predict",
    "description": "One prediction per image (or pair), with the fields of `zoo predict --json`.",
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": f"the image(s), up to {MAX_IMAGES} (models with one input)"},
            "a": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "the changer: view A of each pair (as many as `b`, paired in order)"},
            "b": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "the changer: view B of each pair"},
            "refine": {"type": "boolean", "default": True,
                       "description": "the changer: refine the network's estimate by aligning the views"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}}}},
    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                    "description": "the model (GET /v1/models lists them)"},
                   {"name": "refine", "in": "query", "required": False, "schema": {"type": "boolean"},
                    "description": "as the form field `refine` (for a raw image body)"}],
    "responses": {"200": {"description": "{\"predictions\": [...]}", "content": {"application/json": {}}},
                  "404": {"description": "no model of that name"},
                  "413": {"description": "over a limit: body size, images or pixels per request"},
                  "422": {"description": "an image zoo refuses, with the reason"},
                  "503": {"description": "the model's queue is full: try again after Retry-After seconds"}},
}


def create_app(api_key: str | None = None, backend: Backend | None = None, guarded: tuple[str, ...] = ("/",),
               allowed_hosts: tuple[str, ...] | None = None, preload: Sequence[str] = (),
               access_log: bool = False) -> FastAPI:
    """The API over the models in `zoo.list()`, run by `backend` (default: `LocalModels()`); `api_key`: required
    as a bearer token on every path that starts with one of `guarded` (all by default) but the health routes;
    `allowed_hosts`: the Host header names answered (None: any; see `zoo.guard.allowed_hosts`); `preload`: models
    loaded at startup, which /readyz waits for; `access_log`: one log line per request (`zoo.access`)."""
    models_here = backend or LocalModels()
    readiness = Readiness(models_here, preload)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        readiness.start()
        yield

    # No OpenTelemetry from FastAPI itself: /metrics is the server's account of its requests.
    app = FastAPI(title="zoo", description="The zoo's models over HTTP.", version=VERSION, docs_url=None,
                  redoc_url=None, lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})
    app.openapi_version = "3.0.3"  # the version the packaged Swagger UI (4.x) renders; file fields as format: binary
    app.add_middleware(Guard, api_key=api_key, guarded=guarded, allowed_hosts=allowed_hosts)
    app.add_middleware(Observe, metrics=models_here.metrics, access_log=access_log, routes=app.router.routes)

    @app.exception_handler(ZooError)
    async def zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownModelError) else 422 if isinstance(exc, ImageError) else \
            413 if isinstance(exc, TooManyPixels) else 503 if isinstance(exc, QueueFull) else 500
        if status == 500:  # the full message, paths included, with the id the client was given
            LOG.warning("%s %s: %s", request.method, request.url.path, exc,
                        extra={"request_id": request.scope.get("state", {}).get("request_id", "-")})
        headers = {"Retry-After": str(RETRY_AFTER)} if status == 503 else None
        return JSONResponse({"detail": public_message(str(exc))}, status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": public_message(str(exc.detail))}, exc.status_code, headers=exc.headers)

    async def livez() -> dict[str, str]:
        return {"status": "ok"}

    async def readyz() -> JSONResponse:
        ready, state = readiness.state()
        return JSONResponse(state, 200 if ready else 503)

    # GET in the schema; HEAD, and /healthz (the older name of /livez), answered but not listed twice.
    for path, probe in (("/livez", livez), ("/readyz", readyz), ("/healthz", livez)):
        app.add_api_route(path, probe, methods=["GET"], include_in_schema=path != "/healthz")
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(models_here.metrics.exposition(), media_type=METRICS_MEDIA_TYPE)

    @app.get("/v1/models")
    def models() -> dict[str, list[dict[str, Any]]]:  # reads every card: FastAPI runs it on a worker thread
        return {"models": [listing(name, card_or_error(name)) for name in list_models()]}

    @app.get("/v1/models/{name}")
    async def model_card(name: str) -> dict[str, Any]:
        return (await asyncio.to_thread(served_card, name)).to_dict()

    async def predict(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        model = await models_here.model(name)
        items, refine = await request_items(request, model.task)
        with models_here.admission(name):
            predictions = await models_here.predict(name, items, refine)
        return JSONResponse({"predictions": [p.to_dict() for p in predictions]})

    app.router.routes.append(Route(PREDICT_PATH, predict, methods=["POST"]))
    add_offline_docs(app)
    schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema()["paths"][PREDICT_PATH] = {"post": PREDICT_OPENAPI}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def add_offline_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from the swagger-ui-bundle package (served here: nothing from a CDN)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="zoo: API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


async def request_items(request: Request, task: Task) -> tuple[list[bytes | tuple[bytes, ...]], bool]:
    """The request's images as zoo inputs and its `refine` field: a multipart form's fields named as the task
    uploads its inputs (`image`; the changer's `a` and `b`, paired in order), or a raw image body (one image)."""
    names = task.upload_fields
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    query_refine = request.query_params.get("refine", "true")
    if media_type.startswith(RAW_IMAGE_TYPES):
        if len(names) != 1:
            raise HTTPException(415, f"this model takes {len(names)} images an input: send them as multipart file "
                                     f"fields {' and '.join(map(repr, names))}.")
        body = await request.body()
        if not body:
            raise HTTPException(400, "the request's body is empty: send the image as the body.")
        return [body], yes_or_no(query_refine)
    if media_type != "multipart/form-data":
        raise HTTPException(415, "send the image(s) as multipart/form-data file fields, or one image as the body "
                                 "with Content-Type image/... .")
    fields = multipart_fields(await request.body(), request.headers["content-type"])
    columns = []
    for field_name in names:
        uploads = fields.get(field_name, [])
        if not all(is_file for is_file, _ in uploads):
            raise HTTPException(400, f"field {field_name!r} must be a file upload.")
        columns.append([data for _, data in uploads])
    counts = {len(column) for column in columns}
    if counts == {0}:
        raise HTTPException(400, f"send the image(s) as multipart file field(s) {' and '.join(map(repr, names))}.")
    if len(counts) > 1:
        raise HTTPException(400, f"send as many {names[0]!r} as {names[1]!r} files: they are paired in order.")
    if counts.pop() > MAX_IMAGES:
        raise HTTPException(413, f"at most {MAX_IMAGES} images (or pairs) per request.")
    refine = fields.get("refine", [(False, query_refine.encode())])[-1][1].decode("utf-8", "replace")
    items = columns[0] if len(names) == 1 else list(zip(*columns))
    return items, yes_or_no(refine)


#: The most parts a predict form may have: every image (or pair) and a few fields.
MAX_FORM_PARTS = 2 * MAX_IMAGES + 8


def multipart_fields(body: bytes, content_type: str) -> dict[str, list[tuple[bool, bytes]]]:
    """A multipart/form-data body (RFC 7578), already read whole (the guard caps its size), as each field name's
    values in order: (whether it was a file, its bytes). Splitting on the boundary with bytes methods costs a
    fraction of a streaming parser's per-byte callbacks on the small bodies most requests carry."""
    boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    if not boundary or len(boundary) > 70:
        raise HTTPException(400, "the request is not a readable multipart form (no boundary in Content-Type).")
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise HTTPException(400, "the request is not a readable multipart form (it does not end with its closing "
                                 "boundary).")
    if len(chunks) - 2 > MAX_FORM_PARTS:
        raise HTTPException(413, f"at most {MAX_IMAGES} images (or pairs) per request.")
    fields: dict[str, list[tuple[bool, bytes]]] = {}
    for chunk in chunks[1:-1]:
        head, separator, data = chunk.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not separator or lines[0].strip(b" \t"):  # the boundary line ends after optional padding
            raise HTTPException(400, "the request is not a readable multipart form (a part has no headers).")
        disposition = next((line.partition(b":")[2] for line in lines[1:]
                            if line.partition(b":")[0].strip().lower() == b"content-disposition"), None)
        if disposition is None:
            raise HTTPException(400, "the request is not a readable multipart form (a part has no "
                                     "Content-Disposition).")
        kind, options = parse_options_header(disposition)
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise HTTPException(400, "the request is not a readable multipart form (a part is not a named "
                                     "form-data field).")
        fields.setdefault(name.decode("utf-8", "replace"), []).append((b"filename" in options, data))
    return fields


#: How the `refine` field (form or query) may say yes or no.
YES, NO = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def yes_or_no(value: object) -> bool:
    """The `refine` field's value (a form field or a query parameter, default true): the changer refines its
    estimate by aligning the views unless it is false."""
    if not isinstance(value, str) or value.strip().lower() not in YES + NO:
        raise HTTPException(400, f"field 'refine' must be true or false, got {value!r}.")
    return value.strip().lower() in YES


def listing(name: str, card: ModelCard | ZooError) -> dict[str, Any]:
    """A model's entry in GET /v1/models; one whose card cannot be read is listed as unavailable, with the reason."""
    if isinstance(card, ZooError):
        LOG.warning("model %r is unavailable: %s", name, card)
        return {"name": name, "available": False, "reason": public_message(without_folder(str(card), name))}
    return {"name": name, "available": True, "task": card.task, "inputs": [vars(s) for s in card.inputs],
            "labels": list(card.labels), "test_accuracy": card.headline_accuracy}


#: Model folders whose files were checked, with the size and modification time of each file when they were.
_checked: dict[Path, tuple] = {}


def served_card(name: str) -> ModelCard:
    """Model `name`'s card once it has passed the checks `zoo.load` makes (every file against the card's sha256
    and size, the card against model.onnx's metadata), or ModelFileError. A card whose model's files are not
    here yet (fetched on first use) is checked against the package's index instead. A folder is checked again
    when one of its files changes size or modification time."""
    folder = card_dir(name)
    card = ModelCard.read(folder)
    files_here = (folder / GRAPH_FILE).is_file()
    try:
        stamp = tuple((relative, stat.st_size, stat.st_mtime_ns)
                      for relative in (sorted({CARD_FILE, *map(str, card.files)}) if files_here else [CARD_FILE])
                      for stat in [(folder / relative).stat()])
    except OSError:
        stamp = None  # a listed file is missing: verify_files says which
    if stamp is None or _checked.get(folder) != stamp:
        _checked.pop(folder, None)
        if files_here:
            card = checked_card(folder)
        else:
            recorded = index().get(name, {}).get(CARD_FILE, {}).get("sha256")
            if recorded is None or sha256_file(folder / CARD_FILE) != recorded:
                raise ModelFileError(f"{folder / CARD_FILE} differs from the card this release records for "
                                     f"{name!r}: it was edited or damaged; reinstall the package.")
        if stamp is not None:
            _checked[folder] = stamp
    return card


#: An absolute path left in a message once the known folders are named: POSIX (after a space, quote, bracket,
#: '=', ',' or at the start) or Windows (a drive letter).
_ABSOLUTE_PATH = re.compile(r"""(?<![^\s'"(\[=,])/[^\s'"/]+(?:/[^\s'"/]+)*|\b[A-Za-z]:\\[^\s'"]+""")


def public_message(message: str) -> str:
    """`message` without this machine's paths, for a client: the package's models folder, the models home and the
    home directory named as `<package models>`, `<ZOO_HOME>` (or `<models home>`) and `~`, any other absolute
    path reduced to `<path>/` and its last part. The server logs the full message where it matters."""
    try:
        home = Path.home()
    except RuntimeError:  # no home directory
        home = None
    places = [(PACKAGE_MODELS, "<package models>"),
              (models_root(), f"<{HOME_ENV}>" if os.environ.get(HOME_ENV) else "<models home>"),
              (Path(tempfile.gettempdir()), "<tmp>"), (home, "~")]
    named = {}
    for folder, label in places:
        if folder is None:
            continue
        for spelling in {str(folder), str(folder.resolve())}:
            if len(spelling) > 1:
                named.setdefault(spelling, label)
    for spelling in sorted(named, key=len, reverse=True):  # the deepest folder first
        message = message.replace(spelling, named[spelling])
    return _ABSOLUTE_PATH.sub(_last_part, message)


def _last_part(match: re.Match) -> str:
    path = match.group().rstrip("/.,;:)")
    return "<path>/" + re.split(r"[/\\]", path)[-1] + match.group()[len(path):]




def preload_names(asked: Sequence[str]) -> tuple[str, ...]:
    """`--preload`'s names: `all` is every model whose card can be read (a damaged one is left out and said)."""
    if list(asked) != ["all"]:
        return tuple(dict.fromkeys(asked))
    return tuple(name for name in list_models() if not isinstance(card_or_error(name), ZooError))


def device_summary(device: str) -> str:
    import onnxruntime as ort

    offered = "CUDA" if "CUDAExecutionProvider" in ort.get_available_providers() else "no CUDA"
    return f"device {device} (onnxruntime offers {offered})" if device != "cpu" else "device cpu"


def serve(host: str, port: int, api_key: str | None, no_auth: bool, device: str = "auto",
          preload: Sequence[str] = (), max_batch: int = MAX_BATCH, batch_wait: float = BATCH_WAIT,
          max_queue: int = MAX_QUEUE, access_log: bool = False, log_json: bool = False,
          runtime: str | None = None) -> None:
    """Listen on host:port (port 0: any free port) and serve until interrupted; one startup line on stderr says
    where, with which models, device and auth, and another when the preloaded models are ready."""
    import uvicorn

    check_binding(host, api_key, no_auth)
    configure_logging(log_json)
    preload = preload_names(preload)
    runtime = requested_runtime(runtime)
    backend = LocalModels(device, max_batch, batch_wait, max_queue, runtime=runtime)
    app = create_app(api_key, backend, allowed_hosts=allowed_hosts(host), preload=preload, access_log=access_log)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            http=timed_protocol(READ_TIMEOUT))
    listening = config.bind_socket()  # bound before the startup line, which then names the real port
    bound_host, bound_port = listening.getsockname()[:2]
    address = f"[{bound_host}]" if ":" in bound_host else bound_host
    names = list_models()
    LOG.info("zoo serve %s listening on http://%s:%d | %d models: %s | %s, runtime %s | API key %s | preload: %s | "
             "max batch %d, batch wait %g ms, max queue %d | access log %s",
             VERSION, address, bound_port, len(names), ", ".join(names), device_summary(device), runtime,
             "required" if api_key else "off", ", ".join(preload) or "none", max_batch, batch_wait * 1000,
             max_queue, "on" if access_log else "off")
    uvicorn.Server(config).run(sockets=[listening])
