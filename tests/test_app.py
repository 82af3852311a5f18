"""The Gradio app: every named endpoint over HTTP with gradio_client, against app.py on a free port.

The app runs on a models folder (tests/app_server.py: demo_home) that fills every tab: the shipped
models, deformable-cnn's offsets.onnx, and car/plane stand-ins while no car/plane model ships.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from app_server import ROOT, carplane_stand_in, demo_home, serve_app
from PIL import Image

import zoo
from zoo.registry import PACKAGE_MODELS
from zoo.card import ModelCard

pytest.importorskip("gradio")
pytest.importorskip("gradio_client")
EXAMPLES = ROOT / "zoo" / "examples"


def load_app():
    """The demo's module (`zoo demo`, and `python app.py` in a checkout)."""
    return importlib.import_module("zoo.app")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return demo_home(tmp_path_factory.mktemp("zoo-home"))


@pytest.fixture(scope="module")
def client(home, tmp_path_factory):
    from gradio_client import Client

    # `zoo demo`, as an install runs it (python app.py in a checkout is the same main).
    with serve_app(tmp_path_factory.mktemp("app") / "app.log", home,
                   command=(sys.executable, "-m", "zoo.cli", "demo")) as url:
        yield Client(url, verbose=False)


def group(home: Path, demo: str) -> list[ModelCard]:
    """The cards of one demo group in the app's models folder, in the app's (registry) order."""
    cards = [ModelCard.read(folder) for folder in sorted(home.iterdir())]
    return [card for card in cards if card.demo == demo]


def labels_and_latencies(outputs: tuple) -> tuple[list[dict], list[str]]:
    labels = [o for o in outputs if isinstance(o, dict)]
    latencies = [o for o in outputs if isinstance(o, str) and o.endswith(" ms")]
    return labels, latencies


def test_the_endpoints_are_named(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/carplane", "/cifar10", "/changer"} <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/changer"]["parameters"]] == ["img_a", "img_b"]


@pytest.mark.parametrize("example, truth", [("airplane.jpg", "airplane"), ("automobile.jpg", "car")])
def test_carplane_endpoint(client, home, example, truth):
    from gradio_client import handle_file

    cards = group(home, "carplane")
    outputs = client.predict(handle_file(str(EXAMPLES / "cifar10" / example)), api_name="/carplane")
    labels, latencies = labels_and_latencies(outputs)
    assert len(labels) == len(cards)  # every variant, side by side, in the registry's order
    for label, card in zip(labels, cards):  # each one's answer is zoo's for that model
        expected = zoo.load(home / card.name, device="cpu").predict(EXAMPLES / "cifar10" / example)
        assert label["label"] == expected.label, card.name
        confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
        assert confidences.keys() == {"airplane", "car"}
        assert all(abs(confidences[key] - value) < 1e-6 for key, value in expected.probs.items()), card.name
    assert sum(label["label"] == truth for label in labels) > len(cards) / 2  # an easy image: most variants agree
    assert len(latencies) == len(cards) and all(text.split(" · ")[0] in ("CPU", "CUDA") for text in latencies)


def test_cifar10_endpoint_and_where_the_deformable_layer_samples(client, home):
    from gradio_client import handle_file

    cards = group(home, "cifar10")
    outputs = client.predict(handle_file(str(EXAMPLES / "cifar10" / "cat.jpg")), api_name="/cifar10")
    labels, latencies = labels_and_latencies(outputs)
    assert [label["label"] for label in labels] == ["cat"] * len(cards)
    assert all(len(label["confidences"]) == 5 for label in labels)  # top-5
    assert len(latencies) == len(cards)
    pictures = [o for o in outputs if isinstance(o, str) and o.endswith(".png")]
    assert len(pictures) == 1  # deformable-cnn's; the plain cnn has no offsets
    picture = Image.open(pictures[0])
    side = 32 * (512 // 32)
    assert picture.size == (2 * side + 8, side)
    caption = next(o for o in outputs if isinstance(o, str) and "first layer samples" in o)
    assert "deformable-cnn" in caption and "px" in caption


def test_changer_endpoint(client, home):
    from gradio_client import handle_file

    pair = sorted((EXAMPLES / "pair").glob("*.jpg"))
    probs, changes, params, strip, latency = client.predict(*(handle_file(str(p)) for p in pair), api_name="/changer")
    # The example pair's true change (zoo/examples/README.md): shift (+0.15, -0.10), angle +20°, scale 1.
    assert probs["label"] == "displacement+rotation"
    assert {c["label"] for c in changes["confidences"]} == {"displacement", "rotation", "scaling"}
    refined, network = params.splitlines()
    assert refined.startswith("refined (alignment score") and network.startswith("network alone:")
    angle = float(refined.split("angle ")[1].split("°")[0])
    assert abs(angle - 20) < 0.1 and 15 < float(network.split("angle ")[1].split("°")[0]) < 25
    assert np.asarray(Image.open(strip)).shape == (64 * 3, 64 * 3 * 3, 3)  # warped A | B | difference, 3x
    assert latency.endswith(" ms")


def test_zoo_errors_reach_the_page_as_messages(client, tmp_path):
    from gradio_client import handle_file

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((EXAMPLES / "photos" / "schooner.jpg").read_bytes()[:3000])
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(truncated)), api_name="/cifar10")
    assert "truncated" in str(error.value) and "Traceback" not in str(error.value)
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(EXAMPLES / "cifar10" / "cat.jpg")), None, api_name="/changer")
    assert "Give both images" in str(error.value)


