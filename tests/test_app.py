"""The Gradio app, launched from its own script on a free loopback port and called over HTTP."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("gradio_client")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited: {process.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("app.py did not start within 120 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


def _groups() -> set[str]:
    return {zoo.card(name).extra.get("demo") for name in zoo.list()}


def test_cifar10_endpoint(app_url, cifar_images):
    from gradio_client import Client, handle_file

    if "cifar10" not in _groups():
        pytest.skip("no CIFAR-10 model shipped")
    client = Client(app_url, verbose=False)
    outputs = client.predict(handle_file(str(cifar_images[3])), api_name="/cifar10")
    labels = [o for o in outputs if isinstance(o, dict)]
    assert labels and all(o["label"] in zoo.card("cnn").labels for o in labels)
    assert any("ms" in o for o in outputs if isinstance(o, str))


def test_changer_endpoint(app_url, cifar_root):
    from gradio_client import Client, handle_file

    if "changer" not in _groups():
        pytest.skip("no changer shipped")
    photos = sorted((cifar_root.parent / "caltech101-subset").glob("*/*.jpg"))[:2]
    client = Client(app_url, verbose=False)
    probs, changes, params, strip, latency = client.predict(
        handle_file(str(photos[0])), handle_file(str(photos[1])), api_name="/changer")
    assert probs["label"] in zoo.card("changer").labels
    assert {c["label"] for c in changes["confidences"]} == {"displacement", "rotation", "scaling"}
    assert "angle" in params and "ms" in latency


def test_errors_reach_the_page_as_messages(app_url, tmp_path):
    from gradio_client import Client, handle_file

    if "cifar10" not in _groups():
        pytest.skip("no CIFAR-10 model shipped")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception) as error:
        client.predict(handle_file(str(bad)), api_name="/cifar10")
    assert "Traceback" not in str(error.value)
