"""The zoo's Gradio demo: `zoo demo [--host 127.0.0.1] [--port 7860] [--share | --api] [--download]`
(`python app.py` from a checkout).

Tabs come from the registry: every model on this machine whose card names a demo group
(`card.demo`) appears in that group's tab, a model without one gets a tab of its own, and
the Models tab shows every card. A model whose card or files are damaged is left out of its tab, and the Models tab
says why; the others are served. The named endpoints are the groups' names (/carplane, /cifar10,
/changer).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

# No usage statistics or telemetry leave the machine: set before gradio (and huggingface_hub) are imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import zoo  # noqa: E402
from zoo import registry  # noqa: E402
from zoo.options import add_demo_arguments  # noqa: E402
from zoo.registry import SUMMARY_HEADER, model_cards, model_summaries  # noqa: E402
from zoo.files import OFFSETS_FILE  # noqa: E402
from zoo.geometry import pair_from_photo, warp_like_b  # noqa: E402
from zoo.preprocess import load_image  # noqa: E402
from zoo.runtime import create_session  # noqa: E402
from zoo.tasks import CHANGE_DETECTION  # noqa: E402

EXAMPLES = zoo.EXAMPLES
MAX_FILE_SIZE = "10mb"
CONCURRENCY = 2  # predictions run at once; on a small CPU more parallel runs only queue inside onnxruntime
QUEUE_SIZE = 64
SOURCES = ["upload", "clipboard"]
#: What the page may serve as files: the example images. The models' folders are refused (their weights are not
#: for download through the page); their plots are shown from memory.
ALLOWED_PATHS = [str(EXAMPLES)]
BLOCKED_PATHS = [str(registry.PACKAGE_MODELS), str(zoo.models_root())]
#: Inputs reach zoo as uploaded (image_mode=None): zoo/preprocess.py is the one place images are converted.
IMAGE_INPUT = {"type": "filepath", "sources": SOURCES, "image_mode": None}
#: The deformable layer's offset branch, cut out of model.onnx by export/offsets.py.
#: Side, in screen pixels, of the deformable-sampling picture.
PICTURE_SIDE = 512


@dataclass(frozen=True)
class Demo:
    title: str
    intro: str


#: The demo tabs the page always has, in this order; which models fill them comes from the cards.
DEMOS = {
    "carplane": Demo("Car or plane", "Is it a car or a plane? The models trained for it three ways, and their int8 "
                                     "variants, side by side: each one's label and probability, with its test accuracy."),
    "cifar10": Demo("CIFAR-10", "A plain CNN and the same network with deformable convolutions, side by side; "
                                "below the deformable one, where its first layer actually samples."),
    "changer": Demo("Changer", "Two views of one scene: which changes (shift, rotation, zoom) turn A into B, "
                               "and by how much? Upload both, or one photo and make B from it with the sliders."),
}


@contextmanager
def shown_in_page() -> Iterator[None]:
    """zoo's errors become messages in the page (gr.Error), never tracebacks."""
    try:
        yield
    except zoo.ZooError as exc:
        raise gr.Error(str(exc)) from None


def timed(model: zoo.Model, *images: Any) -> tuple[zoo.Prediction, str]:
    """The prediction, and the provider and latency that produced it."""
    began = time.perf_counter()
    prediction = model.predict(*images)
    return prediction, f"{model.device.upper()} · {(time.perf_counter() - began) * 1000:.1f} ms"


def on_this_machine() -> list[str]:
    """The models whose files are here (embedded, downloaded, or of your own): the demo downloads nothing unasked."""
    return [name for name in zoo.list() if registry.source(name) != registry.FETCHABLE]


def load_groups(unavailable: dict[str, str] | None = None) -> dict[str, list[zoo.Model]]:
    """Models by demo group, the DEMOS first (empty where none is here), then the rest in registry order.

    A model whose card or files are damaged is left out, its name and zoo's message put in `unavailable`
    (when given): one damaged model does not keep the demo from starting with the others."""
    groups: dict[str, list[zoo.Model]] = defaultdict(list, {group: [] for group in DEMOS})
    for name in on_this_machine():
        card = registry.card_or_error(name)
        try:
            if isinstance(card, zoo.ZooError):
                raise card
            model = zoo.load(name, registry_only=True)
        except zoo.ZooError as exc:
            if unavailable is not None:
                unavailable[name] = str(exc)
            continue
        groups[card.demo or name].append(model)
    return dict(groups)


