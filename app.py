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

import zoo

MAX_FILE_SIZE = "10mb"
CONCURRENCY = 2  # this machine has 2 cores; more parallel runs only queue inside onnxruntime
TAB_TITLES = {"cifar10": "CIFAR-10"}


def load_groups() -> dict[str, list[zoo.Model]]:
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


def model_summary(card: zoo.ModelCard) -> str:
    acc = card.headline_accuracy
    lines = [f"### {card.name}", card.description, ""]
    if acc is not None:
        lines.append(f"**Test accuracy:** {acc:.2%}  ·  train accuracy {card.metrics.get('train_accuracy', float('nan')):.2%}")
    perturbed = card.metrics.get("perturbed_test_accuracy")
    if perturbed:
        lines.append("**Under perturbation:** " + ", ".join(f"{k} {v:.2%}" for k, v in perturbed.items()))
    size = sum(f["bytes"] for f in card.files.values()) / 1e6
    training = card.provenance.get("training", {})
    lines.append(f"**Files:** {len(card.files)} ({size:.1f} MB) · **version** {card.version}")
    lines.append(f"**Trained:** {training.get('seconds', 0) / 60:.1f} min on {training.get('device', '?')} "
                 f"({training.get('precision', '?')}), data: `{card.provenance.get('data', {}).get('source', '?')}`")
    return "\n\n".join(lines)


def build_demo() -> gr.Blocks:
    groups = load_groups()
    with gr.Blocks(title="Model zoo") as demo:
        gr.Markdown("# Model zoo\nONNX models run by onnxruntime; every figure comes from the model's card.")
        for group, models in groups.items():
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
