"""Reading a model's shipped test vectors (the ONNX Model Zoo layout that `validate.write_test_vectors` writes):
what the runtime checks, the browser site and the benchmarks compare against. Needs onnx and numpy, no torch."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

import zoo
from zoo.files import TEST_VECTORS
from zoo.registry import PACKAGE_MODELS


def shipped_vectors(name: str) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Model `name`'s ONNX Model Zoo test vectors: the feeds by input name, and the outputs in order."""
    folder = PACKAGE_MODELS / name / TEST_VECTORS
    feeds = {spec.name: numpy_helper.to_array(onnx.load_tensor(str(folder / f"input_{k}.pb")))
             for k, spec in enumerate(zoo.card(name).inputs)}
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(path)))
               for path in sorted(folder.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))]
    return feeds, outputs