def sampling_points(offsets: np.ndarray, geometry: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Where each tap of a DeformConv samples, in input pixels (row, column): (regular, learned).

    `offsets` is one image's offset tensor (2·taps·groups, out_h, out_w) in torchvision's / ONNX's
    layout: (dy, dx) per tap, taps in row-major kernel order; offset group 0 is drawn. Both arrays
    are (taps, 2, out_h, out_w).
    """
    kh, kw = geometry["kernel"]
    (sh, sw), (ph, pw), (dh, dw) = geometry["strides"], geometry["pads"][:2], geometry["dilations"]
    taps = kh * kw
    out_h, out_w = offsets.shape[-2:]
    tap_row, tap_col = np.divmod(np.arange(taps), kw)
    rows = tap_row[:, None, None] * dh + np.arange(out_h)[None, :, None] * sh - ph
    cols = tap_col[:, None, None] * dw + np.arange(out_w)[None, None, :] * sw - pw
    regular = np.stack(np.broadcast_arrays(rows, cols), axis=1).astype(np.float64)
    return regular, regular + offsets.reshape(-1, taps, 2, out_h, out_w)[0]


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB, black through purple and orange to yellow."""
    anchors = np.array([[0, 0, 0], [90, 20, 130], [230, 90, 40], [255, 230, 80]], dtype=np.float64)
    stops = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(values, stops, anchors[:, c]) for c in range(3)], axis=-1).astype(np.uint8)