def test_non_images_are_refused(client, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(text)), api_name="/carplane")
    assert "cannot identify image file" in str(error.value) and "Traceback" not in str(error.value)


def test_tabs_without_models_say_so(tmp_path, monkeypatch):
    """cnn and a model of no demo group: the Car or plane and Changer tabs explain, the other model has a tab."""
    (tmp_path / "cnn").symlink_to(PACKAGE_MODELS / "cnn", target_is_directory=True)
    carplane_stand_in("cnn", tmp_path / "loner", demo="")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setattr(zoo.registry, "PACKAGE_MODELS", tmp_path / "no-package-models")  # the home's models only
    demo = load_app().build_demo()
    texts = [block.value for block in demo.blocks.values() if type(block).__name__ == "Markdown"]
    assert any("No Car or plane models are on this machine" in str(text) for text in texts)
    assert any("No Changer models are on this machine" in str(text) for text in texts)
    tabs = [block.label for block in demo.blocks.values() if type(block).__name__ == "Tab"]
    assert tabs == ["Car or plane", "CIFAR-10", "Changer", "loner", "Models"]
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert {"cifar10", "loner"} <= api_names and not {"carplane", "changer"} & api_names


def test_the_demo_starts_without_the_damaged_models(tmp_path, monkeypatch):
    """A model whose weights are damaged and one whose card is: the demo starts with the others, leaves both out
    of their tabs, and the Models tab says each is unavailable and why (zoo's message)."""
    (tmp_path / "deformable-cnn").symlink_to(PACKAGE_MODELS / "deformable-cnn", target_is_directory=True)
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "cnn")
    weights = tmp_path / "cnn" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + bytes(16))
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "broken")
    (tmp_path / "broken" / "card.json").write_text("{not json")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setattr(zoo.registry, "PACKAGE_MODELS", tmp_path / "no-package-models")  # the home's models only
    with pytest.raises(zoo.ZooError) as damaged:
        zoo.load("cnn", registry_only=True)
    demo = load_app().build_demo()
    tabs = [block.label for block in demo.blocks.values() if type(block).__name__ == "Tab"]
    assert tabs == ["Car or plane", "CIFAR-10", "Changer", "Models"]
    labels = [block.label for block in demo.blocks.values() if type(block).__name__ == "Label"]
    assert any(label.startswith("deformable-cnn") for label in labels)
    assert not any(label.startswith(("cnn", "broken")) for label in labels)
    texts = "\n".join(str(block.value) for block in demo.blocks.values() if type(block).__name__ == "Markdown")
    assert str(damaged.value) in texts
    assert "broken" in texts and "card.json is unreadable or damaged" in texts
    assert sum("unavailable" in line for line in texts.splitlines()) >= 2


