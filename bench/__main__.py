"""python -m bench [NAME ...] [--data DIR] [--json FILE]: every shipped model on zoo's onnxruntime session
against PyTorch eager on the same weights, torch.compile and OpenVINO on the same model.onnx, in one run.

Per model: batch-1 latency (p50, p99) and batch-64 throughput per engine, the ratios, `runtime="auto"`'s
`predict_batch` against OpenVINO's default precision, end-to-end `predict_batch` from JPEG files beside
inference alone, a cold process's `zoo.load` + first prediction, the GFLOP/s achieved against this
machine's fp32 matmul ceiling (measured in the same run), and the goals (`bench.goals`) each model misses.
Engines that do not install or cannot run a model are recorded with the reason, never fatal.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import zoo

from .data import CIFAR_TEST_SPLIT, add_data_option, data_folder
from .tables import goals_table, inference_table, variants_table


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m bench`."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to measure (default: every model in zoo.list())")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for every engine: onnxruntime intra-op = torch.set_num_threads = OpenVINO")
    parser.add_argument("--iterations", type=int, default=200, help="timed batch-1 calls per engine (default 200)")
    parser.add_argument("--batches", type=int, default=5, help="timed batch-64 calls per engine (default 5)")
    parser.add_argument("--files", type=int, default=256, help="JPEG files (pairs) per end-to-end pass (default 256)")
    parser.add_argument("--repeats", type=int, default=2, help="end-to-end passes over the files (default 2)")
    add_data_option(parser)
    parser.add_argument("--images", type=Path,
                        help=f"folder of JPEGs for the end-to-end run (default: DATA/{CIFAR_TEST_SPLIT.as_posix()}; "
                             "synthetic JPEGs when it holds too few)")
    parser.add_argument("--torch-device", default="cpu",
                        help="where PyTorch runs (cuda: scripts/gpu_check.sh); zoo's session runs on the CPU here")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (slow to compile)")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false", help="skip OpenVINO")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="skip timing zoo's onnxruntime settings against each alternative")
    parser.add_argument("--sweep-rounds", type=int, default=3,
                        help="times each session setting is timed, interleaved with the others (default 3)")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON; measure nothing")
    return parser


def report_tables(rows: list[dict[str, Any]]) -> str:
    """The inference table, the goals table and (where measured) the session-settings table of a run."""
    swept = any("ort_session_variants" in row for row in rows)
    return "\n\n".join([inference_table(rows), goals_table(rows), *([variants_table(rows)] if swept else [])])


def main(argv: list[str] | None = None) -> None:
    """Measure the models named on the command line (or print an earlier run's tables) and report."""
    command_line = parser()
    args = command_line.parse_args(argv)
    if args.from_json:
        rows = list(json.loads(args.from_json.read_text())["models"].values())
        print(report_tables(rows))
        return
    from .measure import machine, measure_model  # torch loads only when something is measured
    from .torch_engines import matmul_ceiling

    names = args.names or zoo.list()
    unknown = sorted(set(names) - set(zoo.list()))
    if unknown:
        command_line.error(f"unknown model(s) {unknown}; available: {zoo.list()}")
    args.images = args.images or data_folder(command_line, args) / CIFAR_TEST_SPLIT
    ceiling = matmul_ceiling(args.threads)
    print(f"fp32 matmul ceiling: {ceiling:.1f} GFLOP/s on {args.threads} threads", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as scratch:
        rows = [measure_model(name, args, ceiling, Path(scratch)) for name in names]
    report = {"machine": machine(args.threads, ceiling),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
              "models": {row["name"]: row for row in rows}}
    print(report_tables(rows))
    print(f"\nfp32 matmul ceiling {ceiling:.1f} GFLOP/s ({args.threads} threads)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
