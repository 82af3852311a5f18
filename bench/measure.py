"""Per-model measurement for `python -m bench`: every engine on one shipped model, end-to-end prediction from
JPEG files, a cold process's start, and the FLOP rates against this machine's matmul ceiling."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnxruntime as ort
import torch

import zoo
from zoo.card import ModelCard

from .data import spread
from .engines import EngineUnavailable, openvino_runner, ort_runner, session_variants
from .goals import goals, ratios
from zoo.timing import BATCH, Runner, cpu_name, measure_runner, random_feeds
from .torch_engines import compiled_runner, first_output, gflop_per_image, torch_module, torch_runner


def example_items(card: ModelCard, images: Path, count: int, scratch: Path) -> list[Any]:
    """`count` JPEG files to predict from (pairs for two-input models): real ones from `images` when it holds
    enough, otherwise random images written as JPEGs into `scratch`."""
    files = spread(sorted(images.rglob("*.jpg")), 2 * count) if images.is_dir() else []  # over the classes
    if len(files) < 2 * count:
        from PIL import Image

        spec = card.inputs[0]
        rng = np.random.default_rng(1)
        files = []
        for index in range(2 * count):
            path = scratch / f"{index}.jpg"
            Image.fromarray(rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)).save(path, quality=90)
            files.append(path)
    if len(card.inputs) == 1:
        return [str(path) for path in files[:count]]
    return [(str(a), str(b)) for a, b in zip(files[:count], files[count:2 * count])]


def end_to_end_ips(name: str, threads: int, items: Sequence[Any], repeats: int) -> float:
    """Images (or pairs) per second of `predict_batch` from files: decoding, resizing, inference, postprocessing."""
    model = zoo.load(name, device="cpu", threads=threads)
    model.predict_batch(items[:BATCH])
    began = time.perf_counter()
    for _ in range(repeats):
        model.predict_batch(items)
    return len(items) * repeats / (time.perf_counter() - began)


#: What a fresh process runs: `import zoo`, `zoo.load` and one prediction; it prints the seconds to each.
COLD_START = """
import sys, time
began = time.perf_counter()
import numpy as np, zoo
model = zoo.load(sys.argv[1], device="cpu", threads=int(sys.argv[2]))
loaded = time.perf_counter()
model.predict(*(np.zeros((s.height, s.width, 3), np.uint8) for s in model.card.inputs))
print(loaded - began, time.perf_counter() - began)
"""


def cold_start(name: str, threads: int) -> dict[str, float]:
    """A fresh process's `import zoo` + `zoo.load`, and + the first prediction, in seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(zoo.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", COLD_START, name, str(threads)], capture_output=True, text=True,
                         check=True, env=env)
    load_s, first_s = map(float, out.stdout.split())
    return {"cold_load_s": load_s, "cold_first_prediction_s": first_s}


def training_rate(card: ModelCard, gflop: float, ceiling: float) -> dict[str, Any]:
    """Training images per second as the model's own training run recorded them (loop time, no evaluation),
    and the GFLOP/s that implies (forward + backward taken as 3 forward passes) against the fp32 ceiling."""
    training = card.provenance.get("training", {})
    recipe = training.get("recipe", {})
    if recipe.get("method") or not training.get("seconds"):
        return {"train_note": "staged training (cached embeddings, a head) or no recorded time: no images/s"}
    steps = recipe.get("steps_per_epoch")
    per_epoch = steps * recipe["batch_size"] if steps else card.provenance["data"]["train_images"]
    ips = training["epochs_done"] * per_epoch / training["seconds"]
    return {"train_ips": ips, "train_precision": training.get("precision"), "train_device": training.get("device"),
            "train_gflops": 3 * gflop * ips, "train_ceiling_share": 3 * gflop * ips / ceiling}


def measure_model(name: str, args: argparse.Namespace, ceiling: float, scratch: Path) -> dict[str, Any]:
    """Every measurement of model `name` with the command line's settings, its ratios and its goals."""
    card = zoo.card(name)
    row: dict[str, Any] = {"name": name, "inputs": [f"{s.name} {s.height}x{s.width}x3 uint8" for s in card.inputs]}
    architecture = card.provenance.get("architecture", {})
    row["arch"] = architecture.get("arch")
    deformable = bool(architecture.get("config", {}).get("deformable"))
    # Eager PyTorch on the op the ONNX graph computes; deformable models also in the sampled (training) form.
    modules = {"torch": torch_module(card, "torchvision" if deformable else None)}
    if deformable:
        modules["torch_sampled"] = torch_module(card, "sampled")
    row["gflop_per_image"] = gflop_per_image(modules.get("torch_sampled", modules["torch"]), card)
    modules = {key: module.to(args.torch_device) for key, module in modules.items()}
    row["torch_device"] = args.torch_device
    engines: dict[str, Callable[[], Runner]] = {
        "ort": lambda: ort_runner(name, args.threads),
        **{key: (lambda module=module: torch_runner(module, card)) for key, module in modules.items()},
    }
    if args.compile:
        engines["compile"] = lambda: compiled_runner(modules["torch"], card)
    if args.openvino:
        engines["openvino"] = lambda: openvino_runner(card, args.threads)
    check = random_feeds(card, 2, seed=7)
    reference = None
    for engine, make in engines.items():
        print(f"  {name}: {engine}", file=sys.stderr, flush=True)
        try:
            run = make()
        except EngineUnavailable as exc:
            row[f"{engine}_error"] = str(exc)
            continue
        output = first_output(run(check))
        reference = output if reference is None else reference
        row[f"{engine}_max_abs_diff"] = float(np.abs(output - reference).max())
        timing = measure_runner(run, card, args.iterations, args.batches)
        row.update({f"{engine}_{key}": value for key, value in timing.items()})
    if args.sweep:
        row["ort_session_variants"] = session_variants(card, args.threads, max(5, args.iterations // 4),
                                                       max(1, args.batches // 2), args.sweep_rounds)
    items = example_items(card, args.images, args.files, scratch)
    row["e2e_ips_b64"] = end_to_end_ips(name, args.threads, items, args.repeats)
    row.update(cold_start(name, args.threads))
    row["ort_gflops"] = row["gflop_per_image"] * row["ort_ips_b64"]
    row["ort_ceiling_share"] = row["ort_gflops"] / ceiling
    row.update(training_rate(card, row["gflop_per_image"], ceiling))
    row.update(ratios(row))
    row["goals"] = goals(row)
    return row


def machine(threads: int, ceiling: float) -> dict[str, Any]:
    """This machine and the versions of every engine measured on it."""
    import onnx

    try:
        import openvino

        openvino_version = openvino.__version__
    except ImportError:
        openvino_version = None
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "threads": threads, "matmul_ceiling_gflops": ceiling,
            "python": platform.python_version(), "onnxruntime": ort.__version__, "torch": torch.__version__,
            "onnx": onnx.__version__, "openvino": openvino_version, "load_average": os.getloadavg()}
