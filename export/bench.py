"""python -m export.bench [--json FILE]: every shipped model on zoo's onnxruntime session against PyTorch
eager on the same weights, torch.compile and OpenVINO on the same model.onnx, in one run on this machine.

Per model: batch-1 latency (p50, p99) and batch-64 throughput per engine, the ratios, end-to-end
`predict_batch` from JPEG files beside inference alone, a cold process's `zoo.load` + first prediction,
and the GFLOP/s achieved against this machine's fp32 matmul ceiling (measured in the same run). Engines
that do not install or cannot run a model are recorded with the reason, never fatal.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnxruntime as ort
import torch

import zoo
from training.checkpoint import load_model
from zoo.card import ModelCard
from zoo.registry import model_dir
from zoo.runtime import session_options

#: A function that runs one batch of feeds (graph input name -> uint8 NHWC array) to completion.
Runner = Callable[[dict[str, np.ndarray]], Any]
BATCH = 64
#: The performance goals, checked per model in the JSON (`goals`).
MIN_SPEEDUP_B1, MIN_SPEEDUP_B64 = 3.0, 2.0
MAX_BEHIND_OPENVINO = 0.10
MIN_END_TO_END_SHARE = 0.75
#: Cold-start limits in seconds: 2 s for a ResNet-50 (by architecture), 0.3 s for the small models.
COLD_START_LIMIT_S = {"resnet50": 2.0}
SMALL_MODEL_COLD_START_S = 0.3
DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg" / "test"


class EngineUnavailable(Exception):
    """An engine that does not install here or cannot run this model; the message says why."""


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


def measure(run: Runner, card: ModelCard, iterations_b1: int, iterations_b64: int) -> dict[str, float]:
    """Batch-1 p50/p99 latency (ms) and batch-64 throughput (images/s) of one engine."""
    b1 = time_calls(run, random_feeds(card, 1), iterations_b1) * 1e3
    b64 = time_calls(run, random_feeds(card, BATCH), iterations_b64, warmup=1)
    return {"ms_b1": float(np.percentile(b1, 50)), "p99_ms_b1": float(np.percentile(b1, 99)),
            "ips_b64": float(BATCH * iterations_b64 / b64.sum())}


def random_feeds(card: ModelCard, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {spec.name: rng.integers(0, 256, (batch, spec.height, spec.width, 3), dtype=np.uint8) for spec in card.inputs}


def matmul_ceiling(threads: int, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0,
                   device: str = "cpu") -> float:
    """This machine's matmul rate in GFLOP/s (torch.mm of `dtype`, `threads` CPU threads or a GPU): the ceiling
    models are held to."""
    torch.set_num_threads(threads)
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        torch.mm(a, b)
        calls += 1
    sync()
    return 2 * size**3 * calls / (time.perf_counter() - began) / 1e9


# ---- engines: each returns a Runner or raises EngineUnavailable -------------------------------------------


def ort_runner(name: str, threads: int) -> Runner:
    session = zoo.load(name, device="cpu", threads=threads).session
    return lambda feeds: session.run(None, feeds)


def interleaved(runners: dict[str, Runner], card: ModelCard, rounds: int, iterations_b1: int,
                iterations_b64: int) -> dict[str, dict[str, float]]:
    """Batch-1 p50/p99 (ms) and batch-64 images/s of several runners, timed in turn `rounds` times over, so
    that a change in the machine's load (the other core is shared) falls on all of them alike."""
    feeds_b1, feeds_b64 = random_feeds(card, 1), random_feeds(card, BATCH)
    b1: dict[str, list[np.ndarray]] = {key: [] for key in runners}
    b64: dict[str, list[np.ndarray]] = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            b1[key].append(time_calls(run, feeds_b1, iterations_b1, warmup=1) * 1e3)
            b64[key].append(time_calls(run, feeds_b64, iterations_b64, warmup=1))
    return {key: {"ms_b1": float(np.percentile(np.concatenate(b1[key]), 50)),
                  "p99_ms_b1": float(np.percentile(np.concatenate(b1[key]), 99)),
                  "ips_b64": float(BATCH * iterations_b64 * rounds / np.concatenate(b64[key]).sum())}
            for key in runners}


