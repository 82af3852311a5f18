"""Checkpoint -> zoo/models/NAME/: ONNX (validated), weights, test vectors, plots and card.json."""
from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from training.checkpoint import SCALE_SUFFIX, load_model, read_metadata, weight_files
from training.evaluate import predict_logits
from training.labelled import TEST_PAIRS_SEED, LabelledInputs
from training.tasks import TRAINING_TASKS, recipe_inputs
from training.recipes import Recipe
from zoo.card import InputSpec, ModelCard
from zoo.errors import ModelFileError
from zoo.registry import PACKAGE_MODELS
from zoo.files import GRAPH_FILE, OFFSETS_FILE, PORTABLE_GRAPH_FILE
from zoo.runtime import file_entry, sha256_file
from zoo.tasks import TASKS

from .deform_onnx import DEFORM_OPSET
from .offsets import write_offsets_model
from .onnx_export import op_types, save, set_metadata, to_onnx
from .report import default_license, model_readme
from .share import ShareError, cards_in, share_weights
from .stamp_card import stamp_card_digest
from .validate import ExportValidationError, check_parity, write_test_vectors
from .weights import StoredWeights, round_conv_weights_to_int8

PARITY_IMAGES = 512
VECTOR_IMAGES = 8
TOLERANCE = 1e-4
#: Architectures whose conv weights ship as int8 (computed in float32): a ResNet-50 is 24 MB to download
#: instead of 47 (fp16) or 94 (float32). Kept only if test accuracy drops by at most 0.3 points (the
#: project's bar for int8 models) and the answers agree with the float model on 99.5% of the test split.
INT8_WEIGHT_ARCHS = {"resnet50"}
MIN_INT8_AGREEMENT = 0.995
MAX_INT8_ACCURACY_LOSS = 0.003
#: Makes onnxruntime fold the int8 weights' DequantizeLinear nodes into float32 weights at load
#: (by default it keeps them for quantized kernels, and would dequantize on every run).
FOLD_INT8_WEIGHTS = {"session.disable_quant_qdq": "1"}
PLOTS = ("curves.png", "confusion.png", "pairs.png", "projection.png")


def held_out_inputs(meta: dict[str, Any], data: str | None) -> LabelledInputs:
    """The checkpoint's labelled test inputs, from its recorded recipe (`data`: another copy of its data)."""
    recipe = Recipe.from_record(meta["training"]["recipe"])
    return recipe_inputs(replace(recipe, data=data) if data else recipe, "test", pairs=PARITY_IMAGES, seed=TEST_PAIRS_SEED)


def validation_feeds(held_out: LabelledInputs, input_names: list[str], count: int) -> dict[str, np.ndarray]:
    """`count` of the held-out inputs, evenly spread over them, as the graph's feeds."""
    pick = np.linspace(0, len(held_out) - 1, min(count, len(held_out))).astype(int)
    return dict(zip(input_names, held_out.subset(pick).inputs))


def int8_fidelity(float_model: torch.nn.Module, int8_model: torch.nn.Module, held_out: LabelledInputs) -> dict[str, Any]:
    """Test accuracy with float and with int8-rounded weights, and how often their answers agree."""
    device = torch.device("cpu")
    labels = torch.as_tensor(held_out.labels)
    images = held_out.inputs[0]
    before = predict_logits(float_model, images, device).argmax(1)
    after = predict_logits(int8_model, images, device).argmax(1)
    fidelity = {"images": len(held_out), "float32_test_accuracy": float((before == labels).float().mean()),
                "int8_weights_test_accuracy": float((after == labels).float().mean()),
                "argmax_agreement": float((before == after).float().mean())}
    loss = fidelity["float32_test_accuracy"] - fidelity["int8_weights_test_accuracy"]
    if fidelity["argmax_agreement"] < MIN_INT8_AGREEMENT or loss > MAX_INT8_ACCURACY_LOSS:
        raise ExportValidationError(f"int8 weights change {1 - fidelity['argmax_agreement']:.3%} of the test answers "
                                    f"(allowed {1 - MIN_INT8_AGREEMENT:.1%}) and cost {loss:.2%} of test accuracy "
                                    f"(allowed {MAX_INT8_ACCURACY_LOSS:.1%}): {fidelity}")
    return fidelity


