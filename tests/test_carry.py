"""scripts/device/carry_runs.py: run folders cut into parts and rebuilt, weights rounded to fp16 only."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from training.checkpoint import load_tensors, read_metadata, save_checkpoint
from training.nets import build

CARRY = Path(__file__).resolve().parents[1] / "scripts" / "device" / "carry_runs.py"


def carry(*args: str | Path) -> str:
    return subprocess.run([sys.executable, str(CARRY), *map(str, args)], check=True, capture_output=True,
                          text=True).stdout


def test_runs_survive_the_carry_with_fp16_weights_and_shared_tensors_by_reference(tmp_path):
    runs, stage, back = tmp_path / "runs", tmp_path / "stage", tmp_path / "back"
    torch.manual_seed(0)
    backbone = build("small-cnn", {"widths": [8, 16], "num_classes": 3})
    variant = build("small-cnn", {"widths": [8, 16], "num_classes": 3})
    variant.load_state_dict(backbone.state_dict())
    with torch.no_grad():
        variant.classifier.weight.add_(1.0)  # only the head differs, as in the linear car/plane variant
    meta = {"name": "x", "training": {"device": "cuda"}, "metrics": {"test_accuracy": 0.5}}
    for name, model in (("backbone", backbone), ("variant", variant)):
        (runs / name).mkdir(parents=True)
        save_checkpoint(runs / name / "model.safetensors", model, meta)
        (runs / name / "metrics.json").write_text(json.dumps({"name": name}))
    assert "0 tensors by reference" in carry("pack", runs, "backbone", stage)
    packed = carry("pack", runs, "variant", stage, "backbone")
    variant_parts = sorted(stage.glob("variant.part.*"))
    assert sum(p.stat().st_size for p in variant_parts) == variant.classifier.weight.numel() * 2  # fp16
    assert f"{len(variant.state_dict()) - 1} tensors by reference" in packed  # all but the changed weight
    carry("unpack", stage, back)
    for name, model in (("backbone", backbone), ("variant", variant)):
        rebuilt = load_tensors(back / name / "model.safetensors")
        original = model.state_dict()
        assert rebuilt.keys() == original.keys()
        for key, value in original.items():
            if value.is_floating_point() and value.ndim >= 2:  # conv and linear weights: fp16
                assert rebuilt[key].dtype == torch.float16
                torch.testing.assert_close(rebuilt[key].float(), value, rtol=1e-3, atol=1e-4)
            else:
                assert torch.equal(rebuilt[key], value)
        carried = read_metadata(back / name / "model.safetensors")
        assert carried["metrics"] == meta["metrics"] and "float16" in carried["training"]["weights_transfer"]
        assert json.loads((back / name / "metrics.json").read_text()) == {"name": name}
