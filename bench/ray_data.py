"""`python -m bench.scale`'s Ray Data part: `read_binary_files` then `map_batches(zoo.ray.Predictor)` on a local
cluster of this machine's cores, beside `predict_batch` on the same files."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import zoo
from zoo.loopback import RAY_LOOPBACK_ENVIRONMENT
from zoo.timing import BATCH

from .decoding import CORES, predict_batch_rate


RAY_MODELS = ("cnn", "carplane-joint")


RAY_WORKERS = (1, 2)


#: Logical CPUs a Ray read task asks for: the rest go to the workers. Workers that asked for every CPU would
#: leave none to schedule the reads on, and the pipeline would wait forever.
RAY_READ_CPUS = 0.5


def ray_pipeline(ray: Any, predictor: type, name: str, files: Sequence[Path], workers: int) -> dict[str, Any]:
    """Seconds from the start of `read_binary_files` + `map_batches(predictor)` on `workers` workers to its
    materialized result, its rows, and the rows with an error."""
    began = time.perf_counter()
    read = ray.data.read_binary_files([str(path) for path in files], num_cpus=RAY_READ_CPUS)
    result = read.map_batches(predictor, fn_constructor_kwargs={"name": name, "device": "cpu",
                                                                "threads": max(1, CORES // workers)},
                              batch_size=BATCH, compute=ray.data.ActorPoolStrategy(size=workers),
                              num_cpus=(CORES - RAY_READ_CPUS) / workers).materialize()
    seconds = time.perf_counter() - began
    errors = sum(int((batch["error"] != "").sum())
                 for batch in result.select_columns(["error"]).iter_batches(batch_format="numpy"))
    return {"rows": result.count(), "errors": errors, "seconds": seconds}


def ray_runs(names: Sequence[str], sets: dict[str, list[Path]]) -> dict[str, Any]:
    """Ray Data on a local cluster of this machine's cores, kept on the loopback: `read_binary_files` then
    `map_batches` with `zoo.ray.Predictor` on 1 and 2 workers, timed from the pipeline's start to its
    materialized result, beside one pass of `predict_batch` on the same files."""
    if not names:
        return {"skipped": "no model of --ray-models among those measured"}
    os.environ.update(RAY_LOOPBACK_ENVIRONMENT)  # read when ray is imported
    try:
        import ray

        from zoo.ray import Predictor
    except ImportError as exc:
        return {"unavailable": f"cannot import {exc.name}: {exc}"}
    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    runs: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    try:
        for name in names:
            if len(zoo.card(name).inputs) != 1:
                skipped[name] = "read_binary_files makes one column of files; this model takes a pair"
                continue
            for set_name, files in sets.items():
                reference = predict_batch_rate(zoo.load(name, device="cpu"), [str(f) for f in files], 1)
                for workers in RAY_WORKERS:
                    print(f"  ray {name}: {set_name}, {workers} workers", file=sys.stderr, flush=True)
                    startup = ray_pipeline(ray, Predictor, name, files[:BATCH], workers)
                    run = {"model": name, "set": set_name, "workers": workers,
                           **ray_pipeline(ray, Predictor, name, files, workers), **reference,
                           "startup_s": startup["seconds"]}
                    run["ips"] = run["rows"] / run["seconds"]
                    run["share_of_predict_batch"] = run["ips"] / reference["predict_batch_ips"]
                    runs.append(run)
    finally:
        ray.shutdown()
    return {"version": ray.__version__, "runs": runs, "skipped": skipped,
            "note": f"seconds include starting the workers and loading the model in each; startup_s: the same "
                    f"pipeline over one batch of files; each read task asks for {RAY_READ_CPUS} CPU, the workers "
                    f"share the rest"}
