"""`zoo serve`: the zoo as an HTTP JSON API (FastAPI + uvicorn, the `serve` extra), with OpenAPI docs at /docs.

    GET  /healthz                      {"status": "ok"} (also HEAD)
    GET  /v1/models                    the models: name, task, inputs, labels, test accuracy; one whose card
                                       cannot be read is listed as unavailable, with the reason
    GET  /v1/models/{name}             the model's card, once checked as `zoo.load` checks it
    POST /v1/models/{name}/predict     multipart: `image` (repeated, up to MAX_IMAGES), or `a` and `b` for the
                                       changer; answers {"predictions": [...]}, one per image or pair, with the
                                       fields of `zoo predict --json` (label, score, probs; changes and params)
                                       and, for the changer, `refined` and `alignment_score`; a form field or
                                       query parameter `refine=false` gives the network's estimate alone

Each request's images are decoded and checked on a worker thread (a bad one answers 4xx with zoo's message);
then the requests waiting for a model are run as one onnxruntime batch (up to MAX_IMAGES inputs, gathered for
at most BATCH_WAIT seconds). The server listens on the loopback unless told otherwise, and then only with an
API key (a bearer token, compared in constant time) or an explicit `--no-auth`; on the loopback it answers only
the loopback's Host names (ZOO_ALLOWED_HOSTS). Request bodies are capped (ZOO_MAX_REQUEST_BYTES, 413) and headers
and bodies must arrive in time (ZOO_READ_TIMEOUT, 408). Error answers carry no path of the server
(`public_message`). The routes run over a `Backend`: `LocalModels` here, the Ray Serve deployment in `zoo.ray` on
a cluster.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from .card import ModelCard
from .errors import ImageError, ModelFileError, UnknownModelError, ZooError
from .files import CARD_FILE, GRAPH_FILE
from .model import Model, Prediction, concatenated, load
from .preprocess import ImageInput
from .registry import (HOME_ENV, PACKAGE_MODELS, card_dir, card_or_error, index, list_models, models_root,
                       without_folder)
from .runtime import checked_card, sha256_file

MAX_IMAGES = 64
#: How long a batch waits for more requests before it runs: a few milliseconds against tens per ResNet-50 run.
BATCH_WAIT = 0.004
#: Uploads up to this many bytes are decoded on the event loop (a 32x32 JPEG is ~1 KB; a phone photo, MBs).
INLINE_DECODE_BYTES = 64 * 1024
#: How often a waiting batch looks for requests that have finished decoding.
BATCH_POLL = 0.0005
#: The largest request body accepted (ZOO_MAX_REQUEST_BYTES): a Content-Length over it is refused before the body
#: is read, and any body (chunked too) is counted as it is read and refused as soon as it passes it.
MAX_REQUEST_BYTES = int(os.environ.get("ZOO_MAX_REQUEST_BYTES", 64 * 2**20))
#: Seconds a client has to send a request's headers (from its first byte, or the connection's start) and then
#: its whole body (ZOO_READ_TIMEOUT): a client that sends them byte by byte is answered 408 and cut off.
READ_TIMEOUT = float(os.environ.get("ZOO_READ_TIMEOUT", 60))
#: Host names a server on the loopback answers (ZOO_ALLOWED_HOSTS, comma-separated, "*" for any), besides the
#: address it listens on: a page that rebinds its own DNS name to 127.0.0.1 does not reach the API.
ALLOWED_HOSTS_ENV = "ZOO_ALLOWED_HOSTS"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
API_KEY_ENV = "ZOO_API_KEY"
#: The API's own paths: what the key guards when the API shares a server with other pages (`app.py --api`).
API_PATHS = ("/v1/", "/docs", "/redoc", "/openapi.json")


LOG = logging.getLogger("zoo.serve")


class ServeError(ZooError):
    """The server cannot start as asked (e.g. a public address without an API key)."""


class Backend(Protocol):
    """Where the API's models live and run."""

    def model(self, name: str) -> Model:
        """Model `name`, loaded once (UnknownModelError when there is none)."""

    async def predict(self, name: str, items: list[ImageInput | tuple[ImageInput, ...]],
                      refine: bool = True) -> list[Prediction]:
        """Predictions for one request's inputs, decoded off the event loop and run in one batch with other
        requests for the same model; `refine`: the changer's alignment (`Model.predict`)."""


