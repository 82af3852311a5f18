"""Model: one shipped ONNX model behind `predict` and `predict_batch`."""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image

from . import align
from .card import ModelCard
from .errors import ImageError, ModelFileError, ZooError
from .onnxfile import self_contained
from .preprocess import ImageInput, fit_to_input, load_image, prepare
from .registry import check_name, is_path, model_dir, model_folder
from .files import GRAPH_FILE, PORTABLE_GRAPH_FILE
from .engines import open_engine
from .runtime import checked_card
from .tasks import TASKS, Prediction, task_of

if TYPE_CHECKING:
    import onnxruntime as ort

    from .engines import OpenVINOSession

#: Images per onnxruntime run inside predict_batch; bounds memory for long lists.
CHUNK = 64
#: Threads that decode and resize the next chunk's images while the session runs the current one (Pillow
#: releases the GIL while it decodes and resizes). ZOO_DECODE_THREADS overrides the default, one per core.
DECODE_THREADS = int(os.environ.get("ZOO_DECODE_THREADS", 0)) or os.cpu_count() or 1
#: Per-item decode time from which images are decoded in parallel; below it Python's own work dominates.
PARALLEL_DECODE_S = 0.001
#: A chunk that prepares in less than this (arrays already at the input size) is prepared on the calling thread.
INLINE_PREPARE_S = 0.001
#: The feed that carries each pair's working views (or None: not refined) beside the graph's inputs.
VIEWS = "zoo:align-views"
T = TypeVar("T")


