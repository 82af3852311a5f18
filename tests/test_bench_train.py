"""`python -m bench.train`: a couple of real cnn training steps, timed and split into data and compute."""
from __future__ import annotations

import json

import pytest

import zoo
from bench import train as bench_train


def test_cnn_steps_are_timed_and_split(tmp_path, cifar_root):
    if "cnn" not in zoo.list():
        pytest.skip("cnn is not installed (its card gives the FLOP count)")
    out = tmp_path / "train.json"
    bench_train.main(["cnn", "--steps", "2", "--warmup", "1", "--data", str(cifar_root.parent), "--json", str(out)])
    report = json.loads(out.read_text())
    row = report["models"]["cnn"]
    assert row["batch_size"] == 256 and row["steps"] == 2
    assert 0 < row["data_s_per_step"] < row["step_s"] and 0 < row["data_share"] < 1
    assert row["train_ips"] == pytest.approx(256 / row["step_s"])
    assert row["train_gflops"] == pytest.approx(3 * row["gflop_per_input"] * row["train_ips"])
    assert set(report["matmul_ceiling_gflops"]) == {"fp32", "bf16"}


def test_models_without_a_measured_loop_are_refused():
    with pytest.raises(SystemExit):
        bench_train.main(["carplane-linear"])


def test_without_a_data_folder_the_error_says_what_to_pass(monkeypatch, capsys):
    monkeypatch.delenv("ZOO_DATA", raising=False)
    with pytest.raises(SystemExit):
        bench_train.main(["cnn"])
    assert "pass --data DIR" in capsys.readouterr().err
