"""python -m export.report: the tables of shipped models that README.md and docs/ show, from their cards;
   python -m export.report --readmes: every model's README.md re-rendered from its card."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import zoo
from zoo.registry import PACKAGE_MODELS
from zoo.card import License
from zoo.files import PORTABLE_GRAPH_FILE
from zoo.runtime import file_entry
from zoo.tasks import TASKS

from .release import model_names, write_index


def _pct(value: float | None) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "–"


def runs_continued(provenance: dict) -> list[dict]:
    """The runs a model's training continued (`--init`), newest first; empty for a random start."""
    chain, origin = [], provenance.get("initialized_from")
    while origin:
        chain.append(origin)
        origin = origin.get("initialized_from")
    return chain


def training_seconds(provenance: dict) -> float:
    """All the training a model's weights had: its own run plus the runs it continued, if any."""
    own = provenance.get("training", {}).get("seconds", 0)
    return own + sum(origin.get("seconds") or 0 for origin in runs_continued(provenance))


def continued_from(origin: dict) -> str:
    """One run a model's training continued, in words (the chain goes back to a random start)."""
    recipe = origin.get("recipe") or {}
    return (f"`{origin.get('name')}` ({origin.get('source')}, sha256 {str(origin.get('sha256'))[:12]}…, code "
            f"{origin.get('code_version')}): {origin.get('epochs_done')} epochs, "
            f"{(origin.get('seconds') or 0) / 60:.1f} min, test accuracy {_pct(origin.get('test_accuracy'))}; lr {recipe.get('lr')}, label smoothing "
            f"{recipe.get('label_smoothing')}")


