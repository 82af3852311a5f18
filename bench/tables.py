"""Markdown tables of the measurements."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from .goals import missed

#: The inference table's columns: title, the row's key (or keys) and the format of its cell.
COLUMNS = (("model", "name", "{}"), ("GFLOP/img", "gflop_per_image", "{:.3f}"),
           ("ort b1 ms p50/p99", ("ort_ms_b1", "ort_p99_ms_b1"), "{:.2f}/{:.2f}"),
           ("torch b1 ms", "torch_ms_b1", "{:.2f}"), ("compile b1 ms", "compile_ms_b1", "{:.2f}"),
           ("OpenVINO b1 ms", "openvino_ms_b1", "{:.2f}"),
           ("ort b64 img/s", "ort_ips_b64", "{:.0f}"), ("torch b64 img/s", "torch_ips_b64", "{:.0f}"),
           ("compile b64 img/s", "compile_ips_b64", "{:.0f}"), ("OpenVINO b64 img/s", "openvino_ips_b64", "{:.0f}"),
           ("vs torch b1/b64", ("speedup_b1_vs_torch", "speedup_b64_vs_torch"), "{:.1f}x/{:.1f}x"),
           ("vs OpenVINO b1/b64", ("speedup_b1_vs_openvino", "speedup_b64_vs_openvino"), "{:.2f}x/{:.2f}x"),
           ("files img/s (share)", ("e2e_ips_b64", "e2e_share"), "{:.0f} ({:.0%})"),
           ("cold load+1st s", "cold_first_prediction_s", "{:.2f}"),
           ("ort GFLOP/s (of ceiling)", ("ort_gflops", "ort_ceiling_share"), "{:.1f} ({:.0%})"),
           ("trained img/s (GFLOP/s)", ("train_ips", "train_gflops"), "{:.0f} ({:.0f})"))


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of `header` and the cells of `rows`."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in rows])


def inference_table(rows: list[dict[str, Any]]) -> str:
    """The inference measurements of each model (`python -m bench`); "—" where an engine did not run."""
    def cell(row: dict[str, Any], keys: str | tuple[str, ...], fmt: str) -> str:
        keys = (keys,) if isinstance(keys, str) else keys
        return fmt.format(*(row[k] for k in keys)) if all(k in row for k in keys) else "—"

    return markdown([title for title, _, _ in COLUMNS], ([cell(row, keys, fmt) for _, keys, fmt in COLUMNS]
                                                         for row in rows))


def goals_table(rows: list[dict[str, Any]]) -> str:
    """Each model's ratios behind the goals (`bench.goals`) and the goals it misses: zoo's onnxruntime session
    against OpenVINO at the same precision, `runtime="auto"` end to end against OpenVINO's default precision
    (with the runtime and precision auto chose), zoo's session against the faster eager PyTorch form."""
    def ratio(row: dict[str, Any], key: str, fmt: str = "{:.2f}x") -> str:
        return fmt.format(row[key]) if key in row else "—"

    def auto(row: dict[str, Any]) -> str:
        if "auto_runtime" not in row:
            return "—"
        chosen = "onnxruntime" if row["auto_runtime"] == "onnxruntime" else f"OpenVINO {row['auto_precision']}"
        return f"{ratio(row, 'auto_vs_openvino_default')} ({chosen})"

    def eager(row: dict[str, Any], size: str) -> str:
        best = row[f"eager_best_{size}"]
        return ratio(row, f"speedup_{size}_vs_{best}", "{:.1f}x") + (" (sampled)" if best == "torch_sampled" else "")

    return markdown(["model", "ort/OV b1", "ort/OV b64", "auto/OV default e2e (auto's runtime)", "torch eager b1",
                     "torch eager b64", "missed goals"],
                    ([row["name"], ratio(row, "speedup_b1_vs_openvino"), ratio(row, "speedup_b64_vs_openvino"),
                      auto(row), eager(row, "b1"), eager(row, "b64"), ", ".join(missed(row)) or "none"]
                     for row in rows))


def variants_table(rows: list[dict[str, Any]]) -> str:
    """zoo's onnxruntime settings against each alternative: batch-1 p50 / p99 ms and batch-64 images/s."""
    swept = [row for row in rows if "ort_session_variants" in row]
    variants = list(swept[0]["ort_session_variants"]) if swept else []
    return markdown(["model", *variants], ([row["name"], *(f"{c['ms_b1']:.2f} / {c['p99_ms_b1']:.2f} ms, "
                                                           f"{c['ips_b64']:.0f}/s"
                                                           for c in map(row["ort_session_variants"].get, variants))]
                                          for row in swept))