def run_together(model: Model, requests: Sequence[dict[str, np.ndarray]]) -> list[list[Prediction]]:
    """Several requests' feeds through `model` in one onnxruntime run; each request's predictions, in order."""
    predictions = model.predict_prepared(concatenated(requests))
    sizes = [len(next(iter(feeds.values()))) for feeds in requests]
    starts = np.cumsum([0, *sizes])
    return [predictions[start:start + size] for start, size in zip(starts, sizes)]


@dataclass
class Pending:
    feeds: dict[str, np.ndarray]
    count: int
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """One model's queue: requests that arrive together share one onnxruntime run."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.queue: asyncio.Queue[Pending] = asyncio.Queue()
        self.worker: asyncio.Task | None = None
        self.decoding = 0  # requests whose images are being decoded: they will join the queue soon

    async def predict(self, items: list[ImageInput | tuple[ImageInput, ...]], refine: bool = True) -> list[Prediction]:
        if self.worker is None:
            self.worker = asyncio.create_task(self.run())
        self.decoding += 1
        try:
            feeds = await prepared(self.model, items, refine)
        finally:
            self.decoding -= 1
        pending = Pending(feeds, len(items))
        self.queue.put_nowait(pending)
        return await pending.done

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            size, deadline = batch[0].count, loop.time() + BATCH_WAIT
            # Take what is queued; wait (up to BATCH_WAIT) only for requests still decoding.
            while size < MAX_IMAGES:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    size += batch[-1].count
                elif self.decoding and loop.time() < deadline:
                    await asyncio.sleep(BATCH_POLL)
                else:
                    break
            try:
                answers = await asyncio.to_thread(run_together, self.model, [pending.feeds for pending in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for pending in batch:
                    pending.done.set_exception(exc)
                continue
            for pending, answer in zip(batch, answers):
                pending.done.set_result(answer)


async def prepared(model: Model, items: list[ImageInput | tuple[ImageInput, ...]],
                   refine: bool = True) -> dict[str, np.ndarray]:
    """`model.prepare_batch(items, refine)`: small uploads on the event loop (a thread hand-off costs more than they
    take, and threads decoding many of them contend for the GIL), larger ones on a worker thread."""
    if sum(len(image) for item in items for image in (item if isinstance(item, tuple) else (item,))) \
            <= INLINE_DECODE_BYTES:
        return model.prepare_batch(items, refine)
    return await asyncio.to_thread(model.prepare_batch, items, refine)


class LocalModels:
    """`zoo serve`'s backend: each model loaded in this process on first use, with its own Batcher."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self.batchers: dict[str, Batcher] = {}

    def model(self, name: str) -> Model:
        if name not in self.batchers:
            self.batchers[name] = Batcher(load(name, device=self.device, spinning=False, registry_only=True))
        return self.batchers[name].model

    async def predict(self, name: str, items: list[ImageInput | tuple[ImageInput, ...]],
                      refine: bool = True) -> list[Prediction]:
        self.model(name)
        return await self.batchers[name].predict(items, refine)


