"""Shared by the app tests: launch app.py on a free port, and a models folder that fills every tab.

`demo_home` builds a ZOO_HOME from the shipped models: links to them, a copy of deformable-cnn with
its offsets.onnx (export/offsets.py), and, while no car/plane model is shipped, two stand-ins
derived from the CIFAR-10 models (their airplane and automobile logits, labelled airplane and car).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.registry import PACKAGE_MODELS
from zoo.card import ModelCard
from zoo.files import CARD_DIGEST_KEY
from zoo.runtime import card_digest, sha256_file

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(log: Path, zoo_home: Path | None = None, *options: str,
              command: tuple[str, ...] = (sys.executable, str(ROOT / "app.py"))) -> Iterator[str]:
    """Run `python app.py --port PORT [options]` (or `command`, e.g. `zoo demo`) until the block ends; yields its
    URL. Output goes to `log`."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    if zoo_home is not None:
        env["ZOO_HOME"] = str(zoo_home)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log, "w") as output:
        process = subprocess.Popen([*command, "--port", str(port), *options], cwd=ROOT,
                                   env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer within {STARTUP_SECONDS} s:\n{log.read_text()[-4000:]}")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def with_files_hashed(card: ModelCard, folder: Path) -> ModelCard:
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "card.json"}
    return replace(card, files=files)


def carplane_stand_in(source: str, folder: Path, demo: str = "carplane") -> None:
    """A two-class model from a CIFAR-10 model: its airplane and automobile logits, as 'airplane' and 'car'.

    Its card names `demo` as its tab (none when empty, like a model that belongs to no demo group).
    """
    onnx = pytest.importorskip("onnx")
    card = zoo.card(source)
    stand_in = replace(card, name=folder.name, description=f"Test stand-in: {source}'s airplane and automobile logits.",
                       outputs=("carplane_logits",), labels=("airplane", "car"), metrics={}, plots={},
                       extra={"demo": demo} if demo else {})
    proto = onnx.load(str(PACKAGE_MODELS / source / "model.onnx"))
    classes = np.array([card.labels.index("airplane"), card.labels.index("automobile")])
    proto.graph.initializer.append(onnx.numpy_helper.from_array(classes, "carplane_classes"))
    proto.graph.node.append(onnx.helper.make_node("Gather", [card.outputs[0], "carplane_classes"], ["carplane_logits"],
                                                  axis=1))
    del proto.graph.output[:]
    proto.graph.output.append(onnx.helper.make_tensor_value_info("carplane_logits", onnx.TensorProto.FLOAT,
                                                                 ["batch", 2]))
    # The graph declares what its card says (zoo.load checks): name, labels and the card's digest.
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(name=stand_in.name, labels=json.dumps(list(stand_in.labels)))
    props[CARD_DIGEST_KEY] = card_digest(stand_in.to_dict())
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    folder.mkdir()
    onnx.save(proto, str(folder / "model.onnx"))
    shutil.copyfile(PACKAGE_MODELS / source / "model.safetensors", folder / "model.safetensors")
    with_files_hashed(stand_in, folder).write(folder)


def demo_home(root: Path) -> Path:
    """A models folder with every shipped model, deformable-cnn's offsets.onnx, and car/plane models."""
    offsets = pytest.importorskip("export.offsets")
    home = root / "models"
    home.mkdir()
    for name in zoo.list():
        if name == "deformable-cnn":
            shutil.copytree(PACKAGE_MODELS / name, home / name)
            offsets.write_offsets_model(home / name / "model.onnx", home / name / offsets.OFFSETS_FILE)
            with_files_hashed(zoo.card(name), home / name).write(home / name)
        else:
            (home / name).symlink_to(PACKAGE_MODELS / name, target_is_directory=True)
    if not any(zoo.card(name).demo == "carplane" for name in zoo.list()):
        for source in ("cnn", "deformable-cnn"):
            carplane_stand_in(source, home / f"carplane-from-{source}")
    return home
