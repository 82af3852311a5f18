"""python -m bench.scale [NAME ...] [--data DIR] [--json FILE]: how prediction from JPEG files uses this machine's
cores, per model, on two sets of files: CIFAR-10 test JPEGs (32x32) and 12-megapixel JPEGs made from Caltech-101
test photos, where decoding dominates.

Each stage alone: decoding and resizing (one thread; every core as threads; every core as processes) and
inference (batch 1 and 64). Then `predict` against the sum of its stages, and `predict_batch` against the bound
the stages set: 1 / (decode per item on every core + inference per item). Then `zoo serve` under 1, 8 and 32
concurrent clients, and Ray Data with 1 and 2 workers, each beside `predict_batch` on the same files.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import PIL

import zoo
from zoo.model import DECODE_THREADS
from zoo.timing import cpu_name

from .data import CIFAR_TEST_SPLIT, add_data_option, data_folder, spread, twelve_megapixel_set
from .decoding import MIN_BOUND_SHARE, PREDICT_BUDGET, measure_model
from .ray_data import RAY_MODELS, ray_runs
from .serving_load import (BODIES, CLIENTS, MIN_SERVING_SHARE, MIN_SERVING_SHARE_LIGHT, PER_REQUEST, SERVE_MODELS,
                           serving)
from .tables import decode_table, ray_table, serving_table


#: Where each set of files comes from.
SET_SOURCES = {"cifar": f"DATA/{CIFAR_TEST_SPLIT.as_posix()}, spread over the classes; pairs: each file and the next",
               "12mp": "DATA/caltech101-subset test bucket, upscaled to 4000x3000 (bilinear), JPEG quality 90"}


def machine() -> dict[str, Any]:
    """This machine and the versions measured on it."""
    versions: dict[str, str | None] = {}
    for package in ("aiohttp", "ray"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "pillow": PIL.__version__, "onnxruntime": ort.__version__, **versions,
            "zoo_decode_threads": DECODE_THREADS, "load_average": os.getloadavg()}


def print_tables(report: dict[str, Any]) -> None:
    """The report's decoding, serving and Ray tables, in Markdown."""
    print(f"{decode_table(report)}\n\n{serving_table(report)}\n\n{ray_table(report)}")


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m bench.scale`."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to measure (default: every model in zoo.list())")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON; measure nothing")
    add_data_option(parser)
    parser.add_argument("--scratch", type=Path,
                        help="folder that keeps the generated 12-megapixel JPEGs between runs "
                             "(default: a temporary one)")
    parser.add_argument("--files", type=int, default=512,
                        help="CIFAR-10 test JPEGs, spread over the classes (default 512)")
    parser.add_argument("--large-files", type=int, default=64, help="12-megapixel JPEGs (default 64)")
    parser.add_argument("--iterations", type=int, default=20,
                        help="timed batch-64 inference calls (4x as many at batch 1; default 20)")
    parser.add_argument("--passes", type=int, default=3, help="timed predict_batch passes over each set; the best "
                                                              "is compared with the bound (default 3)")
    parser.add_argument("--serve-models", nargs="+", default=SERVE_MODELS,
                        help=f"models served, among those measured (default: {' '.join(SERVE_MODELS)})")
    parser.add_argument("--clients", type=int, nargs="+", default=CLIENTS,
                        help=f"concurrent clients of zoo serve (default: {' '.join(map(str, CLIENTS))})")
    parser.add_argument("--per-request", type=int, nargs="+", default=PER_REQUEST,
                        help=f"images (pairs) per request (default: {' '.join(map(str, PER_REQUEST))})")
    parser.add_argument("--bodies", nargs="+", choices=BODIES, default=BODIES,
                        help="how one-image requests carry the image: multipart form, raw body (default: both)")
    parser.add_argument("--serve-seconds", type=float, default=6.0,
                        help="seconds of requests per model, set and number of clients (default 6)")
    parser.add_argument("--ray-models", nargs="+", default=RAY_MODELS,
                        help=f"models run under Ray Data, among those measured (default: {' '.join(RAY_MODELS)})")
    parser.add_argument("--ray-files", type=int, default=8192,
                        help="CIFAR-10 test JPEGs in the Ray Data runs, whose start-up takes seconds; the 12-megapixel "
                             "set is repeated to an eighth as many (default 8192)")
    parser.add_argument("--no-serve", dest="serve", action="store_false", help="skip zoo serve")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip Ray Data")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Measure the models named on the command line (or print an earlier run's tables) and report."""
    command_line = parser()
    args = command_line.parse_args(argv)
    if args.from_json:
        print_tables(json.loads(args.from_json.read_text()))
        return
    names = args.names or zoo.list()
    unknown = sorted(set(names) - set(zoo.list()))
    if unknown:
        command_line.error(f"unknown model(s) {unknown}; available: {zoo.list()}")
    data = data_folder(command_line, args)
    with contextlib.ExitStack() as stack:
        scratch = args.scratch or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zoo-scale-")))
        print(f"{args.large_files} 12-megapixel JPEGs in {scratch / '12mp'} (made once)", file=sys.stderr, flush=True)
        cifar_files = sorted((data / CIFAR_TEST_SPLIT).rglob("*.jpg"))
        sets = {"cifar": spread(cifar_files, args.files),
                "12mp": twelve_megapixel_set(data, scratch / "12mp", args.large_files)}
        models = {name: measure_model(name, sets, args) for name in names}
        report = {
            "machine": machine(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
            "sets": {set_name: {"files": len(files), "made_from": SET_SOURCES[set_name]}
                     for set_name, files in sets.items()},
            "notes": {"decode_s_one_thread": "median per item, timed in turn with predict_s on the same items",
                      "decode_s_all_cores_threads": "wall seconds of the set / items, one thread per core",
                      "decode_s_all_cores_processes": "forked processes, the feeds sent back to this one",
                      "predict_batch_ips": "the best of --passes passes (the mean beside it), after a warm-up call",
                      "inference_s": "median per item of predict_prepared on prepared CIFAR feeds"},
            "goals": {"predict_budget": PREDICT_BUDGET, "min_share_of_bound": MIN_BOUND_SHARE,
                      "min_serving_share": MIN_SERVING_SHARE, "min_serving_share_light": MIN_SERVING_SHARE_LIGHT,
                      "serving_clients_for_goal": max(args.clients)},
            "models": models,
            "serving": serving([name for name in args.serve_models if name in names], sets, models, args, scratch)
            if args.serve else {"skipped": "--no-serve"},
            "ray": ray_runs([name for name in args.ray_models if name in names],
                            {"cifar": spread(cifar_files, args.ray_files),
                             "12mp": sets["12mp"] * max(1, args.ray_files // 8 // len(sets["12mp"]))})
            if args.ray else {"skipped": "--no-ray"},
        }
    print_tables(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
