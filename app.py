"""The zoo's Gradio demo: `python app.py [--host 127.0.0.1] [--port 7860] [--share]`.

Tabs come from the registry: every shipped model whose card names a demo group appears in that
group's tab; the Models tab shows every card.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

import zoo
from zoo.geometry import pair_from_photo, warp_like_b

MAX_FILE_SIZE = "10mb"
CONCURRENCY = 2  # this machine has 2 cores; more parallel runs only queue inside onnxruntime
TAB_TITLES = {"cifar10": "CIFAR-10", "changer": "Changer"}


def load_groups() -> dict[str, list[zoo.Model]]:
    """Models by demo group (a tab each), in registry order."""
    groups: dict[str, list[zoo.Model]] = defaultdict(list)
    for name in zoo.list():
        card = zoo.card(name)
        groups[card.extra.get("demo") or name].append(zoo.load(name))
    return dict(groups)


def classify(models: list[zoo.Model], image: str | None) -> list[Any]:
    """Top-5 of every model in the group, with the provider and latency of each prediction."""
    if image is None:
        raise gr.Error("Upload an image first.")
    outputs: list[Any] = []
    for model in models:
        try:
            began = time.perf_counter()
            prediction = model.predict(image)
            elapsed = (time.perf_counter() - began) * 1000
        except zoo.ZooError as exc:
            raise gr.Error(str(exc)) from None
        outputs.append(prediction.probs)
        outputs.append(f"{model.device.upper()} · {elapsed:.1f} ms")
    return outputs


def detect_change(model: zoo.Model, image_a: str | None, image_b: str | None) -> list[Any]:
    """The predicted change, the three change probabilities, the parameters, and A warped by them beside B."""
    if image_a is None or image_b is None:
        raise gr.Error("Give both images, A and B.")
    try:
        began = time.perf_counter()
        prediction = model.predict(image_a, image_b)
        elapsed = (time.perf_counter() - began) * 1000
        spec = model.card.inputs[0]
        view_a, view_b = (zoo.preprocess.prepare(x, spec.height, spec.width, spec.resize) for x in (image_a, image_b))
    except zoo.ZooError as exc:
        raise gr.Error(str(exc)) from None
    p = prediction.params
    warped = warp_like_b(view_a, p["shift_x"], p["shift_y"], p["angle"], p["scale"])
    difference = np.abs(warped.astype(int) - view_b.astype(int)).astype(np.uint8)
    params = (f"shift ({p['shift_x']:+.3f}, {p['shift_y']:+.3f}) of the side · angle {p['angle']:+.1f}° · "
              f"scale {p['scale']:.3f}")
    strip = np.concatenate([warped, view_b, difference], axis=1)
    return [prediction.probs, prediction.changes, params, Image.fromarray(strip).resize((strip.shape[1] * 3, strip.shape[0] * 3), Image.Resampling.NEAREST),
            f"{model.device.upper()} · {elapsed:.1f} ms"]


def make_b(photo: str | None, shift_x: float, shift_y: float, angle: float, zoom: float) -> tuple[Any, Any]:
    """Cut A and B from one photo, B after the chosen change, as the training pairs are made."""
    if photo is None:
        raise gr.Error("Upload a photo first.")
    try:
        image = zoo.preprocess.load_image(photo)
    except zoo.ZooError as exc:
        raise gr.Error(str(exc)) from None
    a, b = pair_from_photo(image, 256, shift_x, shift_y, angle, zoom)
    return Image.fromarray(a), Image.fromarray(b)


def model_summary(card: zoo.ModelCard) -> str:
    acc = card.headline_accuracy
    lines = [f"### {card.name}", card.description, ""]
    if acc is not None:
        lines.append(f"**Test accuracy:** {acc:.2%}  ·  train accuracy {card.metrics.get('train_accuracy', float('nan')):.2%}")
    perturbed = card.metrics.get("perturbed_test_accuracy")
    if perturbed:
        lines.append("**Under perturbation:** " + ", ".join(f"{k} {v:.2%}" for k, v in perturbed.items()))
    size = card.size_bytes / 1e6
    training = card.provenance.get("training", {})
    lines.append(f"**Files:** {len(card.files)} ({size:.1f} MB) · **version** {card.version}")
    lines.append(f"**Trained:** {training.get('seconds', 0) / 60:.1f} min on {training.get('device', '?')} "
                 f"({training.get('precision', '?')}), data: `{card.provenance.get('data', {}).get('source', '?')}`")
    return "\n\n".join(lines)


def changer_tab(title: str, model: zoo.Model, api_name: str) -> None:
    with gr.Tab(title):
        gr.Markdown("Two views of one scene: which changes (shift, rotation, zoom) turn A into B? "
                    "Upload both, or one photo and make B from it with the sliders.")
        with gr.Row():
            image_a = gr.Image(type="filepath", label="A", sources=["upload", "clipboard"])
            image_b = gr.Image(type="filepath", label="B", sources=["upload", "clipboard"])
        with gr.Accordion("Make A and B from one photo", open=False):
            photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"])
            with gr.Row():
                shift_x = gr.Slider(-0.25, 0.25, 0.0, step=0.01, label="shift x (side)")
                shift_y = gr.Slider(-0.25, 0.25, 0.0, step=0.01, label="shift y (side)")
                angle = gr.Slider(-30, 30, 0.0, step=1, label="angle (°, + = counterclockwise)")
                zoom = gr.Slider(0.625, 1.6, 1.0, step=0.01, label="zoom (scale)")
            gr.Button("Make A and B").click(make_b, [photo, shift_x, shift_y, angle, zoom], [image_a, image_b])
        button = gr.Button("Detect the change", variant="primary")
        with gr.Row():
            probs = gr.Label(num_top_classes=8, label="Change class")
            changes = gr.Label(num_top_classes=3, label="Each change")
        params = gr.Textbox(label="Estimated parameters")
        strip = gr.Image(label="A warped by the estimate | B | difference", interactive=False)
        latency = gr.Markdown()
        button.click(lambda a, b: detect_change(model, a, b), [image_a, image_b],
                     [probs, changes, params, strip, latency], api_name=api_name)


def build_demo() -> gr.Blocks:
    groups = load_groups()
    with gr.Blocks(title="Model zoo") as demo:
        gr.Markdown("# Model zoo\nONNX models run by onnxruntime; every figure comes from the model's card.")
        for group, models in groups.items():
            if models[0].card.task == "change-detection":
                changer_tab(TAB_TITLES.get(group, group), models[0], group)
                continue
            with gr.Tab(TAB_TITLES.get(group, group)):
                with gr.Row():
                    image = gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"])
                    with gr.Column():
                        button = gr.Button("Classify", variant="primary")
                        outputs = []
                        with gr.Row():
                            for model in models:
                                with gr.Column():
                                    acc = model.card.headline_accuracy
                                    title = f"{model.name} (test {acc:.1%})" if acc is not None else model.name
                                    outputs.append(gr.Label(num_top_classes=5, label=title))
                                    outputs.append(gr.Markdown())
                button.click(lambda img, _models=models: classify(_models, img), image, outputs, api_name=group)
        with gr.Tab("Models"):
            for name in zoo.list():
                card = zoo.card(name)
                gr.Markdown(model_summary(card))
                folder = zoo.models_root() / name
                with gr.Row():
                    for title, plot in card.plots.items():
                        gr.Image(str(folder / plot), label=title, interactive=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the zoo's Gradio demo.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link")
    args = parser.parse_args(argv)
    demo = build_demo()
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64).launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE, show_error=True,
        allowed_paths=[str(zoo.models_root())],
    )


if __name__ == "__main__":
    main()
