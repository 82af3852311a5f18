"""`python -m bench`: one small run checked for completeness and for engines that agree."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo
from bench.__main__ import main, report_tables
from bench.engines import PREOPTIMIZED, SESSION_VARIANTS, EngineUnavailable
from bench.goals import goals, missed, ratios
from bench.tables import goals_table, inference_table
from bench.torch_engines import compiled_runner, torch_module
from conftest import CIFAR

GOALS = {"ort_vs_openvino", "auto_vs_openvino_default", "torch_eager", "e2e_within_25pct", "cold_start"}

NAME = "cnn"
#: Enough calls to exercise every path; the figures themselves come from the full run in the README.
TINY = ["--iterations", "3", "--batches", "1", "--files", "16", "--repeats", "1", "--no-compile"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    if NAME not in zoo.list():
        pytest.skip(f"{NAME} is not installed")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    main([NAME, "--json", str(out), "--data", str(CIFAR.parent), *TINY])
    return json.loads(out.read_text())


def test_every_engine_runs_the_same_weights_and_agrees(report):
    row = report["models"][NAME]
    for key in ("ort_ms_b1", "torch_ms_b1", "ort_ips_b64", "torch_ips_b64", "e2e_ips_b64", "cold_first_prediction_s",
                "gflop_per_image"):
        assert row[key] > 0, key
    assert row["torch_max_abs_diff"] < 1e-4  # eager PyTorch on model.safetensors computes zoo's logits
    if "openvino_error" not in row:
        assert row["openvino_max_abs_diff"] < 1e-4
    assert row["speedup_b1_vs_torch"] == pytest.approx(row["torch_ms_b1"] / row["ort_ms_b1"])
    assert set(row["goals"]) == GOALS
    assert set(row["ort_session_variants"]) == {"zoo", *SESSION_VARIANTS, PREOPTIMIZED}
    assert report["machine"]["matmul_ceiling_gflops"] > 0 and report["machine"]["threads"] >= 1


def test_the_flop_count_is_the_networks(report):
    """cnn: 3x3 convolutions 3->64 at 32x32 and 64->128 at 16x16, plus the classifier; 2 FLOPs per MAC."""
    config = zoo.card(NAME).provenance["architecture"]["config"]
    assert config["widths"] == [64, 128]
    convolutions = 2 * 9 * (3 * 64 * 32 * 32 + 64 * 128 * 16 * 16)
    assert convolutions <= report["models"][NAME]["gflop_per_image"] * 1e9 < 1.1 * convolutions


def test_an_engine_that_fails_is_recorded_not_fatal(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    card = zoo.card(NAME)
    with pytest.raises(EngineUnavailable, match="no C\\+\\+ compiler"):
        compiled_runner(torch_module(card), card)


def test_the_table_marks_engines_that_did_not_run():
    row = {"name": "m", "gflop_per_image": 1.0, "ort_ms_b1": 1.0, "ort_p99_ms_b1": 2.0, "torch_ms_b1": 3.0}
    line = inference_table([row]).splitlines()[2]
    assert line.startswith("| m | 1.000 | 1.00/2.00 | 3.00 | — |")


def test_the_tables_are_printed_again_from_the_json(report, tmp_path, capsys):
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(report))
    main(["--from-json", str(saved)])
    printed = capsys.readouterr().out
    assert f"| {NAME} | {report['models'][NAME]['gflop_per_image']:.3f} |" in printed
    assert "| zoo | " in printed and "zoo_again" in printed  # the session-settings table


def test_auto_is_measured_against_openvinos_default_precision(report):
    row = report["models"][NAME]
    if "openvino_error" in row:
        pytest.skip(row["openvino_error"])
    assert row["openvino_precision"] == "f32"  # the same precision as onnxruntime's
    assert row["auto_runtime"] in ("onnxruntime", "openvino") and row["auto_providers"]
    assert row["auto_ips_b64"] > 0 and row["openvino_default_ips_b64"] > 0
    assert row["auto_vs_openvino_default"] == pytest.approx(row["auto_ips_b64"] / row["openvino_default_ips_b64"])
    assert row["goals"]["auto_vs_openvino_default"] is not None


def synthetic(**changes) -> dict:
    """A measured row (ms at batch 1, images/s at batch 64) with its ratios and goals; every goal met."""
    row = {"name": "m", "arch": "cnn", "ort_ms_b1": 1.0, "ort_ips_b64": 1000.0, "torch_ms_b1": 3.0,
           "torch_ips_b64": 1000.0, "openvino_ms_b1": 0.9, "openvino_ips_b64": 1111.0, "e2e_ips_b64": 750.0,
           "cold_first_prediction_s": 0.3, "auto_runtime": "onnxruntime", "auto_precision": None,
           "bf16_accuracy_loss": None, "auto_ips_b64": 900.0, "openvino_default_ips_b64": 1000.0, **changes}
    row.update(ratios(row))
    row["goals"] = goals(row)
    return row


def test_every_goal_is_met_at_its_bounds():
    row = synthetic()
    assert row["goals"] == dict.fromkeys(GOALS, True) and missed(row) == []
    assert row["speedup_b1_vs_openvino"] == pytest.approx(0.9)


@pytest.mark.parametrize("changes, goal", [
    ({"openvino_ms_b1": 0.89}, "ort_vs_openvino"),  # batch 1 below 0.9x OpenVINO
    ({"openvino_ips_b64": 1120.0}, "ort_vs_openvino"),  # batch 64 below 0.9x
    ({"auto_ips_b64": 890.0}, "auto_vs_openvino_default"),
    ({"torch_ms_b1": 2.9}, "torch_eager"),  # under 3x at batch 1
    ({"torch_ips_b64": 1001.0}, "torch_eager"),  # under 1x at batch 64
    ({"e2e_ips_b64": 740.0}, "e2e_within_25pct"),
    ({"cold_first_prediction_s": 0.31}, "cold_start"),
])
def test_each_goal_is_missed_just_past_its_bound(changes, goal):
    assert missed(synthetic(**changes)) == [goal]


@pytest.mark.parametrize("runtime, precision, loss, kept", [
    ("onnxruntime", None, None, True),
    ("openvino", "f32", None, True),
    ("openvino", "bf16", 0.001, True),  # exactly 0.1 point
    ("openvino", "bf16", -0.0002, True),  # bf16 measured more accurate
    ("openvino", "bf16", 0.0011, False),
    ("openvino", "bf16", None, False),  # bf16 with no accuracy on the card
])
def test_autos_choice_must_keep_accuracy_however_fast(runtime, precision, loss, kept):
    row = synthetic(auto_runtime=runtime, auto_precision=precision, bf16_accuracy_loss=loss, auto_ips_b64=2000.0)
    assert row["auto_keeps_accuracy"] is kept
    assert row["goals"]["auto_vs_openvino_default"] is kept


def test_goals_openvino_cannot_check_are_none_not_missed():
    row = {key: value for key, value in synthetic().items()
           if not key.startswith(("openvino", "speedup", "auto_vs", "goals"))}
    row.update(ratios(row))
    row["goals"] = goals(row)
    assert row["goals"]["ort_vs_openvino"] is None and row["goals"]["auto_vs_openvino_default"] is None
    assert missed(row) == []


def test_the_faster_eager_form_is_the_one_compared():
    """deformable-cnn: torchvision's kernel at batch 1, the sampled form at batch 64 here."""
    row = synthetic(torch_ms_b1=3.0, torch_ips_b64=300.0, torch_sampled_ms_b1=4.0, torch_sampled_ips_b64=1001.0)
    assert (row["eager_best_b1"], row["eager_best_b64"]) == ("torch", "torch_sampled")
    assert missed(row) == ["torch_eager"]


def test_the_goals_table_names_autos_runtime_and_the_missed_goals():
    rows = [synthetic(), synthetic(name="n", auto_runtime="openvino", auto_precision="bf16", bf16_accuracy_loss=0.002,
                                   auto_ips_b64=1200.0, torch_ms_b1=2.0)]
    lines = goals_table(rows).splitlines()
    assert lines[2] == "| m | 0.90x | 0.90x | 0.90x (onnxruntime) | 3.0x | 1.0x | none |"
    assert lines[3] == ("| n | 0.90x | 0.90x | 1.20x (OpenVINO bf16) | 2.0x | 1.0x | "
                        "auto_vs_openvino_default, torch_eager |")


def test_the_performance_doc_shows_the_saved_runs_tables():
    root = Path(__file__).resolve().parents[1]
    rows = list(json.loads((root / "docs" / "bench-cpu.json").read_text())["models"].values())
    doc = (root / "docs" / "performance.md").read_text()
    for table in report_tables(rows).split("\n\n"):
        assert table in doc, "docs/performance.md differs from `python -m bench --from-json docs/bench-cpu.json`"
