"""`python -m bench.scale`'s first part: how prediction from JPEG files uses this machine's cores. Each stage
alone (decoding and resizing on one thread, on every core as threads and as processes; inference at batch 1 and
64), then `predict` against the sum of its stages and `predict_batch` against the bound the stages set:
1 / (decode per item on every core + inference per item)."""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

import zoo
from zoo.model import Model
from zoo.timing import BATCH, time_calls

from .data import Item, arguments, items_for


#: `predict` of one input at most this many times its stages' sum (batch-1 inference + decoding on one thread).
PREDICT_BUDGET = 1.3


#: `predict_batch` at least this share of the bound set by decoding on every core (processes) + inference.
MIN_BOUND_SHARE = 0.90


CORES = os.cpu_count() or 1


def per_item_seconds(run: Callable[[], object], count: int) -> float:
    """Wall seconds of one `run()` divided by the `count` items it handles."""
    began = time.perf_counter()
    run()
    return (time.perf_counter() - began) / count


def one_at_a_time(model: Model, items: Sequence[Item]) -> dict[str, float]:
    """Median seconds per item of decoding and resizing on the calling thread (`prepare_batch` of one item), and
    of `predict`, timed in turn on each item so that a change in the machine's load falls on both alike."""
    model.predict(*arguments(items[0]))
    calls = {"decode_s_one_thread": lambda item: model.prepare_batch([item]),
             "predict_s": lambda item: model.predict(*arguments(item))}
    seconds: dict[str, list[float]] = {key: [] for key in calls}
    for item in items:
        for key, call in calls.items():
            began = time.perf_counter()
            call(item)
            seconds[key].append(time.perf_counter() - began)
    return {key: float(np.median(values)) for key, values in seconds.items()}


def decode_threads(model: Model, items: Sequence[Item], workers: int) -> float:
    """Seconds per item with `workers` threads of this process decoding: the GIL limits it on small images."""
    with ThreadPoolExecutor(workers) as pool:
        return per_item_seconds(lambda: list(pool.map(lambda item: model.prepare_batch([item]), items)), len(items))


_forked_model: Model | None = None  # the model a forked decoding process inherits


def _prepare_in_fork(item: Item) -> dict[str, np.ndarray]:
    assert _forked_model is not None
    return _forked_model.prepare_batch([item])


@contextlib.contextmanager
def process_pool(model: Model, workers: int) -> Iterator[Any]:
    """`workers` forked processes that decode with `model`, already started."""
    global _forked_model
    _forked_model = model
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield pool
    finally:
        _forked_model = None


def decode_processes(pool: Any, items: Sequence[Item], workers: int) -> float:
    """Seconds per item with `workers` processes decoding, the feeds sent back: what the cores can decode."""
    pool.map(_prepare_in_fork, items[:workers], chunksize=1)  # first decodes (imports, caches) before the clock
    chunksize = max(1, len(items) // (4 * workers))
    return per_item_seconds(lambda: pool.map(_prepare_in_fork, items, chunksize=chunksize), len(items))


def inference_seconds(model: Model, feeds: dict[str, np.ndarray], iterations: int) -> float:
    """Median seconds per item of `predict_prepared` on `feeds` (postprocessing included)."""
    count = len(next(iter(feeds.values())))
    return float(np.median(time_calls(model.predict_prepared, feeds, iterations))) / count


def predict_batch_rate(model: Model, items: Sequence[Item], passes: int) -> dict[str, float]:
    """Items per second of `predict_batch` over all of `items`: the best and the mean of `passes` passes, after
    one call on a batch's worth that starts the decoding threads and sizes their work."""
    model.predict_batch(items[:BATCH])
    rates = [1 / per_item_seconds(lambda: model.predict_batch(items), len(items)) for _ in range(passes)]
    return {"predict_batch_ips": max(rates), "predict_batch_ips_mean": float(np.mean(rates))}


def scaling_goals(figures: dict[str, float], inference_s_b1: float, inference_s_b64: float) -> dict[str, Any]:
    """`predict` against its stages' sum, `predict_batch` against the bounds its stages set (decoding on every
    core as processes: the strict one; as threads of one process), and whether each goal is met."""
    stages_s = inference_s_b1 + figures["decode_s_one_thread"]
    bound_processes = 1 / (figures["decode_s_all_cores_processes"] + inference_s_b64)
    bound_threads = 1 / (figures["decode_s_all_cores_threads"] + inference_s_b64)
    share = figures["predict_batch_ips"] / bound_processes
    return {"predict_budget_s": PREDICT_BUDGET * stages_s, "predict_ratio": figures["predict_s"] / stages_s,
            "predict_goal_met": figures["predict_s"] <= PREDICT_BUDGET * stages_s,
            "bound_ips_processes": bound_processes, "bound_ips_threads": bound_threads,
            "share_of_bound_processes": share,
            "share_of_bound_threads": figures["predict_batch_ips"] / bound_threads,
            "predict_batch_goal_met": share >= MIN_BOUND_SHARE}


def measure_model(name: str, sets: dict[str, list[Path]], args: argparse.Namespace) -> dict[str, Any]:
    """Every decoding, inference and prediction figure of model `name` on each set of files, and its goals."""
    model = zoo.load(name, device="cpu")
    row: dict[str, Any] = {"inputs": [f"{s.name} {s.height}x{s.width}" for s in model.card.inputs]}
    with process_pool(model, CORES) as pool:
        all_items = {set_name: items_for(model.card, files) for set_name, files in sets.items()}
        feeds = model.prepare_batch(all_items["cifar"][:BATCH])  # inference time does not depend on the content
        row["inference_s_b64"] = inference_seconds(model, feeds, args.iterations)
        row["inference_s_b1"] = inference_seconds(model, {k: v[:1] for k, v in feeds.items()}, 4 * args.iterations)
        row["sets"] = {}
        for set_name, items in all_items.items():
            print(f"  {name}: {set_name} ({len(items)} items)", file=sys.stderr, flush=True)
            figures = {"items": len(items), **one_at_a_time(model, items),
                       "decode_s_all_cores_threads": decode_threads(model, items, CORES),
                       "decode_s_all_cores_processes": decode_processes(pool, items, CORES),
                       **predict_batch_rate(model, items, args.passes)}
            figures.update(scaling_goals(figures, row["inference_s_b1"], row["inference_s_b64"]))
            row["sets"][set_name] = figures
    return row
