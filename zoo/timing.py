"""Timing and statistics of runners: functions that run one batch of feeds to completion. Torch-free; the
benchmarks and the export gates (int8 speed) share it."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .model import CHUNK
from .runtime import cpu_identity

if TYPE_CHECKING:
    from zoo.card import ModelCard

#: A function that runs one batch of feeds (graph input name -> uint8 NHWC array) to completion.
Runner = Callable[[dict[str, np.ndarray]], Any]
#: The batch size of the throughput figures: the one `predict_batch` runs.
BATCH = CHUNK


def time_calls(run: Runner, feeds: dict[str, np.ndarray], iterations: int, warmup: int = 2) -> np.ndarray:
    """Seconds per call of `run(feeds)` after `warmup` untimed calls."""
    for _ in range(warmup):
        run(feeds)
    seconds = np.empty(iterations)
    for index in range(iterations):
        began = time.perf_counter()
        run(feeds)
        seconds[index] = time.perf_counter() - began
    return seconds


def random_feeds(card: ModelCard, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of random uint8 images for each of the model's inputs."""
    rng = np.random.default_rng(seed)
    return {spec.name: rng.integers(0, 256, (batch, spec.height, spec.width, 3), dtype=np.uint8) for spec in card.inputs}


def latency_and_throughput(b1_ms: np.ndarray, b64_s: np.ndarray) -> dict[str, float]:
    """Batch-1 p50/p99 latency (ms) from per-call milliseconds, and batch-64 images/s from per-call seconds."""
    return {"ms_b1": float(np.percentile(b1_ms, 50)), "p99_ms_b1": float(np.percentile(b1_ms, 99)),
            "ips_b64": float(BATCH * len(b64_s) / b64_s.sum())}


def measure_runner(run: Runner, card: ModelCard, iterations_b1: int, iterations_b64: int) -> dict[str, float]:
    """Batch-1 p50/p99 latency (ms) and batch-64 throughput (images/s) of one runner."""
    b1 = time_calls(run, random_feeds(card, 1), iterations_b1) * 1e3
    b64 = time_calls(run, random_feeds(card, BATCH), iterations_b64, warmup=1)
    return latency_and_throughput(b1, b64)


def interleaved(runners: dict[str, Runner], card: ModelCard, rounds: int, iterations_b1: int,
                iterations_b64: int) -> dict[str, dict[str, float]]:
    """Batch-1 p50/p99 (ms) and batch-64 images/s of several runners, timed in turn `rounds` times over, so
    that a change in the machine's load falls on all of them alike."""
    feeds_b1, feeds_b64 = random_feeds(card, 1), random_feeds(card, BATCH)
    b1: dict[str, list[np.ndarray]] = {key: [] for key in runners}
    b64: dict[str, list[np.ndarray]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            b1[key].append(time_calls(run, feeds_b1, iterations_b1, warmup=1) * 1e3)
            b64[key].append(time_calls(run, feeds_b64, iterations_b64, warmup=1))
    return {key: latency_and_throughput(np.concatenate(b1[key]), np.concatenate(b64[key])) for key in runners}


def cpu_name() -> str:
    """The CPU's model name, plus whether it has VNNI: int8 speed and, without VNNI, int8 accuracy depend on it."""
    name, flags = cpu_identity()
    return f"{name} ({'VNNI' if {'avx512_vnni', 'avx_vnni'} & set(flags) else 'no VNNI'})"
