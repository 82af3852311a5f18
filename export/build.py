"""Checkpoint -> zoo/models/NAME/: ONNX (validated), weights, test vectors, plots and card.json."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import load_model
from training.data import load_split
from training.recipes import RECIPES
from zoo.card import InputSpec, ModelCard
from zoo.registry import PACKAGE_MODELS
from zoo.runtime import sha256_file

from .onnx_export import op_types, save, set_metadata, to_onnx
from .validate import check_parity, write_test_vectors

#: Graph input and output names per task, declared as data.
IO_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "image-classification": (["image"], ["logits"]),
}
PARITY_IMAGES = 512
VECTOR_IMAGES = 8
TOLERANCE = 1e-4
PLOTS = ("curves.png", "confusion.png")


def validation_images(meta: dict[str, Any], data: str | None, count: int) -> np.ndarray:
    """`count` real test images, spread over the classes, at the model's input size."""
    source = data or RECIPES[meta["name"]].data
    split = load_split(source, "test", meta["input"]["height"])
    pick = np.linspace(0, len(split) - 1, min(count, len(split))).astype(int)
    return np.ascontiguousarray(split.images[pick])


def has_deformable(meta: dict[str, Any]) -> bool:
    return bool(meta["config"].get("deformable"))


def export_model(checkpoint: Path, out_root: Path = PACKAGE_MODELS, data: str | None = None,
                 exporter: str = "dynamo", portable: bool = False) -> Path:
    """Export, validate and install one model; returns its folder. Nothing is replaced unless all checks pass."""
    checkpoint = Path(checkpoint)
    reference, meta = load_model(checkpoint, **_implementation(checkpoint, "torchvision"))
    name, task = meta["name"], meta["task"]
    input_names, output_names = IO_NAMES[task]
    images = validation_images(meta, data, PARITY_IMAGES)
    feeds = {input_names[0]: images}
    example = (torch.from_numpy(images[:2]),)

    with tempfile.TemporaryDirectory(prefix=f"export-{name}-") as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        forms = {"model.onnx": "torchvision"}
        if portable and has_deformable(meta):
            forms["model-portable.onnx"] = "sampled"
        parity: dict[str, Any] = {}
        graph_ops: dict[str, list[str]] = {}
        for filename, implementation in forms.items():
            model, _ = load_model(checkpoint, **_implementation(checkpoint, implementation))
            proto = to_onnx(model, example, input_names, output_names, exporter=exporter)
            set_metadata(proto, {"name": name, "task": task, "version": _version(meta), "labels": meta["labels"],
                                 "input": meta["input"], "exporter": exporter})
            save(proto, stage / filename)
            parity[filename] = check_parity(stage / filename, reference, feeds, TOLERANCE).as_dict()
            graph_ops[filename] = sorted(op_types(proto))
        vector_feeds = {input_names[0]: images[:VECTOR_IMAGES]}
        write_test_vectors(stage, stage / "model.onnx", vector_feeds)
        shutil.copyfile(checkpoint, stage / "model.safetensors")
        run_dir = checkpoint.parent
        plots = {}
        for plot in PLOTS:
            if (run_dir / plot).is_file():
                shutil.copyfile(run_dir / plot, stage / plot)
                plots[plot.removesuffix(".png")] = plot
        card = build_card(meta, stage, input_names, output_names, parity, graph_ops, plots, exporter)
        card.write(stage)
        target = Path(out_root) / name
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, target)
    return target


def _implementation(checkpoint: Path, implementation: str) -> dict[str, str]:
    from training.checkpoint import read_metadata

    return {"deform_implementation": implementation} if has_deformable(read_metadata(checkpoint)) else {}


def _version(meta: dict[str, Any]) -> str:
    return f"1.0+{meta.get('code_version', 'unknown')}"


def build_card(meta: dict[str, Any], folder: Path, input_names: list[str], output_names: list[str],
               parity: dict[str, Any], graph_ops: dict[str, list[str]], plots: dict[str, str], exporter: str) -> ModelCard:
    metrics = {k: v for k, v in meta["metrics"].items()}
    recipe = meta["training"]["recipe"]
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        files[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    size = meta["input"]
    return ModelCard(
        name=meta["name"],
        task=meta["task"],
        version=_version(meta),
        description=recipe["description"],
        inputs=tuple(InputSpec(n, size["height"], size["width"], size["resize"]) for n in input_names),
        outputs=tuple(output_names),
        labels=tuple(meta["labels"]),
        files=files,
        metrics=metrics,
        provenance={
            "data": meta["data"],
            "data_note": "CIFAR-10 as the JPEG (quality 75) copy in ../shared/data/cifar10-jpeg: accuracy is on that copy.",
            "architecture": {"arch": meta["arch"], "config": meta["config"]},
            "training": {k: v for k, v in meta["training"].items() if k != "recipe"} | {"recipe": recipe},
            "code_version": meta.get("code_version"),
            "export": {"exporter": exporter, "torch": torch.__version__, "parity": parity, "graph_ops": graph_ops},
        },
        plots=plots,
        opset=19,
        tolerance=TOLERANCE,
        extra={"demo": recipe.get("demo")},
    )