class Guard:
    """Refuses a request for a Host name not in `allowed_hosts` (400), one under `guarded` paths (but /healthz)
    without the API key (401), or one whose Content-Length is over MAX_REQUEST_BYTES (413), before the app reads
    it; then counts and times the body as the app reads it (`BodyLimits`). A plain ASGI middleware: FastAPI's
    `@app.middleware` costs a task group per request."""

    def __init__(self, app: ASGIApp, api_key: str | None, guarded: tuple[str, ...] = ("/",),
                 allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app, self.api_key, self.guarded = app, api_key, guarded
        self.allowed_hosts = None if allowed_hosts is None or "*" in allowed_hosts else \
            {host.strip().strip("[]").lower() for host in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope["path"], Headers(scope=scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await BodyLimits(self.app).run(scope, receive, send)

    def refusal(self, path: str, headers: Headers) -> JSONResponse | None:
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            return JSONResponse({"detail": f"this server does not answer for that Host header ({ALLOWED_HOSTS_ENV} "
                                           "lists the names it answers)"}, 400)
        if self.api_key is not None and path != "/healthz" and path.startswith(self.guarded):
            scheme, _, token = headers.get("authorization", "").strip().partition(" ")
            # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
            if not (hmac.compare_digest(token.strip().encode(), self.api_key.encode()) & (scheme.lower() == "bearer")):
                return JSONResponse({"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"}, 401)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_REQUEST_BYTES):
            return too_large()
        return None


def host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8000` -> `::1`, `Example.org:80` -> `example.org`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def too_large() -> JSONResponse:
    return JSONResponse({"detail": f"the request is over {MAX_REQUEST_BYTES} bytes (ZOO_MAX_REQUEST_BYTES)"}, 413,
                        headers={"Connection": "close"})


def too_slow() -> JSONResponse:
    return JSONResponse({"detail": f"the request's body took over {READ_TIMEOUT:g} s to arrive (ZOO_READ_TIMEOUT)"},
                        408, headers={"Connection": "close"})


class BodyLimits:
    """One request's body as the app reads it, counted and timed: past MAX_REQUEST_BYTES (chunked or not, whatever
    Content-Length said) or READ_TIMEOUT seconds, the app is told the client left, nothing more is read, and the
    client gets 413 or 408 instead of the app's answer (unless the app had already begun to answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0
        self.refusal: JSONResponse | None = None
        self.started = False  # whether a response (the app's or the refusal) has begun
        self.body_done = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT

        async def counted_receive() -> dict:
            if self.refusal is not None:
                return {"type": "http.disconnect"}
            if self.body_done:  # only a disconnect can come now: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                self.refuse(too_slow())
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                self.body_done = not message.get("more_body", False)
                self.received += len(message.get("body", b""))
                if self.received > MAX_REQUEST_BYTES:
                    self.refuse(too_large())
                    return {"type": "http.disconnect"}
            return message

        async def send_refusal() -> None:
            if not self.started:
                self.started = True
                await self.refusal(scope, receive, send)

        async def guarded_send(message: dict) -> None:
            if self.refusal is not None:
                await send_refusal()  # the app's answer after a refusal goes nowhere
                return
            self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if self.refusal is None:
                raise
        if self.refusal is not None:
            await send_refusal()

    def refuse(self, response: JSONResponse) -> None:
        if self.refusal is None and not self.started:
            self.refusal = response


def create_app(api_key: str | None = None, backend: Backend | None = None, guarded: tuple[str, ...] = ("/",),
               allowed_hosts: tuple[str, ...] | None = None) -> FastAPI:
    """The API over the models in `zoo.list()`, run by `backend` (default: `LocalModels()`); `api_key`: required
    as a bearer token on every path that starts with one of `guarded` (all by default) but /healthz;
    `allowed_hosts`: the Host header names answered (None: any; see `allowed_hosts`)."""
    app = FastAPI(title="zoo", description="The zoo's models over HTTP.", version="1")
    models_here = backend or LocalModels()

    app.add_middleware(Guard, api_key=api_key, guarded=guarded, allowed_hosts=allowed_hosts)

    @app.exception_handler(ZooError)
    async def zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        status = 404 if isinstance(exc, UnknownModelError) else 422 if isinstance(exc, ImageError) else 500
        if status == 500:
            LOG.warning("%s %s: %s", request.method, request.url.path, exc)  # the full message, paths included
        return JSONResponse({"detail": public_message(str(exc))}, status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": public_message(str(exc.detail))}, exc.status_code, headers=exc.headers)

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, list[dict[str, Any]]]:  # reads every card: FastAPI runs it on a worker thread
        return {"models": [listing(name, card_or_error(name)) for name in list_models()]}

    @app.get("/v1/models/{name}")
    async def model_card(name: str) -> dict[str, Any]:
        return (await asyncio.to_thread(served_card, name)).to_dict()

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> JSONResponse:
        items = await uploaded_items(request, len(models_here.model(name).card.inputs))
        refine = await refine_field(request)
        return JSONResponse({"predictions": [p.to_dict() for p in await models_here.predict(name, items, refine)]})

    return app


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


async def uploaded_items(request: Request, n_inputs: int) -> list[bytes | tuple[bytes, bytes]]:
    """The request's images as zoo inputs: `image` fields, or the changer's `a` and `b` fields in pairs."""
    try:
        form = await request.form(max_files=2 * MAX_IMAGES, max_fields=2 * MAX_IMAGES)
    except Exception as exc:  # noqa: BLE001 - starlette's parser says what was malformed
        if str(getattr(exc, "detail", exc)).startswith(("Too many files", "Too many fields")):
            raise HTTPException(413, f"at most {MAX_IMAGES} images (or pairs) per request.") from None
        raise HTTPException(400, f"the request is not a readable multipart form ({exc}).") from None
    names = ("image",) if n_inputs == 1 else ("a", "b")
    columns = []
    for field_name in names:
        uploads = form.getlist(field_name)
        if not all(isinstance(upload, UploadFile) for upload in uploads):
            raise HTTPException(400, f"field {field_name!r} must be a file upload.")
        columns.append([await upload.read() for upload in uploads])
    counts = {len(column) for column in columns}
    if counts == {0}:
        raise HTTPException(400, f"send the image(s) as multipart file field(s) {' and '.join(map(repr, names))}.")
    if len(counts) > 1:
        raise HTTPException(400, f"send as many {names[0]!r} as {names[1]!r} files: they are paired in order.")
    if counts.pop() > MAX_IMAGES:
        raise HTTPException(413, f"at most {MAX_IMAGES} images (or pairs) per request.")
    return columns[0] if n_inputs == 1 else list(zip(*columns))


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


#: How the `refine` field (form or query) may say yes or no.
YES, NO = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


async def refine_field(request: Request) -> bool:
    """The request's `refine` field, a form field or a query parameter (default true): the changer refines its
    estimate by aligning the views unless it is false."""
    form = await request.form()  # already parsed by uploaded_items; starlette keeps it
    value = form.get("refine", request.query_params.get("refine", "true"))
    if not isinstance(value, str) or value.strip().lower() not in YES + NO:
        raise HTTPException(400, f"field 'refine' must be true or false, got {value!r}.")
    return value.strip().lower() in YES


def loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback (nothing else can reach it)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, api_key: str | None, no_auth: bool) -> None:
    """Refuse to listen beyond the loopback without an API key, unless `--no-auth` says so explicitly."""
    if not loopback(host) and api_key is None and not no_auth:
        raise ServeError(f"listening on {host} needs an API key (--api-key or {API_KEY_ENV}), "
                         "or --no-auth to serve without one.")


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host header names a server listening on `host` answers: $ZOO_ALLOWED_HOSTS if set (comma-separated;
    "*": any), else on the loopback its names and `host`, beyond it any (None)."""
    listed = os.environ.get(ALLOWED_HOSTS_ENV)
    if listed is not None:
        return tuple(name.strip() for name in listed.split(",") if name.strip())
    return (*LOOPBACK_HOSTS, host) if loopback(host) else None


def timed_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, which waits for a request's headers as long as they take, with a limit: headers
    not complete `seconds` after the connection opened (or after the first byte following an answer) are
    answered 408 and the connection closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = b'{"detail":"the request\'s headers took too long to arrive (ZOO_READ_TIMEOUT)"}'
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(body), body))

    class TimedH11Protocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_timer = self.loop.call_later(seconds, self.headers_too_slow)

        def data_received(self, data: bytes) -> None:
            if self.header_timer is None and self.waiting_for_headers():
                self.header_timer = self.loop.call_later(seconds, self.headers_too_slow)
            super().data_received(data)
            if self.header_timer is not None and not self.waiting_for_headers():
                self.header_timer.cancel()
                self.header_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None
            super().connection_lost(exc)

        def headers_too_slow(self) -> None:
            self.header_timer = None
            if self.waiting_for_headers() and not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    return TimedH11Protocol


def serve(host: str, port: int, api_key: str | None, no_auth: bool, device: str = "auto") -> None:
    import uvicorn

    check_binding(host, api_key, no_auth)
    uvicorn.run(create_app(api_key, LocalModels(device), allowed_hosts=allowed_hosts(host)), host=host, port=port,
                log_level="warning", access_log=False, http=timed_protocol(READ_TIMEOUT))
