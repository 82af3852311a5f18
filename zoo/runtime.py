"""onnxruntime sessions: provider choice, file integrity, and errors turned into ZooError."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import onnxruntime as ort

from .card import ModelCard, render_card
from .errors import DeviceError, ModelFileError
from .files import CARD_DIGEST_KEY, CARD_FILE, GRAPH_FILE, WEIGHTS_FILE
from . import onnxfile

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Files whose sha256 every card must record: the graph and its weights (the graph's external data).
REQUIRED_FILES = (GRAPH_FILE, WEIGHTS_FILE)
#: Why CUDA failed in this process, once it has; later loads go straight to the CPU.
_cuda_failed: list[str] = []
#: The NVIDIA driver's library: without it there is no GPU to try.
CUDA_DRIVER = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


@functools.cache
def cuda_driver_present() -> bool:
    """Whether the NVIDIA driver is installed (its library loads). onnxruntime-gpu lists the CUDA provider on
    every machine; trying it where there is no driver would only print onnxruntime's errors about it."""
    if sys.platform == "darwin":
        return False
    try:
        ctypes.CDLL(CUDA_DRIVER)
    except OSError:
        return False
    return True


@functools.cache
def cpu_identity() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and instruction-set flags (Linux's /proc/cpuinfo; elsewhere the platform module's
    name and no flags), read once per process."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return f"{platform.processor()} {platform.machine()} {sys.platform}", ()
    lines = cpuinfo.read_text(errors="replace").splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return name, tuple(flags)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """A card's `files` entry for one file: its sha256 and size, as `verify_files` checks them."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def verify_files(folder: Path, card: ModelCard) -> None:
    """Check every file the card lists against its recorded size and sha256, naming the first bad one."""
    card_path = folder / CARD_FILE
    unlisted = [name for name in REQUIRED_FILES if name not in card.files]
    if unlisted:
        raise ModelFileError(
            f"{card_path} records no sha256 for {', '.join(unlisted)}: the card is damaged or incomplete; "
            f"reinstall the package or re-export {card.name!r}."
        )
    for relative, meta in card.files.items():
        path = _listed_file(folder, relative, meta, card_path)
        size = path.stat().st_size
        if size != meta["bytes"]:
            raise ModelFileError(
                f"{path} is {size} bytes but {card_path} records {meta['bytes']}: the file is truncated or "
                f"replaced, or the card damaged; reinstall the package or re-export {card.name!r}."
            )
        if sha256_file(path) != meta["sha256"]:
            raise ModelFileError(
                f"{path} does not match the sha256 recorded for it in {card_path}: one of the two was modified "
                f"or damaged; reinstall the package or re-export {card.name!r}."
            )


def _listed_file(folder: Path, relative: object, meta: object, card_path: Path) -> Path:
    """The file a card entry names, refusing entries that are malformed or point outside the model folder."""
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or not isinstance(meta.get("bytes"), int):
        raise ModelFileError(f"{card_path} has a malformed entry for {relative!r}; restore the card or re-export.")
    parts = PurePosixPath(str(relative)).parts
    if not parts or parts[0] == "/" or ".." in parts or "\\" in str(relative):
        raise ModelFileError(f"{card_path} lists {relative!r}, outside the model folder; restore it or re-export.")
    path = folder / str(relative)
    if not path.is_file():
        raise ModelFileError(f"{path}, listed in {card_path}, is missing; reinstall the package or re-export.")
    return path


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX file, read from its protobuf without onnx or onnxruntime.

    Lets the card be checked against the graph before the card configures an onnxruntime session.
    """
    try:
        return onnxfile.metadata(path.read_bytes())
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a readable ONNX file ({exc}); re-export the model.") from None