def test_sampling_points_are_where_deform_conv_samples():
    """On a ramp image (channel 0 = column, channel 1 = row) a DeformConv whose weight picks one tap outputs the
    point that tap sampled; torchvision's op must agree with `sampling_points` for every tap and position."""
    torch = pytest.importorskip("torch")
    from torchvision.ops import deform_conv2d

    sampling_points = load_app().sampling_points
    size, kernel = 12, 3
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    image = torch.from_numpy(np.stack([cols, rows]))[None]
    offsets = torch.from_numpy(np.random.default_rng(0).uniform(-0.9, 0.9, (1, 2 * kernel * kernel, size, size)))
    offsets = offsets.float()
    geometry = {"kernel": [kernel, kernel], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1]}
    _, learned = sampling_points(offsets[0].numpy(), geometry)
    inside = slice(2, size - 2)  # bilinear sampling reproduces the ramp only away from the zero border
    for tap in range(kernel * kernel):
        weight = torch.zeros(2, 2, kernel, kernel)
        weight[0, 0].view(-1)[tap] = 1  # output 0: the column ramp at this tap
        weight[1, 1].view(-1)[tap] = 1  # output 1: the row ramp at this tap
        sampled = deform_conv2d(image, offsets, weight, padding=1)[0].numpy()
        np.testing.assert_allclose(sampled[0, inside, inside], learned[tap, 1, inside, inside], atol=1e-4)
        np.testing.assert_allclose(sampled[1, inside, inside], learned[tap, 0, inside, inside], atol=1e-4)


def test_one_photo_and_sliders_make_a_pair_the_changer_reads(client):
    from gradio_client import handle_file

    photo = handle_file(str(EXAMPLES / "photos" / "schooner.jpg"))
    image_a, image_b = client.predict(photo, 0.0, 0.0, -25, 1.3, api_name="/make_pair")
    probs, _, params, _, _ = client.predict(handle_file(image_a), handle_file(image_b), api_name="/changer")
    assert probs["label"] == "rotation+scaling"
    refined = params.splitlines()[0]
    angle, scale = float(refined.split("angle ")[1].split("°")[0]), float(refined.split("scale ")[1])
    assert abs(angle + 25) < 0.1 and abs(scale - 1.3) < 0.005


def test_the_demo_and_the_http_api_share_one_server_with_api(home, tmp_path):
    from gradio_client import Client, handle_file

    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    cat = EXAMPLES / "cifar10" / "cat.jpg"
    with serve_app(tmp_path / "app.log", home, "--api") as url:
        demo = Client(url, verbose=False).predict(handle_file(str(cat)), api_name="/cifar10")
        assert labels_and_latencies(demo)[0][0]["label"] == "cat"
        assert httpx.get(f"{url}healthz").json() == {"status": "ok"}
        answer = httpx.post(f"{url}v1/models/cnn/predict", files=[("image", (cat.name, cat.read_bytes()))], timeout=60)
        assert answer.json()["predictions"][0]["label"] == zoo.load("cnn", device="cpu").predict(cat).label
        assert httpx.get(f"{url}docs").status_code == 200
        assert httpx.get(f"{url}readyz").status_code == 200 and "zoo_http_requests_total" in httpx.get(f"{url}metrics").text
        for weights in (zoo.registry.PACKAGE_MODELS / "cnn" / "model.safetensors", home / "cnn" / "model.safetensors"):
            for route in ("gradio_api/file=", "file="):
                assert httpx.get(f"{url}{route}{weights}").status_code in (403, 404), (route, weights)
        example = zoo.EXAMPLES / "cifar10" / "cat.jpg"
        assert httpx.get(f"{url}gradio_api/file={example}").content == example.read_bytes()


@pytest.mark.parametrize("flags, refusal", [
    (["--host", "0.0.0.0"], "add --no-auth"),
    (["--host", "0.0.0.0", "--api"], "the API needs one"),
    (["--host", "0.0.0.0", "--api", "--api-key", "k"], "the API key still guards"),
    (["--api-key", "k"], "add --api"),
])
def test_beyond_the_loopback_the_demo_needs_no_auth_said_and_the_api_a_key(monkeypatch, capsys, flags, refusal):
    monkeypatch.delenv("ZOO_API_KEY", raising=False)
    app = load_app()
    monkeypatch.setattr(app, "build_demo", lambda: pytest.fail("the demo was built before the binding was refused"))
    with pytest.raises(SystemExit):
        app.main(flags)
    assert refusal in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--host", "0.0.0.0", "--no-auth"], ["--host", "0.0.0.0", "--api", "--no-auth"],
                                   ["--host", "0.0.0.0", "--api", "--api-key", "k", "--no-auth"], ["--api"], []])
def test_the_binding_rule_lets_these_start(monkeypatch, flags):
    monkeypatch.delenv("ZOO_API_KEY", raising=False)
    app = load_app()

    class Accepted(Exception):
        """The binding was accepted: the demo is being built."""

    def build_demo() -> None:
        raise Accepted

    monkeypatch.setattr(app, "build_demo", build_demo)
    with pytest.raises(Accepted):
        app.main(flags)