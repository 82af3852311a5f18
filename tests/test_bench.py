"""`python -m bench`: one small run checked for completeness and for engines that agree."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from bench.__main__ import main
from bench.engines import PREOPTIMIZED, SESSION_VARIANTS, EngineUnavailable
from bench.tables import inference_table
from bench.torch_engines import compiled_runner, torch_module
from conftest import CIFAR

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
    assert set(row["goals"]) == {"b1_3x_torch", "b64_2x_torch", "openvino_within_10pct", "e2e_within_25pct",
                                 "cold_start"}
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
