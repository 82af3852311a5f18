"""An export is validated or it failed: checker, parity with PyTorch on real images, test vectors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from zoo.files import TEST_VECTORS
from zoo.model import CHUNK

from .errors import ExportError


class ExportValidationError(ExportError):
    """The ONNX file does not reproduce the PyTorch model; lists every failed check."""


@dataclass
class Parity:
    images: int
    max_abs_diff: float
    argmax_agreement: float

    def as_dict(self) -> dict[str, float]:
        return {"images": self.images, "max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement}


def check_parity(onnx_path: Path, model: nn.Module, feeds: dict[str, np.ndarray], tolerance: float,
                 batch_size: int = CHUNK) -> Parity:
    """Run onnxruntime (CPU) and PyTorch (fp32) on the same feeds; raise unless they agree within `tolerance`."""
    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = list(feeds)
    count = len(next(iter(feeds.values())))
    worst, agree = 0.0, 0
    model.eval()
    for start in range(0, count, batch_size):
        batch = {name: feeds[name][start:start + batch_size] for name in names}
        ours = session.run(None, batch)
        with torch.no_grad():
            theirs = model(*[torch.from_numpy(np.ascontiguousarray(batch[name])) for name in names])
        theirs = [t.float().numpy() for t in (theirs if isinstance(theirs, (tuple, list)) else (theirs,))]
        worst = max([worst] + [float(np.abs(o - t).max()) for o, t in zip(ours, theirs)])
        agree += int((ours[0].argmax(1) == theirs[0].argmax(1)).sum())
    parity = Parity(count, worst, agree / count)
    failures = []
    if parity.max_abs_diff > tolerance:
        failures.append(f"max |output difference| {parity.max_abs_diff:.3g} > {tolerance:g}")
    if parity.argmax_agreement < 1.0:
        failures.append(f"argmax agreement {parity.argmax_agreement:.4%} < 100%")
    if failures:
        raise ExportValidationError(f"{onnx_path}: " + "; ".join(failures) + f" (on {count} images)")
    return parity


def write_test_vectors(folder: Path, onnx_path: Path, feeds: dict[str, np.ndarray]) -> Path:
    """ONNX Model Zoo test vectors: test_data_set_0/input_K.pb and output_K.pb (serialized TensorProto)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, feeds)
    target = folder / TEST_VECTORS
    target.mkdir(parents=True, exist_ok=True)
    for k, (name, array) in enumerate(feeds.items()):
        (target / f"input_{k}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    for k, (meta, array) in enumerate(zip(session.get_outputs(), outputs)):
        (target / f"output_{k}.pb").write_bytes(numpy_helper.from_array(array, meta.name).SerializeToString())
    return target