#: Alternatives to zoo's session settings (`zoo.runtime.session_options`), each one change away from them:
#: the before/after of every session-option lever, measured in the same run.
SESSION_VARIANTS: dict[str, Callable[[ort.SessionOptions], None]] = {
    "basic_graph_optimization": lambda o: setattr(o, "graph_optimization_level",
                                                  ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "extended_graph_optimization": lambda o: setattr(o, "graph_optimization_level",
                                                     ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "zoo_again": lambda o: None,  # zoo's settings timed a second time: the noise between identical sessions
    "no_thread_spinning": lambda o: o.add_session_config_entry("session.intra_op.allow_spinning", "0"),
    "no_memory_arena": lambda o: setattr(o, "enable_cpu_mem_arena", False),
    "no_memory_pattern": lambda o: setattr(o, "enable_mem_pattern", False),
    "parallel_execution": lambda o: (setattr(o, "execution_mode", ort.ExecutionMode.ORT_PARALLEL),
                                     setattr(o, "inter_op_num_threads", 2)),
    "one_thread": lambda o: setattr(o, "intra_op_num_threads", 1),
}
#: The variant loading a graph optimised ahead of time (what export could ship): see `saved_optimized_model`.
PREOPTIMIZED = "preoptimized_model"


def saved_optimized_model(card: ModelCard, threads: int, folder: Path) -> Path:
    """model.onnx optimised by onnxruntime at the extended level (the portable one; the NCHWc layouts of
    "all" are this CPU's) and saved with its weights in a file of their own: batch norms folded into the
    convolutions (and, for int8-stored weights, those dequantized) are new tensors that cannot point into
    model.safetensors. Loaded with zoo's settings, it shows what an optimised model saved at export would buy."""
    options = session_options(threads, card.extra.get("session_config", {}))
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.weights")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(model_dir(card.name) / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return folder / "optimized.onnx"


def session_variants(card: ModelCard, threads: int, iterations_b1: int, iterations_b64: int,
                     rounds: int = 3) -> dict[str, Any]:
    """zoo's session settings and each alternative (`SESSION_VARIANTS`, and the graph saved optimised ahead of
    time): load seconds (best of 3), batch-1 p50/p99 and batch-64 throughput, timed interleaved."""
    config = card.extra.get("session_config", {})
    with tempfile.TemporaryDirectory(prefix="zoo-preoptimized-") as scratch:
        optimized = saved_optimized_model(card, threads, Path(scratch))
        graph = model_dir(card.name) / "model.onnx"
        paths = {"zoo": graph, **{key: graph for key in SESSION_VARIANTS}, PREOPTIMIZED: optimized}
        sessions, results = {}, {}
        for variant, path in paths.items():
            loads = []
            for _ in range(3):
                options = session_options(threads, config)
                SESSION_VARIANTS.get(variant, lambda options: None)(options)
                began = time.perf_counter()
                sessions[variant] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                loads.append(time.perf_counter() - began)
            results[variant] = {"load_s": min(loads)}
        results[PREOPTIMIZED]["extra_bytes"] = sum(p.stat().st_size for p in Path(scratch).iterdir())
        runners = {variant: (lambda feeds, s=session: s.run(None, feeds)) for variant, session in sessions.items()}
        timings = interleaved(runners, card, rounds, iterations_b1, iterations_b64)
    return {variant: {**results[variant], **timings[variant]} for variant in paths}


def torch_module(card: ModelCard, implementation: str | None = None) -> torch.nn.Module:
    """The PyTorch network rebuilt from the model's own model.safetensors (int8-stored weights scaled back); for
    a quantized variant (`python -m export quantize`), the float model it was quantized from."""
    overrides = {"deform_implementation": implementation} if implementation else {}
    return load_model(model_dir(card.extra.get("quantized_from", card.name)) / "model.safetensors", **overrides)[0]


def torch_runner(module: torch.nn.Module, card: ModelCard) -> Runner:
    """The module on its own device; timed calls include the copy of the inputs there and wait for the result."""
    names = [spec.name for spec in card.inputs]
    device = next(module.parameters()).device

    def run(feeds: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(feeds[name]).to(device) for name in names))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    return run


def compiled_runner(module: torch.nn.Module, card: ModelCard) -> Runner:
    """torch.compile (inductor); compiling happens on the first calls, which the warm-up absorbs."""
    try:
        run = torch_runner(torch.compile(module, dynamic=False), card)
        run(random_feeds(card, 1))
        run(random_feeds(card, BATCH))
    except Exception as exc:  # no C++ compiler, an unsupported op: recorded, not fatal
        raise EngineUnavailable(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    return run


def openvino_runner(card: ModelCard, threads: int) -> Runner:
    """OpenVINO's CPU plugin on the same model.onnx, fp32 (its default on bf16-capable CPUs is bf16)."""
    try:
        import openvino as ov
    except ImportError:
        raise EngineUnavailable("openvino is not installed (pip install -e '.[bench]')") from None
    try:
        core = ov.Core()
        compiled = core.compile_model(str(model_dir(card.name) / "model.onnx"), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        request.infer(random_feeds(card, 1))
    except Exception as exc:  # e.g. an op its ONNX frontend lacks
        raise EngineUnavailable(f"OpenVINO {ov.__version__} cannot run model.onnx: {str(exc)[:300]}") from None
    return lambda feeds: request.infer(feeds)


def first_output(result: Any) -> np.ndarray:
    """The first output of any engine's result, as float32 numpy."""
    if not isinstance(result, (torch.Tensor, np.ndarray, list, tuple)):  # OpenVINO's OVDict
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        result = result[0]
    return result.float().cpu().numpy() if isinstance(result, torch.Tensor) else np.asarray(result, np.float32)


# ---- per-model measurements --------------------------------------------------------------------------------


def gflop_per_image(module: torch.nn.Module, card: ModelCard) -> float:
    """Convolution and matmul GFLOP of one image (torch's FlopCounterMode, batch 64 divided by 64)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        torch_runner(module, card)(random_feeds(card, BATCH))
    return counter.get_total_flops() / BATCH / 1e9


def example_items(card: ModelCard, images: Path | None, count: int, scratch: Path) -> list[Any]:
    """`count` JPEG files to predict from (pairs for two-input models): real ones from `images` when present."""
    files = sorted(images.rglob("*.jpg")) if images and images.is_dir() else []
    files = files[:: max(1, len(files) // (2 * count))]  # spread over the classes
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


def bench_model(name: str, args: argparse.Namespace, ceiling: float, scratch: Path) -> dict[str, Any]:
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
        row.update({f"{engine}_{key}": value for key, value in measure(run, card, args.iterations, args.batches).items()})
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
    return row


def ratios(row: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups of zoo's session over each engine, and the performance goals as booleans (None: not measured)."""
    out: dict[str, Any] = {}
    for engine in ("torch", "torch_sampled", "compile", "openvino"):
        if f"{engine}_ms_b1" in row:
            out[f"speedup_b1_vs_{engine}"] = row[f"{engine}_ms_b1"] / row["ort_ms_b1"]
            out[f"speedup_b64_vs_{engine}"] = row["ort_ips_b64"] / row[f"{engine}_ips_b64"]
    out["e2e_share"] = row["e2e_ips_b64"] / row["ort_ips_b64"]
    # The goals hold zoo to the faster eager form (deformable: torchvision's kernel or the sampled form).
    eager = [engine for engine in ("torch", "torch_sampled") if f"{engine}_ms_b1" in row]
    out["eager_best_b1"] = min(eager, key=lambda engine: row[f"{engine}_ms_b1"])
    out["eager_best_b64"] = max(eager, key=lambda engine: row[f"{engine}_ips_b64"])
    openvino = "speedup_b1_vs_openvino" in out
    out["goals"] = {
        "b1_3x_torch": out[f"speedup_b1_vs_{out['eager_best_b1']}"] >= MIN_SPEEDUP_B1,
        "b64_2x_torch": out[f"speedup_b64_vs_{out['eager_best_b64']}"] >= MIN_SPEEDUP_B64,
        "openvino_within_10pct": (min(out["speedup_b1_vs_openvino"], out["speedup_b64_vs_openvino"])
                                  >= 1 - MAX_BEHIND_OPENVINO) if openvino else None,
        "e2e_within_25pct": out["e2e_share"] >= MIN_END_TO_END_SHARE,
        "cold_start": row["cold_first_prediction_s"] <= COLD_START_LIMIT_S.get(row["arch"], SMALL_MODEL_COLD_START_S),
    }
    return out


# ---- report ------------------------------------------------------------------------------------------------

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


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the measurements; "—" where an engine did not run."""
    def cell(row: dict[str, Any], keys: str | tuple[str, ...], fmt: str) -> str:
        keys = (keys,) if isinstance(keys, str) else keys
        return fmt.format(*(row[k] for k in keys)) if all(k in row for k in keys) else "—"

    lines = ["| " + " | ".join(title for title, _, _ in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, keys, fmt) for _, keys, fmt in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def variants_table(rows: list[dict[str, Any]]) -> str:
    """zoo's onnxruntime settings against each alternative: batch-1 p50 / p99 ms and batch-64 images/s."""
    variants = list(next((row["ort_session_variants"] for row in rows if "ort_session_variants" in row), {}))
    lines = ["| model | " + " | ".join(variants) + " |", "|" + " --- |" * (len(variants) + 1)]
    for row in (row for row in rows if "ort_session_variants" in row):
        cells = [row["ort_session_variants"][variant] for variant in variants]
        lines.append(f"| {row['name']} | " + " | ".join(f"{c['ms_b1']:.2f} / {c['p99_ms_b1']:.2f} ms, {c['ips_b64']:.0f}/s"
                                                         for c in cells) + " |")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name, plus whether it has VNNI: int8 speed and, without VNNI, int8 accuracy depend on it."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor()
    lines = cpuinfo.read_text().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return f"{name} ({'VNNI' if {'avx512_vnni', 'avx_vnni'} & set(flags) else 'no VNNI'})"


def machine(threads: int, ceiling: float) -> dict[str, Any]:
    import onnx

    try:
        import openvino

        openvino_version = openvino.__version__
    except ImportError:
        openvino_version = None
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "threads": threads, "matmul_ceiling_gflops": ceiling,
            "python": platform.python_version(), "onnxruntime": ort.__version__, "torch": torch.__version__,
            "onnx": onnx.__version__, "openvino": openvino_version, "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to measure (default: every model in zoo.list())")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for every engine: onnxruntime intra-op = torch.set_num_threads = OpenVINO")
    parser.add_argument("--iterations", type=int, default=200, help="timed batch-1 calls per engine (default 200)")
    parser.add_argument("--batches", type=int, default=5, help="timed batch-64 calls per engine (default 5)")
    parser.add_argument("--files", type=int, default=256, help="JPEG files (pairs) per end-to-end pass (default 256)")
    parser.add_argument("--repeats", type=int, default=2, help="end-to-end passes over the files (default 2)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder of JPEGs for the end-to-end run (default: the CIFAR-10 JPEG test split; "
                             "synthetic JPEGs when absent)")
    parser.add_argument("--torch-device", default="cpu",
                        help="where PyTorch runs (cuda: scripts/gpu_check.sh); zoo's session runs on the CPU here")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (slow to compile)")
    parser.add_argument("--no-openvino", dest="openvino", action="store_false", help="skip OpenVINO")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="skip timing zoo's onnxruntime settings against each alternative")
    parser.add_argument("--sweep-rounds", type=int, default=3,
                        help="times each session setting is timed, interleaved with the others (default 3)")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier run's JSON; measure nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = list(json.loads(args.from_json.read_text())["models"].values())
        print(f"{table(rows)}\n\n{variants_table(rows)}")
        return
    names = args.names or zoo.list()
    unknown = sorted(set(names) - set(zoo.list()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; available: {zoo.list()}")
    torch.set_num_threads(args.threads)
    ceiling = matmul_ceiling(args.threads)
    print(f"fp32 matmul ceiling: {ceiling:.1f} GFLOP/s on {args.threads} threads", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as scratch:
        rows = [bench_model(name, args, ceiling, Path(scratch)) for name in names]
    report = {"machine": machine(args.threads, ceiling),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
              "models": {row["name"]: row for row in rows}}
    print(f"{table(rows)}\n\n{variants_table(rows)}")
    print(f"\nfp32 matmul ceiling {ceiling:.1f} GFLOP/s ({args.threads} threads); goals per model in the JSON")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