def training_table(rows: dict[str, dict[str, Any]]) -> str:
    """Training speed of each model (`python -m bench.train`) against the matmul ceilings."""
    return markdown(["model", "batch", "step s", "train img/s", "GFLOP/s (of fp32 / bf16 ceiling)",
                     "data share of step"],
                    ([name, str(row["batch_size"]), f"{row['step_s']:.3f}", f"{row['train_ips']:.0f}",
                      f"{row['train_gflops']:.0f} ({row['ceiling_share']['fp32']:.0%} / "
                      f"{row['ceiling_share']['bf16']:.0%})", f"{row['data_share']:.1%}"]
                     for name, row in rows.items()))


def runtimes_table(reports: dict[str, dict[str, Any]], runtimes: Sequence[str]) -> str:
    """Each model's self-contained ONNX file in each runtime (`python -m bench.runtimes`): the largest
    probability difference from the shipped test vectors, and the int8 variants' test accuracy."""
    def cell(result: dict[str, Any]) -> str:
        text = f"{result['max_abs_probability_diff']:.1e}" + ("" if result["same_top_class"] else " (top class differs)")
        return text + (f"; test {result['test_accuracy']:.2%}" if "test_accuracy" in result else "")

    return markdown(["model", "file", *runtimes], ([f"`{name}`", f"`{report['file']}`",
                                                    *(cell(report[runtime]) for runtime in runtimes)]
                                                   for name, report in reports.items()))


def decode_table(report: dict[str, Any]) -> str:
    """Each model's stages alone against `predict` and `predict_batch` on each set of files (`python -m bench.scale`):
    per-item decoding on one thread and on every core, inference per item at batch 64, `predict_batch` against
    the bound those stages set, and `predict` against its stages' sum with the allowed margin."""
    def cells(name: str, row: dict[str, Any], set_name: str, s: dict[str, Any]) -> list[str]:
        missed = {key: "" if s[key] else " (missed)" for key in ("predict_batch_goal_met", "predict_goal_met")}
        return [name, set_name, f"{s['decode_s_one_thread'] * 1e3:.2f}",
                f"{s['decode_s_all_cores_threads'] * 1e3:.2f} / {s['decode_s_all_cores_processes'] * 1e3:.2f}",
                f"{row['inference_s_b64'] * 1e3:.3f}", f"{s['predict_batch_ips']:.0f}",
                f"{s['share_of_bound_processes']:.0%} / {s['share_of_bound_threads']:.0%}"
                + missed["predict_batch_goal_met"],
                f"{s['predict_s'] * 1e3:.2f} vs {s['predict_budget_s'] * 1e3:.2f}" + missed["predict_goal_met"]]

    return markdown(["model", "set", "decode 1 thread ms", "decode all cores ms (threads / processes)",
                     "inference ms/img b64", "predict_batch img/s", "share of bound (processes / threads)",
                     "predict ms vs budget"],
                    (cells(name, row, set_name, figures) for name, row in report["models"].items()
                     for set_name, figures in row["sets"].items()))


def serving_table(report: dict[str, Any]) -> str:
    """`zoo serve` under concurrent clients (`python -m bench.scale`), beside `predict_batch` on the same files."""
    serving = report["serving"]
    if "skipped" in serving:
        return f"zoo serve: skipped ({serving['skipped']})"

    def ms(value: float | None, scale: float = 1.0) -> str:
        return "—" if value is None else f"{value * scale:.1f}"

    return markdown(["model", "set", "img/request", "body", "clients", "img/s", "p50 ms", "p99 ms",
                     "share of predict_batch", "CPU ms/img server / clients", "failed"],
                    ([run["model"], run["set"], str(run["per_request"]), run.get("body", "form"), str(run["clients"]),
                      f"{run['ips']:.1f}",
                      ms(run["p50_ms"]),
                      ms(run["p99_ms"]), f"{run['share_of_predict_batch']:.0%}"
                      + (f" (goal {run['goal']:.0%}{', missed' * (not run['goal_met'])})" if "goal" in run
                         else " (missed)" if run.get("goal_met") is False else ""),
                      f"{ms(run['server_cpu_s_per_item'], 1e3)} / {ms(run['client_cpu_s_per_item'], 1e3)}",
                      str(run["failed"])]
                     for run in serving["runs"]))


def ray_table(report: dict[str, Any]) -> str:
    """Ray Data pipelines (`python -m bench.scale`), beside `predict_batch` on the same files."""
    ray = report["ray"]
    if "runs" not in ray:
        return f"Ray Data: {ray.get('skipped') or ray['unavailable']}"
    table = markdown(["model", "set", "workers", "rows (errors)", "img/s", "share of predict_batch",
                      "predict_batch img/s", "s", "s for 64 rows (start-up)"],
                     ([run["model"], run["set"], str(run["workers"]), f"{run['rows']} ({run['errors']})",
                       f"{run['ips']:.0f}", f"{run['share_of_predict_batch']:.0%}", f"{run['predict_batch_ips']:.0f}",
                       f"{run['seconds']:.1f}", f"{run['startup_s']:.1f}"]
                      for run in ray["runs"]))
    return table + "".join(f"\n\n{name}: not run ({reason})" for name, reason in ray["skipped"].items())
