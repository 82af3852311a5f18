"""onnxruntime sessions: provider choice, file integrity, and errors turned into ZooError."""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnxruntime as ort

from .card import ModelCard
from .errors import DeviceError, ModelFileError

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: Why CUDA failed in this process, once it has; later loads go straight to the CPU.
_cuda_failed: list[str] = []


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, card: ModelCard) -> None:
    """Check every file the card lists against its recorded size and sha256, naming the first bad one."""
    for relative, meta in card.files.items():
        path = folder / relative
        if not path.is_file():
            raise ModelFileError(f"{path} is missing; reinstall the package or re-export {card.name!r}.")
        size = path.stat().st_size
        if "bytes" in meta and size != meta["bytes"]:
            raise ModelFileError(
                f"{path} is {size} bytes but its card records {meta['bytes']}: the file is truncated or "
                f"replaced; reinstall the package or re-export {card.name!r}."
            )
        if sha256_file(path) != meta["sha256"]:
            raise ModelFileError(
                f"{path} does not match the sha256 in its card: the file was modified or damaged; "
                f"reinstall the package or re-export {card.name!r}."
            )


def create_session(model_path: Path, device: str = "auto", threads: int = 0) -> tuple[ort.InferenceSession, str]:
    """Open `model_path` on `device`; returns the session and the device actually used ("cuda" or "cpu")."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; expected one of {DEVICES}.")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; warnings about unused initializers are noise
    if threads:
        options.intra_op_num_threads = threads
    if device in ("auto", "cuda") and CUDA in ort.get_available_providers() and not _cuda_failed:
        # onnxruntime-gpu lists CUDA even where its libraries are missing; a failed attempt is
        # handled here (fallback or DeviceError), so its log lines would only be noise.
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(str(model_path), options, providers=[CUDA, CPU])
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
        return ort.InferenceSession(str(model_path), options, providers=[CPU]), "cpu"
    except Exception as exc:
        raise ModelFileError(f"{model_path} cannot be loaded by onnxruntime: {exc}") from None
