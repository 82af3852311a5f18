"""The runtimes a model runs on, and how `runtime="auto"` chooses one.

onnxruntime comes with the base install; OpenVINO (`pip install openvino`) is optional. Both compile the bytes
`onnxfile.self_contained` reads from the files `runtime.verify_files` checked, and both answer
`run(output_names, feeds)` as an onnxruntime session does, so the rest of zoo does not tell them apart.

`auto` runs onnxruntime, except on the CPU when OpenVINO is installed and is faster for this model on this
machine. That is measured, not assumed: the first load of a model times both runtimes (batch 1 and a batch of
`CHUNK`, interleaved) and keeps the outcome in the models home, keyed by the graph's sha256, the CPU's name and
instruction sets, the thread count and both runtimes' versions, so later loads only read it and another CPU or
another version measures again. The faster of the two, by the geometric mean of its speed-ups at the two batch
sizes, is kept (`MIN_OPENVINO_GAIN`).

OpenVINO computes in bf16 on CPUs that have it (AVX512-BF16 or AMX). zoo lets it only where the model's card
records bf16 within `MAX_BF16_ACCURACY_LOSS` of onnxruntime's test accuracy (`python -m export precision`
measures it); elsewhere OpenVINO is held to f32.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .card import ModelCard
from .errors import DeviceError, ModelFileError, ZooError
from .files import GRAPH_FILE
from .onnxfile import self_contained
from .runtime import CUDA, DEVICES, cpu_identity, create_session, cuda_driver_present

RUNTIMES = ("auto", "onnxruntime", "openvino")
#: The environment variable that sets the runtime of every load that does not name one.
RUNTIME_ENV = "ZOO_RUNTIME"
#: bf16 is used only where it loses at most this much test accuracy against onnxruntime (0.1 point).
MAX_BF16_ACCURACY_LOSS = 0.001
#: How much faster OpenVINO must measure before `auto` takes it over onnxruntime: 1, the faster of the two. A close
#: call, within the measurement's few percent of noise, costs little whichever way it falls.
MIN_OPENVINO_GAIN = 1.0
#: The file in the models home that keeps each measured choice.
CHOICES_FILE = ".runtime-choices.json"


class OpenVINOSession:
    """A model compiled by OpenVINO's CPU plugin, run as an onnxruntime session is: `run(names, feeds)`.

    Calls from several threads at once each get an infer request of their own."""

    def __init__(self, model: bytes, threads: int = 0, bf16: bool = False) -> None:
        import openvino

        core = openvino.Core()
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if not bf16:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        graph = core.read_model(model, openvino.Tensor(np.empty(0, np.uint8)))
        self.compiled = core.compile_model(graph, "CPU", config)
        #: The precision OpenVINO computes floating-point layers in: "f32", or "bf16" where allowed and present.
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.version = openvino.__version__
        self._ports = {name: port for port in self.compiled.outputs for name in port.get_names()}
        self._outputs = [port.get_any_name() for port in self.compiled.outputs]
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            results = request.infer(feeds)  # copies the outputs out of the request's buffers
        finally:
            self._requests.put(request)
        return [results[self._ports[name]] for name in (output_names or self._outputs)]

    def get_providers(self) -> list[str]:
        return [f"OpenVINO {self.version} CPU ({self.precision})"]


def openvino_installed() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def bf16_loss_allowed(loss: float | None) -> bool:
    """Whether a measured bf16 accuracy loss (None: not measured) is within `MAX_BF16_ACCURACY_LOSS`."""
    # Accuracies are counts over the test split: 0.7807 - 0.7797 is 0.0010000000000000009 in floats.
    return loss is not None and round(loss, 9) <= MAX_BF16_ACCURACY_LOSS


def bf16_allowed(card: ModelCard) -> bool:
    """Whether the card records bf16 within `MAX_BF16_ACCURACY_LOSS` of onnxruntime's test accuracy."""
    return bf16_loss_allowed(card.bf16_accuracy_loss)


def open_openvino(folder: Path, card: ModelCard, threads: int) -> OpenVINOSession:
    """Model `folder`'s checked graph compiled by OpenVINO, in bf16 only where `bf16_allowed`."""
    if not openvino_installed():
        raise DeviceError("runtime='openvino' was asked for, but OpenVINO is not installed; "
                          "pip install openvino, or use runtime='auto' or 'onnxruntime'.")
    try:
        return OpenVINOSession(self_contained(folder / GRAPH_FILE), threads, bf16_allowed(card))
    except Exception as exc:  # e.g. an op its ONNX reader lacks (DeformConv)
        raise ModelFileError(f"OpenVINO cannot compile {card.name!r}: {str(exc)[:300]}; "
                             "use runtime='onnxruntime' (or 'auto', which falls back to it).") from None


def requested_runtime(runtime: str | None) -> str:
    """`runtime`, else $ZOO_RUNTIME, else "auto"; checked against `RUNTIMES`."""
    chosen = runtime or os.environ.get(RUNTIME_ENV, "").strip() or "auto"
    if chosen not in RUNTIMES:
        where = f" (from ${RUNTIME_ENV})" if not runtime else ""
        raise DeviceError(f"unknown runtime {chosen!r}{where}; expected one of {RUNTIMES}.")
    return chosen