def draw_sampling(pixels: np.ndarray, regular: np.ndarray, learned: np.ndarray, windows: int = 6) -> Image.Image:
    """The model's input with the regular and learned taps of a windows×windows grid of positions, and a shift map."""
    height, width = pixels.shape[:2]
    scale = max(1, PICTURE_SIDE // max(height, width))
    picture = Image.fromarray(pixels).resize((width * scale, height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    out_h, out_w = regular.shape[-2:]
    step_y, step_x = max(1, out_h // windows), max(1, out_w // windows)

    def screen(point: np.ndarray) -> tuple[float, float]:
        return (point[1] + 0.5) * scale, (point[0] + 0.5) * scale

    for i in range(step_y // 2, out_h, step_y):
        for j in range(step_x // 2, out_w, step_x):
            for tap in range(regular.shape[0]):
                start, end = screen(regular[tap, :, i, j]), screen(learned[tap, :, i, j])
                draw.line([start, end], fill=(255, 255, 255), width=2)
                draw.ellipse([start[0] - 2, start[1] - 2, start[0] + 2, start[1] + 2], outline=(255, 255, 255), width=1)
                draw.ellipse([end[0] - 3, end[1] - 3, end[0] + 3, end[1] + 3], fill=(255, 60, 40), outline=(0, 0, 0))
    shift = np.linalg.norm(learned - regular, axis=1).mean(axis=0)
    heat = Image.fromarray(heat_colours(shift / max(shift.max(), 1e-9))).resize(picture.size, Image.Resampling.NEAREST)
    both = Image.new("RGB", (picture.width * 2 + 8, picture.height), (255, 255, 255))
    both.paste(picture, (0, 0))
    both.paste(heat, (picture.width + 8, 0))
    return both


class SamplingView:
    """Where a deformable model's first layer samples for a given image, from the model's offsets.onnx."""

    def __init__(self, model: zoo.Model) -> None:
        self.model = model
        self.session, _ = create_session(model.folder / OFFSETS_FILE, model.device)
        self.geometry = json.loads(self.session.get_modelmeta().custom_metadata_map["deform_geometry"])

    @classmethod
    def of(cls, model: zoo.Model) -> SamplingView | None:
        return cls(model) if OFFSETS_FILE in model.card.files else None

    def draw(self, image: Any) -> tuple[Image.Image, str]:
        feeds = self.model.prepare_batch([image])
        offsets = self.session.run(None, feeds)[0][0]
        regular, learned = sampling_points(offsets, self.geometry)
        shift = np.linalg.norm(learned - regular, axis=1)
        kh, kw = self.geometry["kernel"]
        caption = (f"**Where `{self.model.name}`'s first layer samples** ({kh}×{kw} deformable convolution, offsets "
                   f"predicted from this image). Left: hollow circles are an ordinary convolution's taps, red dots "
                   f"this layer's, at true scale, for a grid of positions. Right: the mean shift at every position, "
                   f"black 0 to yellow {shift.mean(axis=0).max():.2f} px. Mean shift {shift.mean():.2f} px, "
                   f"largest {shift.max():.2f} px (input pixels).")
        return draw_sampling(feeds[self.model.card.inputs[0].name][0], regular, learned), caption


def classify(models: list[zoo.Model], views: dict[str, SamplingView], img: str | None) -> list[Any]:
    """Every model's probabilities and latency, and the sampling picture of each deformable one."""
    if img is None:
        raise gr.Error("Upload an image first.")
    outputs: list[Any] = []
    with shown_in_page():
        for model in models:
            prediction, latency = timed(model, img)
            outputs += [prediction.probs, latency]
        for view in views.values():  # the pictures sit below the side-by-side labels
            outputs += view.draw(img)
    return outputs


def described(p: dict[str, float]) -> str:
    return f"shift ({p['shift_x']:+.4f}, {p['shift_y']:+.4f}) of the side · angle {p['angle']:+.2f}° · scale {p['scale']:.4f}"


def detect_change(model: zoo.Model, img_a: str | None, img_b: str | None) -> list[Any]:
    """The predicted change, the three change probabilities, both estimates (refined by aligning the views,
    and the network's), and A warped by the refined estimate beside B."""
    if img_a is None or img_b is None:
        raise gr.Error("Give both images, A and B.")
    with shown_in_page():
        prediction, latency = timed(model, img_a, img_b)
        feeds = model.prepare_batch([(img_a, img_b)], refine=False)
        network = model.predict_prepared(feeds)[0]
    view_a, view_b = (feeds[spec.name][0] for spec in model.card.inputs)
    p = prediction.params
    warped = warp_like_b(view_a, p["shift_x"], p["shift_y"], p["angle"], p["scale"])
    difference = np.abs(warped.astype(int) - view_b.astype(int)).astype(np.uint8)
    if prediction.refined:
        first = f"refined (alignment score {prediction.alignment_score:.4f}): {described(p)}"
    else:
        first = f"the network's (the alignment did not hold, score {prediction.alignment_score:.4f}): {described(p)}"
    params = f"{first}\nnetwork alone: {described(network.params)} ({network.label})"
    strip = Image.fromarray(np.concatenate([warped, view_b, difference], axis=1))
    strip = strip.resize((strip.width * 3, strip.height * 3), Image.Resampling.NEAREST)
    return [prediction.probs, prediction.changes, params, strip, latency]


def make_b(photo: str | None, shift_x: float, shift_y: float, angle: float, zoom: float) -> tuple[Any, Any]:
    """Cut A and B from one photo, B after the chosen change, as the training pairs are made."""
    if photo is None:
        raise gr.Error("Upload a photo first.")
    with shown_in_page():
        image = load_image(photo)
    a, b = pair_from_photo(image, 256, shift_x, shift_y, angle, zoom)
    return Image.fromarray(a), Image.fromarray(b)


def examples(folder: str) -> list[str]:
    return [str(path) for path in sorted((EXAMPLES / folder).glob("*.jpg"))]


def accuracy_title(model: zoo.Model) -> str:
    acc = model.card.headline_accuracy
    return f"{model.name} · test accuracy {acc:.2%}" if acc is not None else model.name


def classification_tab(group: str, models: list[zoo.Model]) -> None:
    """One image, every model of the group side by side; the endpoint /GROUP."""
    views = {model.name: view for model in models if (view := SamplingView.of(model))}
    outputs: list[gr.components.Component] = []
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Image", height=240, **IMAGE_INPUT, elem_id=f"{group}-image")
            button = gr.Button("Classify", variant="primary", elem_id=f"{group}-run")
            gr.Examples([[path] for path in examples("cifar10")], [image], label="Examples (CIFAR-10 test images)")
        with gr.Column(scale=3):
            with gr.Row():
                for model in models:
                    with gr.Column():
                        outputs.append(gr.Label(num_top_classes=min(5, len(model.labels)), label=accuracy_title(model)))
                        outputs.append(gr.Markdown(label=f"{model.name} provider · latency"))
            for name in views:
                outputs.append(gr.Image(label=f"{name}: where the first layer samples | mean shift per position",
                                        interactive=False, format="png"))
                outputs.append(gr.Markdown(label=f"{name} sampling"))
    button.click(partial(classify, models, views), image, outputs, api_name=group)


def changer_tab(group: str, model: zoo.Model) -> None:
    """Two images (or one photo and sliders); the endpoint /GROUP."""
    with gr.Row():
        image_a = gr.Image(label="A", height=300, **IMAGE_INPUT, elem_id=f"{group}-a")
        image_b = gr.Image(label="B", height=300, **IMAGE_INPUT, elem_id=f"{group}-b")
    gr.Examples([examples("pair")], [image_a, image_b], label="Example pair (true change: shift (+0.15, −0.10), +20°)")
    with gr.Accordion("Make A and B from one photo", open=False):
        photo = gr.Image(label="Photo", **IMAGE_INPUT)
        gr.Examples([[path] for path in examples("photos")], [photo], label="Photos (Caltech-101 test bucket)")
        with gr.Row():
            shift_x = gr.Slider(-0.25, 0.25, 0.0, step=0.01, label="shift x (side)")
            shift_y = gr.Slider(-0.25, 0.25, 0.0, step=0.01, label="shift y (side)")
            angle = gr.Slider(-30, 30, 0.0, step=1, label="angle (°, + = counterclockwise)")
            zoom = gr.Slider(0.625, 1.6, 1.0, step=0.01, label="zoom (scale)")
        gr.Button("Make A and B").click(make_b, [photo, shift_x, shift_y, angle, zoom], [image_a, image_b],
                                        api_name="make_pair")
    button = gr.Button("Detect the change", variant="primary", elem_id=f"{group}-run")
    with gr.Row():
        probs = gr.Label(num_top_classes=8, label=f"Change class ({accuracy_title(model)})", elem_id=f"{group}-class")
        changes = gr.Label(num_top_classes=3, label="Each change (independent probabilities)", show_heading=False,
                           elem_id=f"{group}-changes")
    params = gr.Textbox(label="Estimated parameters: refined by aligning the views, and the network's", lines=2,
                        elem_id=f"{group}-params")
    strip = gr.Image(label="A warped by the refined estimate (black: outside A) | B | difference", interactive=False,
                     format="png", elem_id=f"{group}-strip")
    latency = gr.Markdown(label="provider · latency", elem_id=f"{group}-latency")
    button.click(partial(detect_change, model), [image_a, image_b],
                 [probs, changes, params, strip, latency], api_name=group)


def card_text(card: zoo.ModelCard) -> str:
    """The model's README (rendered from its card by export), its plots left to the page, and its files' sizes."""
    readme = registry.card_dir(card.name) / "README.md"
    text = readme.read_text() if readme.is_file() else f"# {card.name}\n\n{card.description}"
    text = re.sub(r"^!\[[^]]*\]\([^)]*\)\n?", "", text, flags=re.MULTILINE)  # the plots are shown as images
    files = "\n".join(f"| `{path}` | {meta['bytes'] / 1e3:,.1f} kB |" for path, meta in card.files.items())
    return f"{text}\n\n| file | size |\n| --- | --- |\n{files}\n| **total** | **{card.size_bytes / 1e6:.1f} MB** |"


def models_tab(unavailable: dict[str, str]) -> None:
    """Every model's card; a model in `unavailable` (name -> zoo's message), or whose card cannot be read, says so."""
    cards = model_cards()  # read once for the table, the reasons and the accordions
    unavailable = {**unavailable, **{name: str(c) for name, c in cards.items() if isinstance(c, zoo.ZooError)}}
    rows = [(name, "unavailable", *rest[1:]) if name in unavailable else (name, *rest)
            for name, *rest in model_summaries(cards)]
    table = "\n".join("| " + " | ".join(row) + " |" for row in [SUMMARY_HEADER, ("---",) * len(SUMMARY_HEADER), *rows])
    gr.Markdown(f"Every model (`zoo list`): where its files are, and the card of each.\n\n{table}\n\n"
                "These models also run in a browser with no server: `python -m export web site/` writes a static "
                "site (docs/runtimes.md, \"In the browser\").")
    if unavailable:
        reasons = "\n".join(f"- `{name}` is unavailable: {reason}" for name, reason in unavailable.items())
        gr.Markdown(f"**Left out of the demo**, their card or files cannot be used:\n\n{reasons}",
                    elem_id="models-unavailable")
    for name, card in cards.items():
        with gr.Accordion(f"{name} (unavailable)" if name in unavailable else name, open=False):
            if name in unavailable:
                gr.Markdown(f"**`{name}` is unavailable:** {unavailable[name]}")
            if isinstance(card, zoo.ZooError):
                continue
            folder = registry.card_dir(name)
            gr.Markdown(card_text(card))
            with gr.Row():
                for title, plot in card.plots.items():
                    if (folder / plot).is_file():  # a model not downloaded yet has its card and README only
                        with Image.open(folder / plot) as picture:
                            gr.Image(picture.copy(), label=title, interactive=False)
            gr.JSON(card.to_dict(), label="card.json", open=False)


def build_demo() -> gr.Blocks:
    unavailable: dict[str, str] = {}
    groups = load_groups(unavailable)
    with gr.Blocks(title="Model zoo", analytics_enabled=False) as demo:
        gr.Markdown("# Model zoo\nONNX models run by onnxruntime; every figure comes from the model's card. "
                    "Each prediction shows the provider it ran on and its latency.")
        for group, models in groups.items():
            demo_info = DEMOS[group] if group in DEMOS else Demo(group, models[0].card.description)
            with gr.Tab(demo_info.title, id=group):
                gr.Markdown(demo_info.intro)
                if not models:
                    gr.Markdown(f"**No {demo_info.title} models are on this machine.** This tab fills itself "
                                f"once models whose card has `extra.demo == \"{group}\"` are downloaded (`zoo download "
                                "NAME`, or `zoo demo --download`) or exported (`python -m export NAME`).",
                                elem_id=f"{group}-missing")
                elif models[0].task is CHANGE_DETECTION:
                    changer_tab(group, models[0])
                else:
                    classification_tab(group, models)
        with gr.Tab("Models", id="models"):
            models_tab(unavailable)
    return demo


def serve_with_api(demo: gr.Blocks, host: str, port: int, api_key: str | None) -> None:
    """The demo at / and zoo serve's HTTP API (/v1/..., /docs, /metrics, the health routes) from one server;
    `api_key` guards the API's paths (see `check_demo_binding` for the demo's)."""
    import uvicorn

    from zoo.guard import allowed_hosts
    from zoo.serve import API_PATHS, LocalModels, create_app

    api = create_app(api_key, LocalModels(), guarded=API_PATHS, allowed_hosts=allowed_hosts(host))
    app = gr.mount_gradio_app(api, demo, path="/", max_file_size=MAX_FILE_SIZE, show_error=True,
                              allowed_paths=ALLOWED_PATHS, blocked_paths=BLOCKED_PATHS)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def check_demo_binding(host: str, api: bool, api_key: str | None, no_auth: bool) -> None:
    """The demo's one rule: its pages and Gradio's endpoints (which run the models) check no key, so listening
    beyond the loopback needs --no-auth, said explicitly; with --api, the API there also needs a key
    (--api-key or ZOO_API_KEY), unless --no-auth serves it open too. ServeError says what to add."""
    from zoo.guard import API_KEY_ENV, ServeError, loopback

    if loopback(host) or no_auth:
        return
    if api and api_key is None:
        raise ServeError(f"listening on {host}: the demo's pages check no key, and the API needs one: add "
                         f"--no-auth to serve both to anyone who can reach {host}, or --api-key KEY (or "
                         f"{API_KEY_ENV}) with --no-auth to guard the API alone.")
    raise ServeError(f"listening on {host} serves the demo's pages and its model endpoints without a key to "
                     f"anyone who can reach {host}: add --no-auth to do so"
                     + (" (the API key still guards /v1/..., /docs and /metrics)." if api else "."))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the zoo's Gradio demo.")
    add_demo_arguments(parser)
    run(parser, parser.parse_args(argv))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Serve the demo as `args` (add_demo_arguments' flags) ask; usage errors through `parser`."""
    from zoo.guard import API_KEY_ENV

    if args.api and args.share:
        parser.error("--share opens Gradio's own server: it cannot carry --api")
    if args.api_key and not args.api:
        parser.error("--api-key guards the HTTP API: add --api to serve it")
    api_key = (args.api_key or os.environ.get(API_KEY_ENV) or None) if args.api else None
    try:
        check_demo_binding(args.host, args.api, api_key, args.no_auth)
    except zoo.ZooError as exc:
        parser.error(str(exc))
    if args.download:
        for name in zoo.list():
            if registry.source(name) == registry.FETCHABLE:
                registry.fetch(name)
    demo = build_demo().queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    if args.api:
        serve_with_api(demo, args.host, args.port, api_key)
        return
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE, show_error=True,
        allowed_paths=ALLOWED_PATHS, blocked_paths=BLOCKED_PATHS,
    )


if __name__ == "__main__":
    main()