def earlier_int8_fidelity(checkpoint: Path) -> dict[str, Any] | None:
    """For weights that are already int8 (an installed model re-exported from its own model.safetensors):
    the int8-against-float32 comparison made when they were first rounded, from the card that vouches
    for exactly these files (model.safetensors and the shared weight files it lists). Measuring again would
    compare the int8 weights with themselves."""
    files = weight_files(checkpoint)  # an installed model's tensors shared with other models included
    if not any(key.endswith(SCALE_SUFFIX) for file in files for key in _keys(file)):
        return None
    try:
        card = ModelCard.read(checkpoint.parent)
    except ModelFileError:
        card = None
    described = card is not None and all(card.files.get(file.name, {}).get("sha256") == sha256_file(file)
                                         for file in files)
    fidelity = card.provenance.get("export", {}).get("storage", {}).get("int8_fidelity") if described else None
    if not fidelity:
        raise ExportValidationError(f"{checkpoint} holds int8-rounded weights but no card.json beside it describes "
                                    "this file with its int8 fidelity; export the float32 checkpoint they came from")
    return {**fidelity, "measured": "when these weights were first rounded from float32 (carried from the earlier card)"}


def _keys(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def has_deformable(meta: dict[str, Any]) -> bool:
    return bool(meta["config"].get("deformable"))


def export_model(checkpoint: Path, out_root: Path = PACKAGE_MODELS, data: str | None = None,
                 exporter: str = "dynamo", portable: bool = False) -> Path:
    """Export, validate and install one model; returns its folder. Nothing is replaced unless all checks pass."""
    checkpoint = Path(checkpoint)
    meta = read_metadata(checkpoint)

    def using(implementation: str) -> dict[str, str]:
        """Config override choosing the deformable op's implementation, for models that have one."""
        return {"deform_implementation": implementation} if has_deformable(meta) else {}

    reference, _ = load_model(checkpoint, **using("torchvision"))
    name, task = meta["name"], meta["task"]
    input_names, output_names = list(TASKS[task].inputs), list(TASKS[task].outputs)
    held_out = held_out_inputs(meta, data)
    feeds = validation_feeds(held_out, input_names, PARITY_IMAGES)
    example = tuple(torch.from_numpy(feeds[graph_input][:2]) for graph_input in input_names)
    int8_scales, storage = {}, {"weights": "float32"}
    if meta["arch"] in INT8_WEIGHT_ARCHS:
        earlier = earlier_int8_fidelity(checkpoint)
        float_model = None if earlier else copy.deepcopy(reference)  # a ResNet-50 copy only when it is compared
        int8_scales = round_conv_weights_to_int8(reference)  # parity below is checked against these weights
        storage = {"weights": "int8 conv weights (symmetric, per output channel), float32 elsewhere; computed in float32",
                   "int8_fidelity": earlier or int8_fidelity(float_model, reference, held_out)}

    with tempfile.TemporaryDirectory(prefix=f"export-{name}-") as tmp:
        stage = Path(tmp) / name
        stage.mkdir()
        weights = StoredWeights.write(reference.state_dict(), stage, int8_scales, metadata=meta)
        forms = {GRAPH_FILE: "torchvision"}
        if portable and has_deformable(meta):
            forms[PORTABLE_GRAPH_FILE] = "sampled"
        parity: dict[str, Any] = {}
        graph_ops: dict[str, list[str]] = {}
        for filename, implementation in forms.items():
            model = reference if implementation == "torchvision" else load_model(checkpoint, **using(implementation))[0]
            # Unoptimized, the graph's initializers are the state dict itself (batch norms unfolded:
            # onnxruntime folds them at load), so they can all live in model.safetensors.
            proto = to_onnx(model, example, input_names, output_names, exporter=exporter, optimize=False)
            weights.link(proto)
            storage.setdefault("inline_initializer_bytes", {})[filename] = weights.inline_bytes(proto)
            set_metadata(proto, {"name": name, "task": task, "version": _version(meta), "labels": meta["labels"],
                                 "input": meta["input"], "exporter": exporter})
            save(proto, stage / filename)
            parity[filename] = check_parity(stage / filename, reference, feeds, TOLERANCE).as_dict()
            graph_ops[filename] = sorted(op_types(proto))
        if has_deformable(meta):  # the app draws where the first deformable layer samples
            write_offsets_model(stage / GRAPH_FILE, stage / OFFSETS_FILE)
        vector_feeds = {graph_input: array[:VECTOR_IMAGES] for graph_input, array in feeds.items()}
        write_test_vectors(stage, stage / GRAPH_FILE, vector_feeds)
        run_dir = checkpoint.parent
        plots = {}
        for plot in PLOTS:
            if (run_dir / plot).is_file():
                shutil.copyfile(run_dir / plot, stage / plot)
                plots[plot.removesuffix(".png")] = plot
        card = build_card(meta, input_names, output_names, parity, graph_ops, plots, exporter, storage)
        return install(stage, card, out_root)


def install(stage: Path, card: ModelCard, out_root: Path) -> Path:
    """Finish the staged model folder (its README, the card's digest in the graph, card.json listing every
    file) and put it in place of `out_root`/NAME; returns that folder.

    The staged model holds all its weights in model.safetensors. Where the folder it replaces shared a weight
    file with other models (`python -m export share`), the tensors are shared again with them if they still
    hold them alike (a re-export of the same weights); otherwise each keeps its own.
    """
    (stage / "README.md").write_text(model_readme(card))
    stamp_card_digest(stage / GRAPH_FILE, card)  # the graph vouches for the card's content
    replace(card, files=file_hashes(stage)).write(stage)
    target = Path(out_root) / card.name
    partners = sharing_partners(target)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(stage, target)
    for shared_file, names in partners.items():
        try:
            share_weights([card.name, *names], out_root, shared_file)
        except ShareError:
            pass  # the new weights no longer match theirs: each model keeps its own
    return target


def sharing_partners(folder: Path) -> dict[str, list[str]]:
    """The models beside `folder` that hold one of its shared weight files, by file: {} for a model on its own."""
    try:
        card = ModelCard.read(folder)
    except ModelFileError:
        return {}
    shared_files = card.weight_files[1:]
    if not shared_files:
        return {}
    others = cards_in(folder.parent, other_than={card.name})
    partners: dict[str, list[str]] = {}
    for shared_file in shared_files:
        sha256 = card.files[shared_file]["sha256"]
        for other, other_card in others.items():
            if other_card.files.get(shared_file, {}).get("sha256") == sha256:
                partners.setdefault(shared_file, []).append(other)
    return partners


def _version(meta: dict[str, Any]) -> str:
    return f"1.0+{meta.get('code_version', 'unknown')}"


def file_hashes(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under `folder`, by relative path."""
    return {path.relative_to(folder).as_posix(): file_entry(path)
            for path in sorted(p for p in folder.rglob("*") if p.is_file())}


def build_card(meta: dict[str, Any], input_names: list[str], output_names: list[str], parity: dict[str, Any],
               graph_ops: dict[str, list[str]], plots: dict[str, str], exporter: str,
               storage: dict[str, Any]) -> ModelCard:
    """The card of an exported model; its `files` are filled in once every file is written, its `license` said
    from its provenance (`export.report.default_license`)."""
    recipe = meta["training"]["recipe"]
    size = meta["input"]
    card = ModelCard(
        name=meta["name"],
        task=meta["task"],
        version=_version(meta),
        description=recipe["description"],
        inputs=tuple(InputSpec(n, size["height"], size["width"], size["resize"]) for n in input_names),
        outputs=tuple(output_names),
        labels=tuple(meta["labels"]),
        files={},
        metrics=dict(meta["metrics"]),
        provenance={
            "data": meta["data"],
            "data_note": TRAINING_TASKS[meta["task"]].data_note + (f" Classes used: {', '.join(recipe['classes'])}."
                                                     if recipe.get("classes") else ""),
            **{key: meta[key] for key in ("backbone", "initialized_from") if key in meta},
            "architecture": {"arch": meta["arch"], "config": meta["config"]},
            "training": meta["training"],
            "code_version": meta.get("code_version"),
            "export": {"exporter": exporter, "torch": torch.__version__, "parity": parity, "graph_ops": graph_ops,
                       "storage": storage},
        },
        plots=plots,
        opset=DEFORM_OPSET,
        tolerance=TOLERANCE,
        extra={"demo": recipe.get("demo"), **{k: meta[k] for k in ("changes", "param_names") if k in meta},
               **({"session_config": FOLD_INT8_WEIGHTS} if "int8_fidelity" in storage else {})},
    )
    return replace(card, license=default_license(card))
