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
from zoo.engines import CHOICES_FILE, RUNTIME_ENV, choice_key, openvino_installed, read_choices
from zoo.registry import models_root
from zoo.timing import BATCH, Runner, cpu_name, interleaved, measure_runner, random_feeds, time_calls

from .data import spread
from .engines import EngineUnavailable, openvino_runner, ort_runner, session_variants
from .goals import goals, ratios
from .torch_engines import compiled_runner, first_output, gflop_per_image, torch_module, torch_runner

#: Rounds of the interleaved timings: zoo's session with OpenVINO, `auto` with OpenVINO's default precision.
INTERLEAVED_ROUNDS = 2


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
    """Images (or pairs) per second of `predict_batch` from files on onnxruntime: decoding, resizing, inference,
    postprocessing. The changer's pairs are not refined: this is the network's pipeline against the network alone
    (the refinement's cost is `python -m bench.changer`'s)."""
    model = zoo.load(name, device="cpu", threads=threads, runtime="onnxruntime")
    model.predict_batch(items[:BATCH], refine=False)
    began = time.perf_counter()
    for _ in range(repeats):
        model.predict_batch(items, refine=False)
    return len(items) * repeats / (time.perf_counter() - began)


def as_items(card: ModelCard, feeds: dict[str, np.ndarray]) -> list[Any]:
    """A batch of feeds as `predict_batch`'s items: one array per image, a tuple of arrays per pair."""
    images = [feeds[spec.name] for spec in card.inputs]
    return list(images[0]) if len(images) == 1 else list(zip(*images))


def interleaved_b64(runners: dict[str, Runner], feeds: dict[str, np.ndarray], rounds: int,
                    calls: int) -> dict[str, float]:
    """Images/s of each runner on one batch of `feeds`, timed in turn `rounds` times over (load on the machine
    falls on each alike)."""
    seconds: dict[str, list[np.ndarray]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            seconds[key].append(time_calls(run, feeds, calls, warmup=1))
    return {key: float(BATCH * sum(map(len, times)) / sum(t.sum() for t in times)) for key, times in seconds.items()}


def auto_against_openvino_default(card: ModelCard, threads: int, rounds: int, calls: int) -> dict[str, Any]:
    """`zoo.load(runtime="auto")`'s `predict_batch` on `BATCH` uint8 arrays already at the input size, against
    OpenVINO at its default precision running the same arrays raw; the changer with refine=False, so that both
    sides run the network alone. Records the runtime and precision `auto` chose, and its measurement."""
    # This (untimed) load makes auto's choice: measured on the first load of this graph here, then cached.
    model = zoo.load(card.name, device="cpu", threads=threads, runtime="auto")
    row: dict[str, Any] = {"auto_runtime": model.runtime, "auto_providers": model.providers,
                           "auto_precision": getattr(model.session, "precision", None),
                           "bf16_accuracy_loss": card.bf16_accuracy_loss}
    if openvino_installed():
        row["auto_measurement"] = read_choices(models_root() / CHOICES_FILE).get(choice_key(card, threads))
    runners: dict[str, Runner] = {"auto": lambda feeds: model.predict_batch(as_items(card, feeds), refine=False)}
    try:
        runners["openvino_default"], row["openvino_default_precision"] = openvino_runner(card, threads, bf16=True)
    except EngineUnavailable as exc:
        row["openvino_default_error"] = str(exc)
    timing = interleaved_b64(runners, random_feeds(card, BATCH, seed=3), rounds, calls)
    model.close()
    return {**row, **{f"{key}_ips_b64": ips for key, ips in timing.items()}}


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
    """A fresh process's `import zoo` + `zoo.load` on onnxruntime, and + the first prediction, in seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(zoo.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    env[RUNTIME_ENV] = "onnxruntime"
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
        key: (lambda module=module: torch_runner(module, card)) for key, module in modules.items()}
    if args.compile:
        engines["compile"] = lambda: compiled_runner(modules["torch"], card)
    if args.openvino:
        def openvino() -> Runner:
            run, row["openvino_precision"] = openvino_runner(card, args.threads)
            return run

        engines["openvino"] = openvino
    check = random_feeds(card, 2, seed=7)
    print(f"  {name}: ort", file=sys.stderr, flush=True)
    runners = {"ort": ort_runner(name, args.threads)}
    reference = first_output(runners["ort"](check))
    for engine, make in engines.items():
        print(f"  {name}: {engine}", file=sys.stderr, flush=True)
        try:
            runners[engine] = make()
        except EngineUnavailable as exc:
            row[f"{engine}_error"] = str(exc)
            continue
        row[f"{engine}_max_abs_diff"] = float(np.abs(first_output(runners[engine](check)) - reference).max())
    rounds = INTERLEAVED_ROUNDS
    b1_calls, b64_calls = -(-args.iterations // rounds), -(-args.batches // rounds)  # rounded up
    # zoo's session and OpenVINO, whose ratio is a goal at 0.9x, are timed in turn so that load falls on both.
    paired = {key: runners.pop(key) for key in ("ort", "openvino") if key in runners}
    timings = interleaved(paired, card, rounds, b1_calls, b64_calls)
    for engine, run in runners.items():
        timings[engine] = measure_runner(run, card, args.iterations, args.batches)
    for engine, timing in timings.items():
        row.update({f"{engine}_{key}": value for key, value in timing.items()})
    if args.openvino:
        print(f"  {name}: auto against OpenVINO's default precision", file=sys.stderr, flush=True)
        row.update(auto_against_openvino_default(card, args.threads, rounds, b64_calls))
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
