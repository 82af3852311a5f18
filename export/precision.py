"""python -m export precision NAME|all: each model's test accuracy computed in bf16, recorded in its card.

The whole held-out split (the changer: its test pairs) runs in onnxruntime (the reference: the graph as written,
float32 or an int8 variant's int8) and in OpenVINO with its default precision on this CPU, which computes the float
layers in bf16 where the CPU has AVX512-BF16 or AMX. The card's
`metrics["bf16"]` keeps both accuracies, the largest probability difference and where they were measured;
`zoo.engines` lets OpenVINO compute a model in bf16 only where the two are within `MAX_BF16_ACCURACY_LOSS`.
bf16 rounds weights and activations alike on every CPU that has it (kernels may sum in another order), so the
accuracy figure travels; the speed it buys does not, and is measured where zoo runs. Models OpenVINO cannot compile are reported and left as they are.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from training.labelled import TEST_PAIRS_SEED
from zoo.card import ModelCard
from zoo.engines import OpenVINOSession, bf16_loss_allowed
from zoo.files import GRAPH_FILE
from zoo.onnxfile import self_contained
from zoo.runtime import checked_card, create_session
from zoo.tasks import TASKS
from zoo.timing import cpu_name

from .errors import ExportError
from .quantize import batches, labelled_inputs
from .stamp_card import restamp


class PrecisionError(ExportError):
    """A model's bf16 accuracy cannot be measured here; the message says why and what to do."""


def measure_bf16(folder: Path, card: ModelCard) -> dict[str, Any]:
    """The model's test accuracy in onnxruntime (the reference: float32, or an int8 variant's int8 graph as
    written) and in OpenVINO's default precision, which computes the float layers in bf16; same inputs."""
    model = self_contained(folder / GRAPH_FILE)
    try:
        openvino = OpenVINOSession(model, bf16=True)
    except ImportError:
        raise PrecisionError("OpenVINO is not installed: pip install -e '.[bench]'.") from None
    except Exception as exc:  # an op its ONNX reader lacks
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        reason = next((line for line in lines if "conversion rule" in line), lines[-1])
        raise PrecisionError(f"OpenVINO cannot compile {card.name!r}: {reason.strip()[:200]}") from None
    if openvino.precision != "bf16":
        raise PrecisionError(f"this CPU has no bf16 (OpenVINO computes in {openvino.precision}); measure on a CPU "
                             "with AVX512-BF16 or AMX.")
    session, _ = create_session(folder / GRAPH_FILE, "cpu", 0, card.session_config)
    feeds, truth = labelled_inputs(card, "test", None, seed=TEST_PAIRS_SEED)
    probabilities = TASKS[card.task].probabilities
    predicted: dict[str, list[np.ndarray]] = {"reference": [], "bf16": []}
    largest = 0.0
    for batch in batches(feeds):
        reference = probabilities(session.run(None, batch))
        reduced = probabilities(openvino.run(None, batch))
        largest = max(largest, *(float(np.abs(a - b).max()) for a, b in zip(reference, reduced)))
        predicted["reference"].append(reference[0].argmax(1))
        predicted["bf16"].append(reduced[0].argmax(1))
    accuracy = {key: float((np.concatenate(values) == truth).mean()) for key, values in predicted.items()}
    return {"test_accuracy": accuracy["bf16"], "reference_test_accuracy": accuracy["reference"],
            "test_inputs": len(truth), "max_abs_probability_diff": largest,
            "runtime": f"OpenVINO {openvino.version} (CPU plugin, default precision)",
            "reference_runtime": f"onnxruntime {ort.__version__}", "cpu": cpu_name()}


def record_bf16(folder: Path) -> dict[str, Any]:
    """Measure model `folder`'s bf16 accuracy and record it in its card (then re-stamped); returns the figures."""
    card = checked_card(folder)
    figures = measure_bf16(folder, card)
    figures["used_by_auto"] = bf16_loss_allowed(figures["reference_test_accuracy"] - figures["test_accuracy"])
    restamp(folder, replace(card, metrics={**card.metrics, "bf16": figures}))
    return figures
