"""The zoo on a Ray cluster (the `ray` extra): a Ray Data batch predictor and `zoo serve`'s HTTP API as a Ray
Serve deployment.

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    ds = ds.map_batches(zoo.ray.Predictor, fn_constructor_kwargs={"name": "cnn", "threads": 1}, batch_size=64,
                        compute=ray.data.ActorPoolStrategy(size=3))   # on 4 CPUs: one left for reading

    zoo serve --ray --replicas 4 --address auto     # the same routes as `zoo serve`, on the cluster

Both run the models as `zoo.load` does, so their answers are zoo's.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import ray
from fastapi import FastAPI
from ray import serve

from .engines import requested_runtime
from .errors import ZooError
from .model import Model, load
from .preprocess import ImageInput
from .guard import allowed_hosts, check_binding
from .loopback import loopback
from .limits import BATCH_WAIT, MAX_BATCH, MAX_QUEUE
from .observe import Metrics
from .serve import create_app, loaded_and_warmed, prepared, run_together
from .tasks import Prediction

#: The Ray Serve application `start` runs.
APP_NAME = "zoo"


class Predictor:
    """A Ray Data batch function: `ds.map_batches(Predictor, fn_constructor_kwargs={"name": ...})`.

    Each batch (numpy format) gets `label` and `score` columns, `error` ("" when the row was predicted; an
    unreadable image gives its message and an empty label, and the job goes on), and for the changer one
    `change_<name>` and `param_<name>` column per change and parameter. The images are read from an `image`
    column (arrays) or a `bytes` column (encoded files); the changer's pairs from `a` and `b` columns (bytes,
    arrays or paths). Every other column is passed through. The changer refines its parameters by aligning
    the views (`refined` and `alignment_score` columns) unless `refine=False` is among the kwargs.
    """

    def __init__(self, name: str, device: str = "auto", threads: int = 0, refine: bool = True,
                 runtime: str | None = None) -> None:
        self.model = load(name, device=device, threads=threads, registry_only=True, refine=refine, runtime=runtime)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = list(self.model.predict_each(self._items(batch)))
        out = dict(batch)
        out["label"] = np.array([r.label if isinstance(r, Prediction) else "" for r in results], dtype=object)
        out["score"] = np.array([r.score if isinstance(r, Prediction) else np.nan for r in results])
        out["error"] = np.array(["" if isinstance(r, Prediction) else str(r) for r in results], dtype=object)
        # From the card, not the rows: a batch whose every row failed has the same columns as the others.
        card = self.model.card
        for prefix, names, field in (("change", card.changes, "changes"), ("param", card.param_names, "params")):
            for key in names:
                out[f"{prefix}_{key}"] = np.array(
                    [getattr(r, field)[key] if isinstance(r, Prediction) else np.nan for r in results])
        if self.model.task.refine is not None and self.model.refine:
            out["refined"] = np.array([bool(r.refined) if isinstance(r, Prediction) else False for r in results])
            out["alignment_score"] = np.array(
                [r.alignment_score if isinstance(r, Prediction) else np.nan for r in results])
        return out

    def _items(self, batch: dict[str, np.ndarray]) -> list[ImageInput | tuple[ImageInput, ...]]:
        """The batch's inputs, from the columns the model's task reads them from (`zoo.tasks.Task.ray_columns`):
        `image` (as `ray.data.read_images` makes it) or `bytes` (`ray.data.read_binary_files`) for one image,
        `a` and `b` for the changer's pairs."""
        columns = []
        for choices in self.model.task.ray_columns:
            column = next((c for c in choices if c in batch), None)
            if column is None:
                wanted = " and ".join(" or ".join(map(repr, c)) for c in self.model.task.ray_columns)
                raise ZooError(f"model {self.model.name!r} reads its inputs from the columns {wanted} (e.g. 'image' "
                               "from ray.data.read_images, 'bytes' from ray.data.read_binary_files); the batch "
                               f"has {sorted(batch)}.")
            columns.append(list(batch[column]))  # a stacked N x H x W x C column splits into its images
        return columns[0] if len(columns) == 1 else list(zip(*columns))


