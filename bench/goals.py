"""The performance goals, and the ratios between engines they are checked on."""
from __future__ import annotations

from typing import Any

#: zoo's session against the faster eager PyTorch form: at least 3x at batch 1 and 2x at batch 64.
MIN_SPEEDUP_B1, MIN_SPEEDUP_B64 = 3.0, 2.0
#: zoo's session at most 10% behind OpenVINO at either batch size.
MAX_BEHIND_OPENVINO = 0.10
#: `predict_batch` from JPEG files at least 75% as fast as inference alone.
MIN_END_TO_END_SHARE = 0.75
#: Cold-start limits in seconds: 2 s for a ResNet-50 (by architecture), 0.3 s for the small models.
COLD_START_LIMIT_S = {"resnet50": 2.0}
SMALL_MODEL_COLD_START_S = 0.3
#: The largest share of a training step spent getting its batch.
MAX_DATA_SHARE = 0.10
#: The engines zoo's session is compared with; the first two are the eager PyTorch forms.
COMPARED_ENGINES = ("torch", "torch_sampled", "compile", "openvino")


def ratios(row: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups of zoo's session over each engine measured in `row`, the end-to-end share of inference speed,
    and the faster eager PyTorch form at each batch size (deformable: torchvision's kernel or the sampled form)."""
    out: dict[str, Any] = {}
    for engine in COMPARED_ENGINES:
        if f"{engine}_ms_b1" in row:
            out[f"speedup_b1_vs_{engine}"] = row[f"{engine}_ms_b1"] / row["ort_ms_b1"]
            out[f"speedup_b64_vs_{engine}"] = row["ort_ips_b64"] / row[f"{engine}_ips_b64"]
    out["e2e_share"] = row["e2e_ips_b64"] / row["ort_ips_b64"]
    eager = [engine for engine in COMPARED_ENGINES[:2] if f"{engine}_ms_b1" in row]
    out["eager_best_b1"] = min(eager, key=lambda engine: row[f"{engine}_ms_b1"])
    out["eager_best_b64"] = max(eager, key=lambda engine: row[f"{engine}_ips_b64"])
    return out


def goals(row: dict[str, Any]) -> dict[str, bool | None]:
    """Each performance goal met or not (None: OpenVINO not measured), on a row that holds its `ratios`."""
    openvino = "speedup_b1_vs_openvino" in row
    return {
        "b1_3x_torch": row[f"speedup_b1_vs_{row['eager_best_b1']}"] >= MIN_SPEEDUP_B1,
        "b64_2x_torch": row[f"speedup_b64_vs_{row['eager_best_b64']}"] >= MIN_SPEEDUP_B64,
        "openvino_within_10pct": (min(row["speedup_b1_vs_openvino"], row["speedup_b64_vs_openvino"])
                                  >= 1 - MAX_BEHIND_OPENVINO) if openvino else None,
        "e2e_within_25pct": row["e2e_share"] >= MIN_END_TO_END_SHARE,
        "cold_start": row["cold_first_prediction_s"] <= COLD_START_LIMIT_S.get(row["arch"], SMALL_MODEL_COLD_START_S),
    }


def data_share_goal_met(row: dict[str, Any]) -> bool:
    """Whether a training step spends at most `MAX_DATA_SHARE` of its time getting its batch."""
    return row["data_share"] <= MAX_DATA_SHARE
