"""python -m bench.runtimes [--data DIR] [--json FILE]: every model's self-contained ONNX file in other runtimes.

For each model, the file `zoo export-onnx` writes (the portable form where there is one) runs its test
vectors in onnxruntime, OpenVINO with an f32 precision hint and OpenVINO with its defaults (bf16 on CPUs
with AVX512-BF16 or AMX); the int8 variants also run their whole test split in each. Prints a markdown
table: the largest difference of any probability output from the shipped test vectors, and test accuracies.
The runners and readers here also serve the tests that take every model to these runtimes.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

import zoo
from export.vectors import shipped_vectors
from zoo.card import ModelCard
from zoo.files import PORTABLE_GRAPH_FILE
from zoo.tasks import TASKS
from zoo.timing import BATCH, cpu_name

from .data import add_data_option, data_folder, relocated
from .tables import runtimes_table

RUNTIMES = ("onnxruntime", "openvino f32", "openvino default")
#: A runtime's `feeds -> outputs` on one ONNX file.
Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


def runners(path: Path, openvino_default: bool = True) -> dict[str, Runner]:
    """Each runtime's `feeds -> outputs` on the file at `path` (`openvino_default`: also OpenVINO's defaults)."""
    import openvino

    core = openvino.Core()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    compiled = {"openvino f32": core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})}
    if openvino_default:
        compiled["openvino default"] = core.compile_model(str(path), "CPU")

    def openvino_run(model: Any) -> Runner:
        return lambda feeds: [model(feeds)[output] for output in model.outputs]

    return {"onnxruntime": lambda feeds: session.run(None, feeds),
            **{name: openvino_run(model) for name, model in compiled.items()}}


def predicted(run: Runner, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Each input's top class (the first output's argmax), 64 inputs a run."""
    count = len(next(iter(feeds.values())))
    return np.concatenate([run({name: array[start:start + BATCH] for name, array in feeds.items()})[0].argmax(1)
                           for start in range(0, count, BATCH)])


def probabilities(task: str, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs that are probabilities: a classifier's softmax; the changer's class and change probabilities."""
    return TASKS[task].probabilities(outputs)


def classifier_test_split(card: ModelCard, data: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A classifier's whole test split, read from the data folder `data`: the feeds, and the true classes."""
    from training.labelled import classifier_split
    from training.recipes import Recipe

    split = classifier_split(relocated(Recipe.from_record(card.provenance["training"]["recipe"]), data), "test")
    return {card.inputs[0].name: np.ascontiguousarray(split.images)}, np.asarray(split.labels)


def measure_file(name: str, folder: Path, data: Path) -> dict[str, Any]:
    """Model `name`'s self-contained ONNX file, written into `folder`, in each runtime: its probabilities
    against the shipped test vectors and, for an int8 variant, its test accuracy on the split in `data`."""
    card = zoo.card(name)
    path = zoo.save_onnx(name, folder, portable=PORTABLE_GRAPH_FILE in card.files)  # named as the README names it
    feeds, outputs = shipped_vectors(name)
    expected = probabilities(card.task, outputs)
    report: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    runs = runners(path)
    for runtime, run in runs.items():
        got = probabilities(card.task, run(feeds))
        report[runtime] = {"max_abs_probability_diff": max(float(np.abs(a - b).max()) for a, b in zip(got, expected)),
                           "same_top_class": all(bool((a.argmax(1) == b.argmax(1)).all()) for a, b in zip(got, expected))}
    if name.endswith("-int8"):
        split, truth = classifier_test_split(card, data)
        for runtime, run in runs.items():
            report[runtime]["test_accuracy"] = float((predicted(run, split) == truth).mean())
    return report


def main(argv: list[str] | None = None) -> None:
    """Run every model's ONNX file in each runtime and print (and optionally save) the comparison."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__.splitlines()[0])
    add_data_option(parser)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    data = data_folder(parser, args)
    with tempfile.TemporaryDirectory() as tmp:
        reports = {name: measure_file(name, Path(tmp), data) for name in zoo.list()}
    print(runtimes_table(reports, RUNTIMES))
    if args.json:
        import openvino

        args.json.write_text(json.dumps({"cpu": cpu_name(), "onnxruntime": ort.__version__,
                                         "openvino": openvino.__version__, "models": reports}, indent=2) + "\n")


if __name__ == "__main__":
    main()