def open_engine(folder: Path, card: ModelCard, runtime: str | None = None, device: str = "auto", threads: int = 0,
                spinning: bool = True, providers: Sequence[Any] | None = None) -> tuple[Any, str, str]:
    """Model `folder` opened on `runtime` ("auto", "onnxruntime", "openvino"; None: $ZOO_RUNTIME or "auto");
    returns the engine (`run(names, feeds)`), the device it runs on and the runtime chosen.

    `providers`: onnxruntime execution providers, passed through as given (names or (name, options) pairs);
    they choose the device themselves, so they go with runtime "onnxruntime" or "auto" only."""
    runtime = requested_runtime(runtime)
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}.")
    if runtime == "openvino":
        if providers:
            raise DeviceError("providers= are onnxruntime's execution providers; they do not apply to "
                              "runtime='openvino' (OpenVINO's own provider for onnxruntime is "
                              "'OpenVINOExecutionProvider', with runtime='onnxruntime').")
        if device == "cuda":
            raise DeviceError("runtime='openvino' runs on the CPU here; use device='cpu' (or 'auto'), or "
                              "runtime='onnxruntime' for CUDA.")
        return open_openvino(folder, card, threads), "cpu", "openvino"
    if runtime == "auto" and not providers and device != "cuda" and not cuda_usable(device) \
            and openvino_installed() and prefers_openvino(folder, card, threads):
        try:
            return open_openvino(folder, card, threads), "cpu", "openvino"
        except ModelFileError:
            pass  # measured before, but not compiling now: onnxruntime, as for any model OpenVINO cannot run
    session, used = create_session(folder / GRAPH_FILE, device, threads, card.session_config, spinning, providers)
    return session, used, "onnxruntime"


def cuda_usable(device: str) -> bool:
    """Whether onnxruntime would try the GPU for `device` (the driver is there and the CUDA provider listed)."""
    import onnxruntime

    return device != "cpu" and cuda_driver_present() and CUDA in onnxruntime.get_available_providers()


def prefers_openvino(folder: Path, card: ModelCard, threads: int,
                     measure: Callable[[Path, ModelCard, int], dict[str, Any]] | None = None) -> bool:
    """`auto`'s choice for this model on this machine: read from the models home, else measured and kept there."""
    from .registry import models_root

    key = choice_key(card, threads)
    store = models_root() / CHOICES_FILE
    choices = read_choices(store)
    if key not in choices:
        choices[key] = (measure or measure_runtimes)(folder, card, threads)
        write_choices(store, choices)
    return choices[key]["runtime"] == "openvino"


def choice_key(card: ModelCard, threads: int) -> str:
    """What a measured choice depends on: the graph (its sha256), the CPU, the threads and both versions."""
    import onnxruntime
    import openvino

    name, flags = cpu_identity()
    parts = [card.files[GRAPH_FILE]["sha256"], name, " ".join(flags), str(threads or os.cpu_count()),
             onnxruntime.__version__, openvino.__version__, str(bf16_allowed(card))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def measure_runtimes(folder: Path, card: ModelCard, threads: int) -> dict[str, Any]:
    """Both runtimes timed on this model, interleaved: batch 1 and batch `CHUNK`, random images."""
    from .timing import interleaved

    try:
        openvino = open_openvino(folder, card, threads)
    except ZooError as exc:
        return {"runtime": "onnxruntime", "why": str(exc)}
    session, _ = create_session(folder / GRAPH_FILE, "cpu", threads, card.session_config)
    runners = {"onnxruntime": lambda feeds: session.run(None, feeds),
               "openvino": lambda feeds: openvino.run(None, feeds)}
    timing = interleaved(runners, card, rounds=3, iterations_b1=20, iterations_b64=2)
    gain = math.sqrt(timing["onnxruntime"]["ms_b1"] / timing["openvino"]["ms_b1"]
                     * timing["openvino"]["ips_b64"] / timing["onnxruntime"]["ips_b64"])
    return {"runtime": "openvino" if gain >= MIN_OPENVINO_GAIN else "onnxruntime", "openvino_gain": round(gain, 3),
            "openvino_precision": openvino.precision, "model": card.name, **{
                f"{name}_{key}": round(value, 3) for name, figures in timing.items()
                for key, value in figures.items() if key in ("ms_b1", "ips_b64")}}


def read_choices(store: Path) -> dict[str, dict[str, Any]]:
    try:
        choices = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again
    return choices if isinstance(choices, dict) else {}


def write_choices(store: Path, choices: dict[str, dict[str, Any]]) -> None:
    """Keep the choices for later loads; a models home that cannot be written only means measuring again."""
    partial = store.with_name(f"{store.name}.{os.getpid()}.partial")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(choices, indent=1, sort_keys=True) + "\n")
        os.replace(partial, store)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)

