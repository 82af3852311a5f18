"""The `zoo` console script, through subprocess: output and exit codes."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.registry import PACKAGE_MODELS
import zoo.cli

ROOT = Path(__file__).resolve().parents[1]
PAIR = sorted((ROOT / "zoo" / "examples" / "pair").glob("*.jpg"))

#: Single-image models; the changer's two-image API has tests of its own.
SHIPPED = [name for name in zoo.list() if len(zoo.card(name).inputs) == 1]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped single-image models")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], check=False, capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, **(env or {})})


def test_the_installed_console_script_runs_this_main():
    target = re.search(r'^zoo = "([\w.]+):(\w+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    module, function = target.groups()
    assert (module, function) == ("zoo.cli", "main") and callable(zoo.cli.main)
    script = shutil.which("zoo", path=str(Path(sys.executable).parent)) or shutil.which("zoo")
    assert script, "the zoo console script is not installed: pip install -e ."
    out = subprocess.run([script, "list"], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout == run("list").stdout


def test_list_shows_every_model_with_its_card_figures():
    out = run("list")
    assert out.returncode == 0
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["name", "task", "input", "test", "acc", "size", "where"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == set(zoo.list())
    for name, row in by_name.items():
        card = zoo.card(name)
        assert card.task in row and f"{card.size_bytes / 1e6:.1f} MB" in row and row.endswith(" embedded")
        if card.headline_accuracy is not None:
            assert f"{card.headline_accuracy:.2%}" in row


def test_list_shows_a_model_of_your_own_in_zoo_home(tmp_path):
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "my-cnn")
    out = run("list", env={"ZOO_HOME": str(tmp_path)})
    rows = {line.split()[0]: line.split()[-1] for line in out.stdout.splitlines()[1:]}
    assert out.returncode == 0 and rows == {**{name: "embedded" for name in zoo.list()}, "my-cnn": "local"}


def test_list_shows_the_other_models_when_a_card_is_broken(tmp_path, monkeypatch):
    """One damaged card.json in ZOO_HOME: that model's row says unavailable, every other model is listed, the
    reason is zoo's message without the folder's path, and the exit status stays 0."""
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "my-cnn")
    shutil.copytree(PACKAGE_MODELS / "cnn", tmp_path / "broken-cnn")
    (tmp_path / "broken-cnn" / "card.json").write_text("{not json")
    out = run("list", env={"ZOO_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["name", "task", "input", "test", "acc", "size", "where"]
    cells = {row.split()[0]: row.split() for row in rows}
    assert {name: row[-1] for name, row in cells.items()} \
        == {**{name: "embedded" for name in zoo.list()}, "my-cnn": "local", "broken-cnn": "local"}
    assert cells["broken-cnn"][1] == "unavailable" and cells["my-cnn"][1] == "image-classification"
    assert "broken-cnn" in out.stderr and "card.json is unreadable or damaged" in out.stderr
    assert "Traceback" not in out.stderr and str(tmp_path) not in out.stdout + out.stderr
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))  # the demo's Models tab reads the same rows
    summaries = {row[0]: row for row in zoo.registry.model_summaries()}
    assert summaries["broken-cnn"][1] == "unavailable" and summaries["my-cnn"][1] == "image-classification"


def test_list_exits_1_when_no_card_can_be_read(tmp_path):
    for name in zoo.list():  # a damaged card of each name in ZOO_HOME hides the package's
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text("[]")
    out = run("list", env={"ZOO_HOME": str(tmp_path)})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert {row.split()[1] for row in out.stdout.splitlines()[1:]} == {"unavailable"}
    assert "no model's card can be read" in out.stderr


def test_info_prints_the_card():
    out = run("info", SHIPPED[0])
    assert out.returncode == 0
    assert json.loads(out.stdout)["name"] == SHIPPED[0]


def test_predict_json(cifar_images):
    out = run("predict", SHIPPED[0], str(cifar_images[0]), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    expected = zoo.load(SHIPPED[0], device="cpu").predict(cifar_images[0]).to_dict()
    assert result["label"] == expected["label"]
    assert result["score"] == pytest.approx(expected["score"], abs=1e-6)
    assert result["probs"] == pytest.approx(expected["probs"], abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (("predict", "no-such-model", "x.jpg"), "no model named"),
        (("predict", "{model}", "/nonexistent.jpg"), "does not exist"),
        (("predict", "{model}", "{text}"), "not a readable image"),
        (("info", "/etc"), "has no card.json"),
        (("info", "no/such/folder"), "is not a folder"),
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
    assert run("predict", SHIPPED[0], "x.jpg", "--top", "0").returncode == 2
    assert run("frobnicate").returncode == 2


changer_only = pytest.mark.skipif("changer" not in zoo.list(), reason="no changer shipped")


@changer_only
def test_predict_a_pair_with_the_changer():
    out = run("predict", "changer", *map(str, PAIR), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # The example pair's true change (zoo/examples/README.md): displacement+rotation, angle +20°.
    assert result["label"] == "displacement+rotation"
    assert 15 < result["params"]["angle"] < 25
    assert set(result["changes"]) == {"displacement", "rotation", "scaling"}
    text = run("predict", "changer", *map(str, PAIR), "--top", "2")
    assert text.returncode == 0
    assert text.stdout.startswith("displacement+rotation") and "params:" in text.stdout
    assert "refined by aligning the views" in text.stdout


@changer_only
def test_no_refine_gives_the_networks_estimate(capsys):
    """By default the changer's params are refined (`refined`, `alignment_score`); --no-refine prints the
    network's output alone, exactly as predict(refine=False) gives it."""
    model = zoo.load("changer", device="cpu")
    assert zoo.cli.main(["predict", "changer", *map(str, PAIR), "--json", "--device", "cpu"]) == 0
    refined = json.loads(capsys.readouterr().out)
    assert refined["refined"] is True and refined["alignment_score"] > 0.99
    assert abs(refined["params"]["angle"] - 20) < 0.1  # the example pair's true change: +20°
    assert zoo.cli.main(["predict", "changer", *map(str, PAIR), "--json", "--device", "cpu", "--no-refine"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "refined" not in plain and "alignment_score" not in plain
    assert {k: v for k, v in plain.items() if k not in ("model", "device", "runtime")} \
        == json.loads(json.dumps(model.predict(*PAIR, refine=False).to_dict()))


@changer_only
def test_changer_needs_two_images():
    out = run("predict", "changer", str(PAIR[0]))
    assert out.returncode == 1
    assert "takes 2 image(s)" in out.stderr and "Traceback" not in out.stderr
