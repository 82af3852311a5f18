"""The `zoo` console script, through subprocess: output and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import zoo

#: Single-image models; the changer's two-image API has tests of its own.
SHIPPED = [name for name in zoo.list() if len(zoo.card(name).inputs) == 1]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped single-image models")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, timeout=120)


def test_list_shows_every_model():
    out = run("list")
    assert out.returncode == 0
    for name in SHIPPED:
        assert name in out.stdout
    assert "test acc" in out.stdout.splitlines()[0]


def test_info_prints_the_card():
    out = run("info", SHIPPED[0])
    assert out.returncode == 0
    assert json.loads(out.stdout)["name"] == SHIPPED[0]


def test_predict_json(cifar_images):
    out = run("predict", SHIPPED[0], str(cifar_images[0]), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["label"] in zoo.card(SHIPPED[0]).labels
    assert abs(sum(result["probs"].values()) - 1) < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        (("predict", "no-such-model", "x.jpg"), "no model named"),
        (("predict", "{model}", "/nonexistent.jpg"), "does not exist"),
        (("predict", "{model}", "{text}"), "not a readable image"),
        (("info", "../etc"), "not a model name"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(args, message, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    args = [a.format(model=SHIPPED[0], text=text) for a in args]
    out = run(*args)
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr


def test_usage_errors_exit_2():
    assert run().returncode == 2
    assert run("predict").returncode == 2