def card_digest(card: Mapping[str, Any]) -> str:
    """sha256 of a card's content except `files`, canonically serialised.

    `files` holds model.onnx's own hash, so model.onnx can carry this digest (metadata_props key
    CARD_DIGEST_KEY) and every byte of card.json is covered: `files` by the files it describes, the
    rest by this digest. Export computes it from `ModelCard.to_dict()`, the runtime from card.json.
    """
    content = {key: value for key, value in card.items() if key != "files"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def verify_card(folder: Path, card: ModelCard, metadata: Mapping[str, str]) -> None:
    """Check card.json against model.onnx's metadata_props (already verified by `verify_files`).

    Refuses a card that is not byte for byte as `ModelCard.write` renders its content, that differs
    from the card digest the graph carries, or whose name, task, version, labels or input size
    differ from the graph's own.
    """
    path = folder / CARD_FILE
    raw = path.read_bytes()
    content = json.loads(raw)
    advice = f"restore it from the package or re-export {card.name!r}"
    if raw != render_card(content).encode():
        raise ModelFileError(f"{path} is not byte for byte as export wrote it: it was edited or damaged; {advice}.")
    recorded = metadata.get(CARD_DIGEST_KEY)
    if recorded is not None and recorded != card_digest(content):
        raise ModelFileError(
            f"{path} differs from the card model.onnx was exported with (the graph records its sha256): "
            f"the card was edited or damaged; {advice}."
        )
    graph = _graph_declarations(metadata, folder / GRAPH_FILE)
    ours = {"name": card.name, "task": card.task, "version": card.version, "labels": list(card.labels)}
    for spec in card.inputs:
        ours.update({"height": spec.height, "width": spec.width, "resize": spec.resize})
        for key in set(ours) & set(graph):
            if ours[key] != graph[key]:
                raise ModelFileError(
                    f"{path} says {key} {ours[key]!r} but model.onnx was exported with {graph[key]!r}: "
                    f"the card was edited or damaged; {advice}."
                )


def checked_card(folder: Path) -> ModelCard:
    """The card of the model folder `folder`, once every file passed `verify_files` and the card `verify_card`."""
    card = ModelCard.read(folder)
    verify_files(folder, card)
    verify_card(folder, card, onnx_metadata(folder / GRAPH_FILE))
    return card


def _graph_declarations(metadata: Mapping[str, str], onnx_path: Path) -> dict[str, Any]:
    """Name, task, version, labels and input size as export wrote them into the graph's metadata_props."""
    declared: dict[str, Any] = {key: metadata[key] for key in ("name", "task", "version") if key in metadata}
    try:
        if "labels" in metadata:
            declared["labels"] = json.loads(metadata["labels"])
        if "input" in metadata:
            size = json.loads(metadata["input"])
            declared.update({key: size[key] for key in ("height", "width", "resize") if key in size})
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelFileError(f"{onnx_path} has unreadable metadata_props ({exc}); re-export the model.") from None
    return declared


def session_options(threads: int = 0, config: Mapping[str, str] | None = None,
                    spinning: bool = True) -> ort.SessionOptions:
    """zoo's onnxruntime settings (`python -m bench` measures them against the alternatives).

    `threads`: intra-op threads (0: onnxruntime's default, one per physical core); `config`: session
    config entries a model's card asks for; `spinning`: idle threads spin between runs (off, they sleep and
    leave the cores to other work, such as a server's event loop).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; warnings about unused initializers are noise
    if threads:
        options.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(model_path: Path, device: str = "auto", threads: int = 0, config: dict[str, str] | None = None,
                   spinning: bool = True, providers: Sequence[Any] | None = None) -> tuple[ort.InferenceSession, str]:
    """Open `model_path` on `device`; returns the session and the device actually used ("cuda" or "cpu").

    `config`: onnxruntime session config entries the model's card asks for (e.g. folding int8-stored
    weights into float32 at load). `providers`: execution providers passed to onnxruntime as given (names,
    or (name, options) pairs), in place of the choice `device` makes.
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}.")
    options = session_options(threads, config, spinning)
    # The graph with its weights inside: loads the same from a symlinked (Hub cache) or hard-linked install.
    model = onnxfile.self_contained(model_path)
    if providers:
        return _session_on(model, model_path, options, providers)
    if device in ("auto", "cuda") and CUDA in ort.get_available_providers() and not _cuda_failed:
        if not cuda_driver_present():
            _cuda_failed.append(f"no NVIDIA driver ({CUDA_DRIVER} does not load)")
        else:
            # With a driver, a failed attempt (CUDA or cuDNN libraries missing) gives the fallback or a
            # DeviceError below, and onnxruntime's own message about it on stderr.
            try:
                session = ort.InferenceSession(model, options, providers=[CUDA, CPU])
                if session.get_providers()[0] == CUDA:
                    return session, "cuda"
                _cuda_failed.append("onnxruntime fell back to the CPU provider")
            except Exception as exc:  # a broken CUDA install: fall back (auto) or explain (cuda)
                _cuda_failed.append(str(exc))
    if device == "cuda":
        why = f": {_cuda_failed[0]}" if _cuda_failed else ""
        raise DeviceError(
            "device='cuda' was asked for, but onnxruntime has no working CUDA provider here "
            f"(available: {ort.get_available_providers()}{why}); install onnxruntime-gpu with a matching "
            "CUDA/cuDNN, or use device='auto' or 'cpu'."
        )
    try:
        return ort.InferenceSession(model, options, providers=[CPU]), "cpu"
    except Exception as exc:
        raise ModelFileError(f"{model_path} cannot be loaded by onnxruntime: {exc}") from None


#: The device each provider that zoo knows runs on; any other is named after its provider.
PROVIDER_DEVICES = {CUDA: "cuda", "TensorrtExecutionProvider": "cuda", CPU: "cpu"}


def _session_on(model: bytes, model_path: Path, options: ort.SessionOptions,
                providers: Sequence[Any]) -> tuple[ort.InferenceSession, str]:
    """A session on the execution providers the caller named, each checked against this onnxruntime's."""
    available = ort.get_available_providers()
    names = [provider[0] if isinstance(provider, (tuple, list)) else provider for provider in providers]
    missing = [name for name in names if name not in available]
    if missing:
        raise DeviceError(
            f"execution provider(s) {missing} are not in this onnxruntime (available: {available}); install the "
            "onnxruntime package that has them (onnxruntime-gpu, onnxruntime-openvino, onnxruntime-directml, ...)."
        )
    try:
        session = ort.InferenceSession(model, options, providers=list(providers))
    except Exception as exc:
        raise DeviceError(f"onnxruntime cannot open {model_path} on providers {names}: {exc}") from None
    first = session.get_providers()[0]
    if first not in names:  # onnxruntime falls back to its CPU provider when none of those asked for starts
        raise DeviceError(f"none of the execution providers {names} started for {model_path} (onnxruntime fell back "
                          f"to {first}; its log above says why); install what they need, or add "
                          f"'{CPU}' to the list to accept the CPU.")
    return session, PROVIDER_DEVICES.get(first, first.removesuffix("ExecutionProvider").lower())