def model_table() -> str:
    rows = ["| model | task | input | test accuracy | train accuracy | trained | files |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in zoo.list():
        card = zoo.card(name)
        training = card.provenance.get("training", {})
        size = card.size_bytes / 1e6
        inputs = " + ".join(f"{s.height}×{s.width}" for s in card.inputs)
        rows.append(f"| `{name}` | {card.task} | {inputs} | {_pct(card.metrics.get('test_accuracy'))} | "
                    f"{_pct(card.metrics.get('train_accuracy'))} | {training_seconds(card.provenance) / 60:.1f} min, "
                    f"{training.get('device', '?')} | {size:.1f} MB |")
    return "\n".join(rows)


def robustness_table() -> str:
    """Test accuracy of the CIFAR-10 models under geometric perturbation, side by side."""
    cards = [card for card in map(zoo.card, zoo.list()) if "perturbed_test_accuracy" in card.metrics]
    if not cards:
        return ""
    kinds = list(cards[0].metrics["perturbed_test_accuracy"])
    rows = ["| model | clean | " + " | ".join(kinds) + " |", "| --- | --- | " + " | ".join("---" for _ in kinds) + " |"]
    for card in cards:
        perturbed = card.metrics["perturbed_test_accuracy"]
        rows.append(f"| `{card.name}` | {_pct(card.headline_accuracy)} | "
                    + " | ".join(_pct(perturbed[k]) for k in kinds) + " |")
    return "\n".join(rows)


def backbone_note(backbone: dict) -> str:
    """Where a model's pretrained backbone came from, in words: never claims ImageNet unless it was."""
    if backbone.get("source") == "imagenet":
        return f"torchvision's ImageNet weights ({backbone.get('weights')})"
    classes = ", ".join(backbone.get("classes") or [])
    return (f"`{backbone.get('name')}` ({backbone.get('source')}), trained from scratch in this project on "
            f"{backbone.get('trained_on')} ({classes}); test accuracy {_pct(backbone.get('test_accuracy'))} there. "
            "No ImageNet weights.")


def weight_files_text(card: zoo.ModelCard, plain: bool = False) -> str:
    """The files a model's graphs read their weights from, in words: `model.safetensors` and its shared ones."""
    quoted = [name if plain else f"`{name}`" for name in card.weight_files]
    return " and ".join(quoted)


def shared_weights_note(card: zoo.ModelCard) -> str:
    """For a model with a shared weight file: what it holds and why (empty otherwise)."""
    shared = card.weight_files[1:]
    if not shared:
        return ""
    return (f" {' and '.join(shared)} holds the tensors that other models hold alike (the same file, byte for byte, "
            "in each of their folders: a download fetches it once); model.safetensors holds this model's own; "
            "`training.checkpoint.load_tensors` reads both by parameter name.")


def refinement_lines(r: dict) -> list[str]:
    """The README's figures of the changer's refinement (`zoo.align`): the network alone against refined."""
    net, ref = r["network"], r["refined"]
    cost = r["cost_per_pair"]
    rows = [("angle error, median / p90", "median_angle_deg_error", "p90_angle_deg_error", "{:.3f}°"),
            ("shift error (of the side), median / p90", "median_shift_error", "p90_shift_error", "{:.4f}"),
            ("\\|log s\\| error, median / p90", "median_log_scale_error", "p90_log_scale_error", "{:.4f}")]
    lines = ["### Refined by aligning the views", "",
             f"zoo refines the network's parameters by aligning the two views directly (`zoo/align.py`, on by "
             f"default; `refine=False` turns it off). On {r['pairs']} held-out test pairs ({r['data']}), in one run "
             f"(`{r['command']}`; errors over the pairs where that change is present):", "",
             "| | network alone | refined |", "| --- | --- | --- |"]
    for name, median, p90, form in rows:
        lines.append(f"| {name} | {form.format(net[median])} / {form.format(net[p90])} | "
                     f"{form.format(ref[median])} / {form.format(ref[p90])} |")
    lines.append(f"| label accuracy | {_pct(net['label_accuracy'])} | {_pct(ref['label_accuracy'])} |")
    worst = lambda d: min(d["per_class_accuracy"], key=d["per_class_accuracy"].get)  # noqa: E731
    lines.append(f"| worst class | {worst(net)} {_pct(net['worst_class_accuracy'])} | "
                 f"{worst(ref)} {_pct(ref['worst_class_accuracy'])} |")
    outcome = r.get("labels_by_outcome")
    held = (f" (label accuracy there {_pct(outcome['refined']['label_accuracy'])}); elsewhere, on "
            f"{outcome['fallback']['pairs']} pairs, the network's estimate stands (label accuracy "
            f"{_pct(outcome['fallback']['label_accuracy'])})."
            if outcome and outcome["fallback"]["pairs"] else "; elsewhere the network's estimate stands.")
    lines += ["", f"The alignment held on {_pct(r['refined_fraction'])} of the pairs{held}"]
    content = r.get("labels_by_content")
    if content and content["a_view_blank"]["pairs"]:
        shown, blank = content["both_views_show_content"], content["a_view_blank"]
        lines += ["", f"On {blank['pairs']} of the pairs one view is blank (its grey levels vary by less than "
                      f"{content['blank_std']:g} of 255: a uniform patch, such as a white background, shows no change "
                      f"whatever it is); label accuracy there is {_pct(blank['refined']['label_accuracy'])}. On the "
                      f"other {shown['pairs']}, where both views show something, it is "
                      f"{_pct(shown['network']['label_accuracy'])} for the network alone and "
                      f"{_pct(shown['refined']['label_accuracy'])} refined (worst class "
                      f"{_pct(shown['refined']['worst_class_accuracy'])})."]
    large = cost["pairs_12mp"]
    if "refined" in large:
        n, f = large["network"], large["refined"]
        lines += ["", f"On {large['pairs']} pairs of 12-megapixel JPEGs (4000×3000 views of test-bucket photos) the "
                      f"median errors are: angle {n['median_angle_deg_error']:.2f}° → "
                      f"{f['median_angle_deg_error']:.3f}°, "
                      f"shift {n['median_shift_error']:.4f} → {f['median_shift_error']:.4f} of the side, \\|log s\\| "
                      f"{n['median_log_scale_error']:.4f} → {f['median_log_scale_error']:.4f}."]
    lines += ["", f"Cost per pair on {r['cpu']}: {cost['pairs_64']['alignment_ms']:.1f} ms for 64×64 views, "
                  f"{large['alignment_ms']:.1f} ms for 12-megapixel JPEGs (aligned at "
                  f"{r['align_size']}×{r['align_size']} "
                  f"from the images decoded for the network, every second pixel sampled), beside the network's "
                  f"{cost['pairs_64']['network_ms']:.1f} and {large['network_ms']:.0f} ms (decoding included)."]
    return lines


def without_zoo(card: zoo.ModelCard) -> list[str]:
    """The README section "Use it without zoo": the self-contained file, its input, output and an example."""
    spec = card.inputs[0]
    portable = PORTABLE_GRAPH_FILE in card.files
    file = f"{card.name}-portable.onnx" if portable else f"{card.name}.onnx"
    command = f"zoo export-onnx {card.name} {file}" + (" --portable" if portable else "")
    lines = ["## Use it without zoo", "",
             f"Take the one-file ONNX model that `{command}` writes: the weights are inside it, and its "
             "`metadata_props` carry `labels`, `input` (height, width, layout, dtype, resize rule), `name`, `task` "
             "and `version`. Any ONNX runtime or tool reads it from wherever it is copied. (`model.onnx` in this folder "
             f"reads its weights from {weight_files_text(card)} as ONNX external data, which the onnx package refuses "
             "behind a symbolic link or a hard link, as in the Hugging Face Hub cache or a uv install.)"]
    if portable:
        lines += ["", "`--portable` writes the graph with its deformable convolutions as GridSample + MatMul, standard "
                      "ops that common runtimes implement. Without it, `zoo export-onnx` writes the graph with ONNX `DeformConv` "
                      "(opset 19), which onnxruntime runs and OpenVINO cannot convert; both give the same "
                      "predictions (parity figures below)."]
    if card.name.endswith("-int8"):
        lines += ["", "The graph is quantized (QDQ: QuantizeLinear/DequantizeLinear around each quantized op); runtimes "
                      "with int8 kernels run it in int8, others in float as the standard defines."]
    lines += ["",
              *(f"- input `{s.name}`: uint8, NHWC, shape (N, {s.height}, {s.width}, 3), RGB; N is dynamic." for s in card.inputs),
              f"- an image becomes that input: decode it, turn it upright (EXIF) and to RGB, scale it (bilinear, "
              f"antialiased) so that it covers {spec.width}×{spec.height} keeping its aspect ratio, and cut the centre "
              f"(`{spec.resize}`). Scaling to [0, 1] and normalisation are inside the graph.",
              f"- outputs: {TASKS[card.task].outputs_note}",
              f"- labels, in the order of the scores: {', '.join(card.labels)}.", "",
              "```python",
              TASKS[card.task].onnx_example.format(file=file, width=spec.width, height=spec.height, input=spec.name,
                                             input_b=card.inputs[-1].name, changes=json.dumps(list(card.changes)),
                                             params=json.dumps(list(card.param_names))).rstrip(),
              "```", ""]
    if TASKS[card.task].refinement_note:
        lines += [TASKS[card.task].refinement_note, ""]
    return lines


#: The works the models build on, cited in their READMEs' "References".
REFERENCES = {
    "report": "The course report whose three questions these models answer (Q1 car or plane, Q2 plain against "
              "deformable CNN, Q3 the changer); its figures are the ones the models are compared with.",
    "resnet": "K. He, X. Zhang, S. Ren, J. Sun. Deep Residual Learning for Image Recognition. CVPR 2016. "
              "arXiv:1512.03385.",
    "deformable": "J. Dai, H. Qi, Y. Xiong, Y. Li, G. Zhang, H. Hu, Y. Wei. Deformable Convolutional Networks. "
                  "ICCV 2017. arXiv:1703.06211.",
    "facenet": "F. Schroff, D. Kalenichenko, J. Philbin. FaceNet: A Unified Embedding for Face Recognition and "
               "Clustering. CVPR 2015. arXiv:1503.03832 (the triplet loss).",
    "batch-hard": "A. Hermans, L. Beyer, B. Leibe. In Defense of the Triplet Loss for Person Re-Identification. "
                  "arXiv:1703.07737, 2017 (batch-hard mining).",
}

#: The data sets a card's provenance can name, as they are cited.
DATASETS = {
    "CIFAR-10": "CIFAR-10 (A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009)",
    "Caltech-101": "Caltech-101 (L. Fei-Fei, R. Fergus, P. Perona, Learning Generative Visual Models from Few "
                   "Training Examples, CVPR 2004 Workshop on Generative-Model Based Vision)",
}


def _source_card(card: zoo.ModelCard) -> zoo.ModelCard:
    """The float model an int8 variant was quantized from (what it was trained as); the card itself otherwise."""
    source = card.quantized_from
    return zoo.card(source) if source and source in zoo.list() else card


#: What each data set's publishers state about its use, and how it was used here.
DATA_TERMS = {
    "CIFAR-10": "a labelled subset of the 80 Million Tiny Images collected from the web, used here as a JPEG "
                "(quality 75) copy; its authors publish it with no license and ask that the technical report be cited, and "
                "its images keep their owners' rights",
    "Caltech-101": "72 of its 101 categories (4,768 photographs collected from the web), used here only as source "
                   "images of generated pairs; its original page states no license, and its images keep their "
                   "owners' rights",
}
#: The code's license: the package's (pyproject.toml, LICENSE).
CODE_LICENSE = "MIT"


def datasets_of(provenance: dict) -> list[str]:
    """The data sets (DATASETS' names) that a card's provenance says the model was trained or tested on."""
    text = f"{provenance.get('data_note', '')} {json.dumps(provenance.get('data', {}))}".lower()
    return [name for name in DATASETS if name.lower() in text]


def default_license(card: zoo.ModelCard) -> License:
    """The `license` a card gets at export, in words, from its provenance: the code's license, where the weights
    come from (a random start, this project's backbone, third-party pretrained weights, quantization) and
    every data set, cited with its publishers' terms."""
    prov = card.provenance
    backbone = prov.get("backbone") or {}
    runs = len(runs_continued(prov)) + 1
    trained = "trained by this project" + (f" in {runs} runs, each continuing the last," if runs > 1 else "")
    quantized = f"; quantized by this project from `{card.quantized_from}`" if card.quantized_from else ""
    if backbone.get("source") == "imagenet":
        weights = (f"MIT for this project's training; the backbone started from {backbone_note(backbone)}, whose own "
                   "terms apply to them" + (f"{quantized} (`python -m export quantize`)" if quantized else ""))
    else:
        own_backbone = (f"on the backbone of `{backbone.get('name')}`, itself trained by this project "
                        if backbone else "")
        weights = (f"MIT ({trained} {own_backbone}from a random start; no third-party pretrained weights"
                   + (f"{quantized}, `python -m export quantize`" if quantized else "") + ")")
    data = "; ".join(f"{DATASETS[name]}: {DATA_TERMS[name]}" for name in datasets_of(prov))
    return License(code=CODE_LICENSE, weights=weights, data=data or "the data named in Provenance")


def license_section(card: zoo.ModelCard) -> list[str]:
    """Code, weights and data, and under which terms: the card's `license` (its provenance's where it has none)."""
    license = card.license or default_license(card)
    return ["## License", "",
            f"- code: {license.code} (`pyproject.toml`), the license of the package that ships this folder.",
            f"- weights: {license.weights}.",
            f"- data: {license.data}.", ""]


def references_section(card: zoo.ModelCard) -> list[str]:
    """The works behind the model: its architecture, its losses and the course report."""
    source = _source_card(card)
    architecture = source.provenance.get("architecture", {})
    keys = []
    if architecture.get("arch") == "resnet50":
        keys.append("resnet")
    if architecture.get("config", {}).get("deformable"):
        keys.append("deformable")
    if source.metrics.get("triplet"):
        keys += ["facenet", "batch-hard"]
    keys.append("report")
    return ["## References", "", *(f"- {REFERENCES[key]}" for key in keys), ""]


def model_readme(card: zoo.ModelCard) -> str:
    """The human-readable model card (ONNX Model Zoo style), rendered from card.json's contents."""
    m, prov = card.metrics, card.provenance
    training = prov.get("training", {})
    lines = [f"# {card.name}", "", card.description, "",
             f"Version {card.version} · task `{card.task}` · ONNX opset {card.opset}", "",
             "## Input", ""]
    for spec in card.inputs:
        lines.append(f"- `{spec.name}`: uint8 RGB, NHWC, shape (N, {spec.height}, {spec.width}, 3); N is dynamic.")
    lines += ["", "## Preprocessing", "",
              f"Any image is decoded to RGB (EXIF orientation honoured) and resized by `{card.inputs[0].resize}` "
              "(`zoo/preprocess.py`: scale to cover the input, cut the centre). Casting, scaling to [0, 1], "
              "normalisation and the NHWC → NCHW transpose are inside the graph.", "",
              "## Output", "", f"{TASKS[card.task].outputs_note} {TASKS[card.task].postprocessing_note}",
              "", f"Labels: {', '.join(card.labels)}.", "",
              "## Metrics", ""]
    if "test_accuracy" in m:
        lines.append(f"- test accuracy: **{_pct(m['test_accuracy'])}** ({card.test_images or '?'} held-out inputs)")
    if m.get("train_accuracy") is not None:
        lines.append(f"- train accuracy: {_pct(m['train_accuracy'])} ({m.get('train_accuracy_note', '')})")
    if "test_loss" in m:
        lines.append(f"- test loss: {m['test_loss']:.4f}; train loss: {m.get('train_loss', float('nan')):.4f}")
    if "perturbed_test_accuracy" in m:
        lines.append("- test accuracy under geometric perturbation: "
                     + ", ".join(f"{k} {_pct(v)}" for k, v in m["perturbed_test_accuracy"].items())
                     + " (rotation 15–30° either sign, zoom 1.2–1.6 in or out, reflected borders; "
                       "`training/evaluate.py: perturbed_accuracy`)")
    for source, result in m.get("test_by_source", {}).items():
        lines.append(f"- {source} test pairs ({result['pairs']}): accuracy {_pct(result['accuracy'])}; median errors: "
                     f"angle {result['median_angle_error_deg']:.2f}°, shift {result['median_shift_error']:.4f} of the side, "
                     f"|log s| {result['median_abs_log_scale_error']:.4f}")
    if m.get("embedding_separation"):
        apart = {k: f"silhouette {v['silhouette_cosine']:.3f}, nearest centroid {_pct(v['nearest_centroid_accuracy'])}"
                 for k, v in m["embedding_separation"].items()}
        lines.append(f"- how far apart the classes lie in the test embeddings (cosine silhouette; nearest-centroid "
                     f"accuracy): before training {apart['before']}; after {apart['after']}")
    if m.get("triplet"):
        lines.append(f"- triplet loss: margin {m['triplet']['margin']}, {m['triplet']['distance']}, "
                     f"{m['triplet']['mining']}")
    per_class = m.get("per_class_accuracy") or m.get("test", {}).get("per_class_accuracy")
    if per_class:
        lines += ["", "| class | test accuracy |", "| --- | --- |"]
        lines += [f"| {label} | {_pct(value)} |" for label, value in per_class.items()]
    if m.get("refinement"):
        lines += ["", *refinement_lines(m["refinement"])]
    lines += ["", "## Provenance", "",
              f"- data: {prov.get('data_note', '')}",
              f"- data source and fingerprints: `{json.dumps(prov.get('data', {}), sort_keys=True)}`",
              f"- architecture: `{json.dumps(prov.get('architecture', {}))}`",
              f"- training: {training.get('seconds', 0) / 60:.1f} min on {training.get('device', '?')} "
              f"({training.get('precision', '?')}), torch {training.get('torch', '?')}, seed {training.get('seed', '?')}",
              f"- recipe: `{json.dumps(training.get('recipe', {}))}`"]
    chain = runs_continued(prov)
    lines += [f"- continued from {continued_from(origin)}" for origin in chain]
    if chain:
        lines.append(f"- training in all: {training_seconds(prov) / 60:.1f} min")
    lines += [f"- code version: {prov.get('code_version')}",
              f"- export: {prov.get('export', {}).get('exporter')} exporter; parity with PyTorch: "
              f"`{json.dumps(prov.get('export', {}).get('parity', {}))}`"]
    if prov.get("backbone"):
        lines.append(f"- backbone: {backbone_note(prov['backbone'])}")
    storage = prov.get("export", {}).get("storage", {})
    if storage:
        lines.append(f"- weights: {storage['weights']}. Each is stored once: model.onnx holds the graph and reads "
                     f"its initializers from {weight_files_text(card, plain=True)} (ONNX external data with offset and "
                     "length)." + shared_weights_note(card)
                     + (f" int8 against float32 on the test split: `{json.dumps(storage['int8_fidelity'])}`"
                        if "int8_fidelity" in storage else ""))
    if "quantization" in storage:
        q = storage["quantization"]
        lines.append(f"- quantized from `{q['source']}` ({q['method']}; {q['calibration_inputs']} training inputs): "
                     f"test accuracy {_pct(q['int8_test_accuracy'])} against {_pct(q['float32_test_accuracy'])}, "
                     f"{q['speedup_b1']:.2f}x faster at batch 1 and {q['speedup_b64']:.2f}x at batch 64 "
                     f"(onnxruntime {q['onnxruntime']}, measured when it was built"
                     + (f", on {q['cpu']})" if "cpu" in q else ")"))
    lines.append("")
    lines += without_zoo(card)
    for title, plot in card.plots.items():
        lines += [f"![{title}]({plot})", ""]
    lines += license_section(card)
    lines += references_section(card)
    lines += ["## Files", "", "sha256 and sizes of every file are in `card.json` and checked by `zoo.load`."]
    return "\n".join(lines) + "\n"


def carplane_table() -> str:
    """The car/plane variants side by side: accuracy and how the training moved the classes apart."""
    # The int8 variants embed nothing of their own: the table is about how training moved the embeddings.
    cards = [card for card in map(zoo.card, zoo.list()) if card.metrics.get("embedding_separation")]
    if not cards:
        return ""
    rows = ["| model | test accuracy (2,000) | train accuracy | silhouette before → after | nearest centroid before → after | trained |",
            "| --- | --- | --- | --- | --- | --- |"]
    for card in cards:
        apart = card.metrics.get("embedding_separation", {})
        before, after = apart.get("before", {}), apart.get("after", {})
        rows.append(f"| `{card.name}` | {_pct(card.metrics.get('test_accuracy'))} | "
                    f"{_pct(card.metrics.get('train_accuracy'))} | "
                    f"{before.get('silhouette_cosine', 0):.3f} → {after.get('silhouette_cosine', 0):.3f} | "
                    f"{_pct(before.get('nearest_centroid_accuracy'))} → {_pct(after.get('nearest_centroid_accuracy'))} | "
                    f"{training_seconds(card.provenance) / 60:.1f} min |")
    return "\n".join(rows)


def refresh_readme(folder: Path) -> None:
    """Re-render a model's README.md from its card and record the README's new hash in the card.

    Only `files` changes in the card, which the digest that model.onnx carries leaves out.
    """
    card = zoo.ModelCard.read(folder)
    (folder / "README.md").write_text(model_readme(card))
    replace(card, files={**card.files, "README.md": file_entry(folder / "README.md")}).write(folder)


if __name__ == "__main__":
    if sys.argv[1:] == ["--readmes"]:
        for name in model_names():  # the checkout's models, not those of a cache or ZOO_HOME
            refresh_readme(PACKAGE_MODELS / name)
            print(f"{name}: README.md re-rendered from card.json")
        write_index()  # the READMEs' hashes changed
    else:
        for table in (model_table(), robustness_table(), carplane_table()):
            if table:
                print(table + "\n")