class Model:
    """A shipped model, loaded with its card, its files verified, on the chosen device.

    `close()` (or `with zoo.load(...) as model:`) stops its decoding threads and releases its session."""

    def __init__(self, name: str | os.PathLike[str], device: str = "auto", threads: int = 0, spinning: bool = True,
                 registry_only: bool = False, refine: bool = True, runtime: str | None = None,
                 providers: Sequence[Any] | None = None) -> None:
        self.folder, self.card = verified(check_name(name) if registry_only else name)
        #: Whether the changer's estimates are refined by aligning the views (`zoo.align`); each predict
        #: call may override it with its own `refine`.
        self.refine = refine
        #: The engine (an onnxruntime session, or `engines.OpenVINOSession`), the device and the runtime it is on.
        self.session, self.device, self.runtime = open_engine(self.folder, self.card, runtime, device, threads,
                                                              spinning, providers)
        task = task_of(self.card)
        if task is None:
            raise ZooError(
                f"model {name!r} has task {self.card.task!r}, which this version of zoo cannot run "
                f"(known: {sorted(TASKS)}); upgrade zoo."
            )
        self.task = task
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = False
        self._decode_seconds = float("inf")  # per item, as last measured: unknown until the first slice

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.card.task!r}, device={self.device!r}, runtime={self.runtime!r})"

    @property
    def providers(self) -> list[str]:
        """What runs the model: onnxruntime's execution providers in order, or OpenVINO's plugin and precision."""
        return self._open_session().get_providers()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decoding threads (waiting for those at work) and release the onnxruntime session; the model
        predicts nothing afterwards. Closing twice is harmless."""
        with self._pool_lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.session = None

    def _open_session(self) -> ort.InferenceSession | OpenVINOSession:
        if self.session is None:
            raise ZooError(f"model {self.name!r} was closed; load it again with zoo.load({self.name!r}).")
        return self.session

    def predict(self, *images: ImageInput, refine: bool | None = None) -> Prediction:
        """Predict one input: one image, or as many images as the model has inputs (the changer: two).

        `refine` (the changer; default: the model's, True unless loaded with refine=False): refine the
        network's parameters by aligning the two views directly (`zoo.align`); False gives the network's
        output alone."""
        if len(images) != len(self.card.inputs):
            raise ImageError(
                f"model {self.name!r} takes {len(self.card.inputs)} image(s) "
                f"({', '.join(s.name for s in self.card.inputs)}), got {len(images)}."
            )
        return self.predict_prepared(self.prepare_batch([images if len(images) != 1 else images[0]], refine))[0]

    def predict_batch(self, items: Iterable[ImageInput | Sequence[ImageInput]],
                      refine: bool | None = None) -> list[Prediction]:
        """Predict many inputs, batched through the session `CHUNK` at a time; the first bad input raises its
        ZooError. Images are decoded on worker threads, a chunk ahead of the session."""
        if isinstance(items, (str, bytes, bytearray, os.PathLike, Image.Image)) or not isinstance(items, Iterable):
            raise ImageError(
                f"predict_batch takes a list of inputs, not a {type(items).__name__}; use predict() for one input."
            )
        results: list[Prediction] = []
        for chunk in self._prepared_chunks(iter(items), refine):
            for prepared in chunk:
                if isinstance(prepared, ZooError):
                    raise prepared
            results.extend(self.predict_prepared(concatenated(chunk)))  # type: ignore[arg-type]
        return results

    def predict_prepared(self, feeds: dict[str, np.ndarray]) -> list[Prediction]:
        """Predictions for feeds `prepare_batch` made (several requests' feeds may be concatenated), in one run."""
        views = feeds.get(VIEWS)
        if views is not None:
            feeds = {name: feed for name, feed in feeds.items() if name != VIEWS}
        outputs = dict(zip(self.card.outputs, self._open_session().run(list(self.card.outputs), feeds)))
        predictions = self.task.postprocess(self.card, outputs)
        if views is None or self.task.refine is None:
            return predictions
        return [prediction if pair is None else self.task.refine(self.card, prediction, pair)
                for prediction, pair in zip(predictions, views)]

    def predict_each(self, items: Iterable[ImageInput | Sequence[ImageInput]],
                     refine: bool | None = None) -> Iterator[Prediction | ZooError]:
        """Predict a stream of inputs, `CHUNK` per onnxruntime run, yielding one result per input in order: its
        Prediction, or the ZooError it raised (one unreadable input does not stop the others). At most two
        chunks are held (one decoding, one running), so memory stays flat however long the stream."""
        for chunk in self._prepared_chunks(iter(items), refine):
            feeds = [prepared for prepared in chunk if not isinstance(prepared, ZooError)]
            predictions = iter(self.predict_prepared(concatenated(feeds)) if feeds else [])
            yield from (prepared if isinstance(prepared, ZooError) else next(predictions) for prepared in chunk)

    def _prepared_chunks(self, items: Iterator[ImageInput | Sequence[ImageInput]], refine: bool | None = None
                         ) -> Iterator[list[dict[str, np.ndarray] | ZooError]]:
        """`items` prepared in chunks of `CHUNK` (each item's feeds, or its ZooError). The next chunk decodes on
        the worker threads while the caller runs the one yielded."""
        pool = self._decoder_pool()
        ahead: deque[list[Future]] = deque()
        start = 0
        try:
            for chunk in _chunks(items, CHUNK):
                if self._decode_seconds * len(chunk) < INLINE_PREPARE_S:
                    # Cheaper than waking a worker thread, which may wait for a core the runtime's threads hold.
                    yield from _results(ahead)
                    yield self._prepare_slice(chunk, start, refine)
                    start += len(chunk)
                    continue
                # Images that decode in under PARALLEL_DECODE_S spend it mostly in Python, holding the GIL:
                # threads would only contend, so one thread decodes the whole chunk beside the session.
                size = 1 if self._decode_seconds >= PARALLEL_DECODE_S else len(chunk)
                ahead.append([pool.submit(self._prepare_slice, chunk[k:k + size], start + k, refine)
                              for k in range(0, len(chunk), size)])
                start += len(chunk)
                if len(ahead) == 2:
                    yield [prepared for future in ahead.popleft() for prepared in future.result()]
            yield from _results(ahead)
        finally:
            for futures in ahead:  # a caller that stopped early
                for future in futures:
                    future.cancel()

    def _decoder_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._closed:
                raise ZooError(f"model {self.name!r} was closed; load it again with zoo.load({self.name!r}).")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix=f"zoo-decode-{self.name}")
            return self._pool

    def _prepare_slice(self, items: Sequence[ImageInput | Sequence[ImageInput]],
                       start: int, refine: bool | None = None) -> list[dict[str, np.ndarray] | ZooError]:
        began = time.perf_counter()
        prepared: list[dict[str, np.ndarray] | ZooError] = []
        for index, item in enumerate(items, start):
            try:
                prepared.append(self._prepare_item(item, index, refine))
            except ZooError as exc:
                prepared.append(exc)
        self._decode_seconds = (time.perf_counter() - began) / len(items)
        return prepared

    def _prepare_item(self, item: ImageInput | Sequence[ImageInput], index: int,
                      refine: bool | None = None) -> dict[str, np.ndarray]:
        images = self._split(item, len(self.card.inputs), index)
        refining = self.task.refine is not None and (self.refine if refine is None else refine)
        if refining:
            # As `prepare` does, keeping the decoded images for the alignment's working views.
            decoded = [load_image(image, (spec.height, spec.width)) for spec, image in zip(self.card.inputs, images)]
            feeds = {spec.name: fit_to_input(image, spec.height, spec.width, spec.resize)[None]
                     for spec, image in zip(self.card.inputs, decoded)}
        else:
            feeds = {spec.name: prepare(image, spec.height, spec.width, spec.resize)[None]
                     for spec, image in zip(self.card.inputs, images)}
        if self.task.refine is not None:
            feeds[VIEWS] = np.empty(1, dtype=object)  # None: not refined
            if refining:
                feeds[VIEWS][0] = align.working_views(*decoded)
        return feeds

    def prepare_batch(self, items: Sequence[ImageInput | Sequence[ImageInput]],
                      refine: bool | None = None) -> dict[str, np.ndarray]:
        """The graph's input feeds (uint8 NHWC per input) for `items`, decoded on the calling thread; for the
        changer also `VIEWS`, each pair's working views for the alignment (None where `refine` is off)."""
        return concatenated([self._prepare_item(item, index, refine) for index, item in enumerate(items)])

    def _split(self, item: object, n_inputs: int, index: int) -> tuple[ImageInput, ...]:
        if n_inputs == 1:
            return (item,)  # type: ignore[return-value]
        if not isinstance(item, (tuple, list)) or len(item) != n_inputs:
            raise ImageError(
                f"model {self.name!r} takes {n_inputs} images per prediction "
                f"({', '.join(s.name for s in self.card.inputs)}); item {index} is not a tuple of {n_inputs}."
            )
        if any(image is None for image in item):
            raise ImageError(f"item {index} is missing an image: {self.name!r} needs {n_inputs} images.")
        return tuple(item)


def concatenated(feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several `prepare_batch` results as one batch, in order."""
    return {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}


def _results(ahead: deque[list[Future]]) -> Iterator[list]:
    """The chunks prepared ahead, in order, each once its futures are done (taken off `ahead` as they go)."""
    while ahead:
        yield [prepared for future in ahead.popleft() for prepared in future.result()]


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def verified(name: str | os.PathLike[str]) -> tuple[Path, ModelCard]:
    """Model `name`'s folder and card, every file checked against the card and the card against the graph.

    `name` is a registry name, or a model folder (see `zoo.registry.is_path`)."""
    folder = model_folder(name) if is_path(name) else model_dir(name)
    # The card is checked against the graph before it configures a session or its task is trusted.
    return folder, checked_card(folder)


def save_onnx(name: str, out: str | os.PathLike[str], portable: bool = False) -> Path:
    """Write model `name` as one self-contained ONNX file, for any ONNX runtime or tool; returns its path.

    The weights are inside the file, and its metadata_props carry the labels, the input layout and the
    resize rule. `portable`: the form with only ops that every common runtime implements (deformable-cnn's
    DeformConv as GridSample + MatMul); a model whose graph has no such op writes the same file either way.
    `out` may be a folder: the file is then `out/NAME.onnx` (`NAME-portable.onnx` for the portable form).
    """
    folder, card = verified(name)
    graph = PORTABLE_GRAPH_FILE if portable and PORTABLE_GRAPH_FILE in card.files else GRAPH_FILE
    target = Path(out)
    if target.is_dir():
        target = target / f"{card.name}{'-portable' if portable else ''}.onnx"
    if not target.parent.is_dir():
        raise ZooError(f"cannot write {target}: the folder {target.parent} does not exist; create it first.")
    data = self_contained(folder / graph)
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)  # readers never see half a file
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelFileError(f"cannot write {target}: {exc}") from None
    return target


def load(name: str | os.PathLike[str], device: str = "auto", threads: int = 0, spinning: bool = True,
         registry_only: bool = False, refine: bool = True, runtime: str | None = None,
         providers: Sequence[Any] | None = None) -> Model:
    """Load model `name` (see `zoo.list()`) on "auto" (CUDA when it works, else CPU), "cpu" or "cuda".

    `name` may be a model folder of your own (a card and the files it lists): an existing folder or an
    argument with a path separator; `registry_only` refuses that (servers). A model the package does not
    embed is downloaded on first use (`zoo.hub`).

    `threads`: onnxruntime's threads (0: one per physical core). `spinning`: its threads keep spinning between
    runs, which answers back-to-back calls sooner; a server, whose event loop shares the cores, wants False.

    `refine` (the changer): refine the network's parameters by aligning the two views (`zoo.align`), the
    default; False gives the network's output alone. Each predict call may override it.

    `runtime`: "onnxruntime", "openvino" (installed apart: pip install openvino) or "auto" (the default, or
    $ZOO_RUNTIME): onnxruntime unless OpenVINO measured faster for this model on this CPU (`zoo.engines`).
    `providers`: onnxruntime execution providers passed through as given, e.g. ["TensorrtExecutionProvider",
    "CUDAExecutionProvider"] or [("OpenVINOExecutionProvider", {...})]; they choose the device themselves.
    """
    return Model(name, device=device, threads=threads, spinning=spinning, registry_only=registry_only,
                 refine=refine, runtime=runtime, providers=providers)
