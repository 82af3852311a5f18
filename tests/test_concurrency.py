"""One Model shared by many threads gives exactly the serial results; long runs do not grow memory.

The heavy runs use the fastest model (fewest weight bytes) in full and the fastest of each other
task with a tenth of the predictions per thread, so the suite stays fast on 2 cores. The figures are
printed (`pytest -s tests/test_concurrency.py`).
"""
from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo

SHIPPED = zoo.list()
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped models")
THREADS = 8
PER_THREAD = 500
MEMORY_PREDICTIONS = 10_000
MEMORY_GROWTH_LIMIT = 50 * 2**20


def _weight_bytes(name: str) -> int:
    card = zoo.card(name)
    return sum(card.files[weights]["bytes"] for weights in card.weight_files)


def _fastest_of_each_task() -> list[str]:
    tasks = {zoo.card(name).task for name in SHIPPED}
    return sorted(min((n for n in SHIPPED if zoo.card(n).task == task), key=_weight_bytes) for task in tasks)


FASTEST = min(SHIPPED, key=_weight_bytes) if SHIPPED else None


def _images(count: int, seed: int) -> list[object]:
    """Distinct images in the forms callers use: arrays of any size, PNG bytes, PIL images, floats."""
    rng = np.random.default_rng(seed)
    images: list[object] = []
    for k in range(count):
        pixels = rng.integers(0, 256, (int(rng.integers(8, 80)), int(rng.integers(8, 80)), 3), dtype=np.uint8)
        form = k % 4
        if form == 0:
            images.append(pixels)
        elif form == 1:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            images.append(buffer.getvalue())
        elif form == 2:
            images.append(Image.fromarray(pixels))
        else:
            images.append(pixels / 255.0)
    return images


def _items(model: zoo.Model, count: int) -> list[tuple[object, ...]]:
    slots = len(model.card.inputs)
    columns = [_images(count, seed) for seed in range(slots)]
    return list(zip(*columns))


@pytest.mark.parametrize("name", _fastest_of_each_task())
def test_threads_sharing_one_model_get_the_serial_results(name):
    model = zoo.load(name, device="cpu")
    items = _items(model, 64)
    serial = [model.predict(*item) for item in items]
    per_thread = PER_THREAD if name == FASTEST else PER_THREAD // 10
    start = threading.Barrier(THREADS)

    def worker(thread: int) -> list[int]:
        start.wait()
        mismatches = []
        for k in range(per_thread):
            index = (thread * 13 + k) % len(items)
            if model.predict(*items[index]) != serial[index]:
                mismatches.append(index)
        return mismatches

    with ThreadPoolExecutor(THREADS) as pool:
        mismatches = [m for result in pool.map(worker, range(THREADS)) for m in result]
    print(f"\n{name}: {THREADS} threads x {per_thread} predictions on one Model, {len(mismatches)} differ from serial")
    assert mismatches == []


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc")
def test_ten_thousand_predictions_do_not_grow_memory():
    model = zoo.load(FASTEST, device="cpu")
    items = _items(model, 100)
    for item in items * 5:  # warm up: onnxruntime's arena and Pillow's buffers reach their working size
        model.predict(*item)
    before = _resident_bytes()
    for k in range(MEMORY_PREDICTIONS):
        model.predict(*items[k % len(items)])
    growth = _resident_bytes() - before
    print(f"\n{FASTEST}: resident memory grew {growth / 2**20:+.2f} MB ({before / 2**20:.0f} MB before) "
          f"over {MEMORY_PREDICTIONS:,} predictions")
    assert growth < MEMORY_GROWTH_LIMIT
