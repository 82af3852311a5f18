"""`python -m bench.scale`'s pure parts: the Caltech test bucket, the 12-megapixel set, the goals and the tables."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from bench.data import CALTECH_SUBSET, caltech_test_bucket, spread, twelve_megapixel_set
from bench.data import items_for
from bench.decoding import scaling_goals
from bench.scale import main
from bench.tables import decode_table, ray_table, serving_table
from conftest import CIFAR
from training.data import hash_bucket

DATA = CIFAR.parent
CALTECH = DATA / CALTECH_SUBSET
needs_caltech = pytest.mark.skipif(not CALTECH.is_dir(), reason=f"the Caltech-101 subset is not at {CALTECH}")


def test_bucket_is_a_hash_of_the_relative_path(tmp_path):
    photo = tmp_path / "accordion" / "image_0001.jpg"
    expected = int(hashlib.sha256(b"accordion/image_0001.jpg").hexdigest()[:8], 16) % 100
    assert hash_bucket(photo, tmp_path) == expected
    assert hash_bucket(Path("/elsewhere") / "accordion" / "image_0001.jpg", Path("/elsewhere")) == expected


@needs_caltech
def test_test_bucket_is_fixed_sorted_and_held_out():
    photos = caltech_test_bucket(CALTECH, 40)
    assert len(photos) == 40 and photos == sorted(photos)
    assert photos == caltech_test_bucket(CALTECH, 60)[:40]
    assert all(hash_bucket(path, CALTECH) >= 85 for path in photos)


def test_spread_takes_even_steps():
    files = [Path(f"{k}.jpg") for k in range(10)]
    assert spread(files, 5) == files[::2]
    assert spread(files, 20) == files


@needs_caltech
def test_twelve_megapixel_set_is_made_once_from_real_photos(tmp_path):
    made = twelve_megapixel_set(DATA, tmp_path, 2)
    assert len(made) == 2
    for path in made:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (4000, 3000), "RGB")
    written = [path.stat().st_mtime_ns for path in made]
    assert twelve_megapixel_set(DATA, tmp_path, 2) == made
    assert [path.stat().st_mtime_ns for path in made] == written


def test_pairs_are_each_file_with_the_next():
    class Card:
        inputs = ("a", "b")

    assert items_for(Card(), [Path("x"), Path("y"), Path("z")]) == [("x", "y"), ("y", "z"), ("z", "x")]


FIGURES = {"decode_s_one_thread": 0.010, "decode_s_all_cores_threads": 0.006, "decode_s_all_cores_processes": 0.005,
           "predict_s": 0.014, "predict_batch_ips": 190.0}


def test_goals():
    goals = scaling_goals(FIGURES, inference_s_b1=0.001, inference_s_b64=0.0002)
    assert goals["predict_budget_s"] == pytest.approx(1.3 * 0.011)
    assert goals["predict_ratio"] == pytest.approx(0.014 / 0.011) and goals["predict_goal_met"]
    assert goals["bound_ips_processes"] == pytest.approx(1 / 0.0052)
    assert goals["share_of_bound_processes"] == pytest.approx(190 * 0.0052)
    assert goals["share_of_bound_threads"] == pytest.approx(190 * 0.0062)
    assert goals["predict_batch_goal_met"]  # 98.8% of the processes bound
    missed = scaling_goals({**FIGURES, "predict_s": 0.02, "predict_batch_ips": 150.0}, 0.001, 0.0002)
    assert not missed["predict_goal_met"] and not missed["predict_batch_goal_met"]


REPORT = {
    "models": {"cnn": {"inference_s_b64": 0.0002, "inference_s_b1": 0.001,
                       "sets": {"12mp": {**FIGURES, **scaling_goals(FIGURES, 0.001, 0.0002)}}}},
    "serving": {"runs": [{"model": "cnn", "set": "12mp", "per_request": 1, "clients": 32, "ips": 120.0, "p50_ms": 250.0,
                          "p99_ms": 400.0, "failed": 0, "share_of_predict_batch": 120 / 190, "goal_met": True,
                          "goal": 0.5, "server_cpu_s_per_item": 0.012, "client_cpu_s_per_item": 0.0031},
                         {"model": "carplane-joint", "set": "cifar", "per_request": 1, "body": "raw", "clients": 32,
                          "ips": 150.0, "p50_ms": 200.0, "p99_ms": 300.0, "failed": 0, "share_of_predict_batch": 0.5,
                          "goal_met": False, "goal": 0.7, "server_cpu_s_per_item": 0.01,
                          "client_cpu_s_per_item": 0.001}]},
    "ray": {"unavailable": "cannot import ray"},
}


def test_tables_render_a_report():
    assert "| cnn | 12mp | 10.00 | 6.00 / 5.00 | 0.200 | 190 | 99% / 118% | 14.00 vs 14.30 |" in decode_table(REPORT)
    table = serving_table(REPORT)
    assert "| cnn | 12mp | 1 | form | 32 | 120.0 | 250.0 | 400.0 | 63% (goal 50%) | 12.0 / 3.1 | 0 |" in table
    assert "| carplane-joint | cifar | 1 | raw | 32 | 150.0 | 200.0 | 300.0 | 50% (goal 70%, missed) | 10.0 / 1.0 | 0 |" in table
    assert ray_table(REPORT) == "Ray Data: cannot import ray"
    assert serving_table({"serving": {"skipped": "--no-serve"}}) == "zoo serve: skipped (--no-serve)"


def test_from_json_prints_the_tables(tmp_path, capsys):
    saved = tmp_path / "scale.json"
    saved.write_text(json.dumps(REPORT))
    main(["--from-json", str(saved)])
    assert "| cnn | 12mp | 1 | form | 32 |" in capsys.readouterr().out
