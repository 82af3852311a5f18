"""The performance goals, and the ratios between engines they are checked on."""
from __future__ import annotations

from typing import Any

from zoo.engines import bf16_loss_allowed

#: zoo's onnxruntime session against the faster eager PyTorch form: at least 3x at batch 1, 1x at batch 64.
MIN_SPEEDUP_B1, MIN_SPEEDUP_B64 = 3.0, 1.0
#: zoo's onnxruntime session against OpenVINO at the same precision (f32; int8 models in int8), batch 1 and 64.
MIN_VS_OPENVINO = 0.9
#: `runtime="auto"`'s `predict_batch` of 64 arrays against OpenVINO's default precision running them raw.
MIN_AUTO_VS_OPENVINO_DEFAULT = 0.9
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
    the faster eager PyTorch form at each batch size (deformable: torchvision's kernel or the sampled form),
    and `runtime="auto"` against OpenVINO's default precision with whether auto's choice keeps accuracy."""
    out: dict[str, Any] = {}
    for engine in COMPARED_ENGINES:
        if f"{engine}_ms_b1" in row:
            out[f"speedup_b1_vs_{engine}"] = row[f"{engine}_ms_b1"] / row["ort_ms_b1"]
            out[f"speedup_b64_vs_{engine}"] = row["ort_ips_b64"] / row[f"{engine}_ips_b64"]
    out["e2e_share"] = row["e2e_ips_b64"] / row["ort_ips_b64"]
    eager = [engine for engine in COMPARED_ENGINES[:2] if f"{engine}_ms_b1" in row]
    out["eager_best_b1"] = min(eager, key=lambda engine: row[f"{engine}_ms_b1"])
    out["eager_best_b64"] = max(eager, key=lambda engine: row[f"{engine}_ips_b64"])
    if "openvino_default_ips_b64" in row:
        out["auto_vs_openvino_default"] = row["auto_ips_b64"] / row["openvino_default_ips_b64"]
    if "auto_runtime" in row:
        out["auto_keeps_accuracy"] = keeps_accuracy(row["auto_runtime"], row.get("auto_precision"),
                                                    row.get("bf16_accuracy_loss"))
    return out


def keeps_accuracy(runtime: str, precision: str | None, bf16_loss: float | None) -> bool:
    """Whether the runtime `auto` chose keeps test accuracy within 0.1 point of onnxruntime's: onnxruntime
    itself, OpenVINO in f32, or OpenVINO in bf16 where the card records at most that loss."""
    if runtime == "onnxruntime" or precision == "f32":
        return True
    return precision == "bf16" and bf16_loss_allowed(bf16_loss)


def goals(row: dict[str, Any]) -> dict[str, bool | None]:
    """Each performance goal met or not (None: OpenVINO could not run the model, or was not measured), on a row
    that holds its `ratios`."""
    openvino = "speedup_b1_vs_openvino" in row
    auto = "auto_vs_openvino_default" in row
    return {
        "ort_vs_openvino": (min(row["speedup_b1_vs_openvino"], row["speedup_b64_vs_openvino"])
                            >= MIN_VS_OPENVINO) if openvino else None,
        "auto_vs_openvino_default": (row["auto_vs_openvino_default"] >= MIN_AUTO_VS_OPENVINO_DEFAULT
                                     and row["auto_keeps_accuracy"]) if auto else None,
        "torch_eager": (row[f"speedup_b1_vs_{row['eager_best_b1']}"] >= MIN_SPEEDUP_B1
                        and row[f"speedup_b64_vs_{row['eager_best_b64']}"] >= MIN_SPEEDUP_B64),
        "e2e_within_25pct": row["e2e_share"] >= MIN_END_TO_END_SHARE,
        "cold_start": row["cold_first_prediction_s"] <= COLD_START_LIMIT_S.get(row["arch"], SMALL_MODEL_COLD_START_S),
    }


def missed(row: dict[str, Any]) -> list[str]:
    """The goals `row` misses (a goal that could not be checked is not missed)."""
    return [goal for goal, met in row["goals"].items() if met is False]


def data_share_goal_met(row: dict[str, Any]) -> bool:
    """Whether a training step spends at most `MAX_DATA_SHARE` of its time getting its batch."""
    return row["data_share"] <= MAX_DATA_SHARE