@serve.deployment
@serve.ingress()
class ZooDeployment:
    """`zoo serve`'s API on Ray Serve: every replica loads the models it is asked for (off its event loop, once,
    and warmed; the `preload` ones when it starts), and requests for one model arriving together run as one
    onnxruntime batch (`serve.batch`, up to MAX_BATCH images). Each replica has its own /metrics and /readyz."""

    def __init__(self, api_key: str | None = None, device: str = "auto", threads: int = 1,
                 allowed_hosts: tuple[str, ...] | None = None, preload: Sequence[str] = (),
                 max_batch: int = MAX_BATCH, batch_wait: float = BATCH_WAIT, runtime: str | None = None) -> None:
        self.api_key, self.device, self.threads, self.runtime = api_key, device, threads, runtime
        self.allowed_hosts, self.preload = allowed_hosts, tuple(preload)
        self._batched.set_max_batch_size(max_batch)
        self._batched.set_batch_wait_timeout_s(batch_wait)
        self.metrics = Metrics()
        self.models: dict[str, Model] = {}
        self.loading: dict[str, asyncio.Future] = {}

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.api_key, backend=self, allowed_hosts=self.allowed_hosts, preload=self.preload)

    def loaded(self, name: str) -> bool:
        return name in self.models

    async def model(self, name: str) -> Model:
        if name not in self.models:
            if name not in self.loading:
                self.loading[name] = asyncio.ensure_future(asyncio.to_thread(self._load, name))
            task = self.loading[name]
            try:
                self.models[name] = await asyncio.shield(task)
            finally:
                if self.loading.get(name) is task and task.done():
                    del self.loading[name]
        return self.models[name]

    def _load(self, name: str) -> Model:
        return loaded_and_warmed(name, self.metrics, self.device, self.threads, self.runtime)

    def admission(self, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # Ray Serve bounds the queue (max_queued_requests) and answers 503 itself

    async def predict(self, name: str, items: list[ImageInput | tuple[ImageInput, ...]],
                      refine: bool = True) -> list[Prediction]:
        feeds = await prepared(await self.model(name), items, refine)
        return await self._batched((name, feeds))

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT,
                 batch_size_fn=lambda requests: sum(len(next(iter(feeds.values()))) for _, feeds in requests))
    async def _batched(self, requests: Sequence[tuple[str, dict[str, np.ndarray]]]) -> list[list[Prediction]]:
        by_model: dict[str, list[int]] = defaultdict(list)
        for index, (name, _) in enumerate(requests):
            by_model[name].append(index)
        answers: list[Any] = [None] * len(requests)
        for name, indices in by_model.items():
            together = await asyncio.to_thread(run_together, self.models[name], [requests[i][1] for i in indices])
            self.metrics.batch_size.labels(name).observe(sum(len(answer) for answer in together))
            self.metrics.images.labels(name).inc(sum(len(answer) for answer in together))
            for index, answer in zip(indices, together):
                answers[index] = answer
        return answers


def start(host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, no_auth: bool = False,
          device: str = "auto", replicas: int = 1, threads: int = 1, address: str | None = None,
          blocking: bool = True, preload: Sequence[str] = (), max_batch: int = MAX_BATCH,
          batch_wait: float = BATCH_WAIT, max_queue: int = MAX_QUEUE, runtime: str | None = None) -> None:
    """Run `ZooDeployment` with `replicas` replicas (each `threads` onnxruntime threads and as many CPUs) behind
    Ray Serve's HTTP proxy on host:port, as the Serve application APP_NAME, with `zoo serve`'s Host rule and
    options: `preload` (each replica), `max_batch` and `batch_wait` (Ray's batching), `max_queue` (Ray's
    `max_queued_requests`: requests past it are answered 503 by Ray), `runtime` (`zoo.load`'s; None: the driver's
    $ZOO_RUNTIME or "auto", passed to every replica).

    `address`: an existing cluster ("auto", "HOST:6379"); without it (and no Ray connected yet) a local one
    starts, without the dashboard when `host` is the loopback (`zoo serve --ray` then also keeps Ray's own
    processes there: `zoo.loopback.RAY_LOOPBACK_ENVIRONMENT`). `blocking`: serve until interrupted (Ctrl-C or
    SIGTERM), then delete the application, and stop the local cluster if this call started it.
    """
    check_binding(host, api_key, no_auth)
    started_here = not address and not ray.is_initialized()
    if address:
        ray.init(address=address)
    elif started_here:
        ray.init(include_dashboard=not loopback(host))
    serve.start(http_options={"host": host, "port": port})
    deployment = ZooDeployment.options(num_replicas=replicas, ray_actor_options={"num_cpus": threads},
                                       max_queued_requests=max_queue)
    serve.run(deployment.bind(api_key, device, threads, allowed_hosts(host), preload, max_batch, batch_wait,
                              requested_runtime(runtime)),
              name=APP_NAME, route_prefix="/")
    if not blocking:
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds through the clean-up below, as Ctrl-C does
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP_NAME)
        if started_here:
            ray.shutdown()
