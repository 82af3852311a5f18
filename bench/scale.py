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
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import onnxruntime as ort
import PIL

import zoo
from zoo.card import ModelCard
from zoo.loopback import RAY_LOOPBACK_ENVIRONMENT
from zoo.model import DECODE_THREADS, Model
from zoo.tasks import TASKS

from .data import CIFAR_TEST_SPLIT, add_data_option, data_folder, spread, twelve_megapixel_set
from .tables import decode_table, ray_table, serving_table
from zoo.timing import BATCH, cpu_name, time_calls

#: `predict` of one input at most this many times its stages' sum (batch-1 inference + decoding on one thread).
PREDICT_BUDGET = 1.3
#: `predict_batch` at least this share of the bound set by decoding on every core (processes) + inference.
MIN_BOUND_SHARE = 0.90
#: `zoo serve` under the most concurrent clients, one image (pair) per request, at least this share of
#: `predict_batch` on the same files: a ResNet-50's inference dwarfs a request's HTTP work; `cnn`'s and the
#: changer's (a fraction of a millisecond an image) do not.
MIN_SERVING_SHARE = 0.70
MIN_SERVING_SHARE_LIGHT = {"cnn": 0.50, "changer": 0.50}
#: Models served and run under Ray by default (those among the models measured).
SERVE_MODELS = ("cnn", "changer", "carplane-joint")
RAY_MODELS = ("cnn", "carplane-joint")
#: Concurrent clients of `zoo serve`, and Ray Data workers.
CLIENTS = (1, 8, 32)
#: Images (pairs) per request: one, as an app sends them, and a batch, as a job that gathers them does.
PER_REQUEST = (1, 8)
RAY_WORKERS = (1, 2)
#: Logical CPUs a Ray read task asks for: the rest go to the workers. Workers that asked for every CPU would
#: leave none to schedule the reads on, and the pipeline would wait forever.
RAY_READ_CPUS = 0.5
#: Where each set of files comes from.
SET_SOURCES = {"cifar": f"DATA/{CIFAR_TEST_SPLIT.as_posix()}, spread over the classes; pairs: each file and the next",
               "12mp": "DATA/caltech101-subset test bucket, upscaled to 4000x3000 (bilinear), JPEG quality 90"}
#: How long `zoo serve` may take to answer /healthz.
SERVER_START_S = 60.0
CORES = os.cpu_count() or 1

Item = Any  # a file path, or a tuple of paths for a model with several inputs


def items_for(card: ModelCard, files: Sequence[Path]) -> list[Item]:
    """What the model predicts from `files`: each file, or for a two-input model each file paired with the next."""
    paths = [str(path) for path in files]
    if len(card.inputs) == 1:
        return paths
    return [tuple(paths[(index + k) % len(paths)] for k in range(len(card.inputs))) for index in range(len(paths))]


def arguments(item: Item) -> tuple[Any, ...]:
    """`item` as the arguments of `Model.predict`."""
    return item if isinstance(item, tuple) else (item,)


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


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def zoo_server(log: Path) -> Iterator[tuple[str, int]]:
    """`zoo serve` on the CPU, as a subprocess on a free loopback port, answering /healthz; its URL and process
    id. The process is terminated on the way out, whatever happened."""
    root = Path(zoo.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", "--host", "127.0.0.1", "--port",
                                   str(port), "--device", "cpu"], cwd=root, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zoo serve did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield url, server.pid
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


Request = list[tuple[str, str, bytes]]  # a multipart form's (field, file name, content) triples
#: How a request carries its images: a multipart form, or (one image) the raw body.
BODIES = ("form", "raw")


def request_forms(card: ModelCard, files: Sequence[Path], per_request: int) -> list[Request]:
    """Multipart requests of `per_request` items each, the files read beforehand: `image` fields, or `a` and
    `b` for pairs."""
    fields = TASKS[card.task].upload_fields
    parts = [[(field, Path(path).name, Path(path).read_bytes()) for field, path in zip(fields, arguments(item))]
             for item in items_for(card, files)]
    return [[part for item in parts[start:start + per_request] for part in item]
            for start in range(0, len(parts) - per_request + 1, per_request)]


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used so far; None where /proc does not tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, in clock ticks


def load_level(url: str, server_pid: int, requests: Sequence[Request], per_request: int, clients: int,
               seconds: float, body: str = "form") -> dict[str, Any]:
    """`clients` concurrent connections, each sending one request after another (cycling through `requests`)
    until `seconds` have passed: items per second, p50/p99 latency in ms, failed requests, and the CPU seconds
    per item the server and the clients (this process) used: on one machine they share the cores. The clients
    are coroutines of one aiohttp session, a light client, so that the cores go to the server. `body`: "form"
    (multipart) or "raw" (a one-image request's file as the body, `Content-Type: image/jpeg`)."""
    import aiohttp

    counter = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []

    async def client(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.perf_counter() < deadline:
            parts = requests[next(counter) % len(requests)]
            if body == "raw":
                data: Any = parts[0][2]
                headers = {"Content-Type": "image/jpeg"}
            else:
                data, headers = aiohttp.FormData(), None
                for field, file_name, content in parts:
                    data.add_field(field, content, filename=file_name, content_type="image/jpeg")
            began = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as answer:
                answered = await answer.read()
            if answer.status == 200:
                latencies.append(time.perf_counter() - began)
            else:
                failures.append(f"{answer.status}: {answered[:200]!r}")

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            deadline = time.perf_counter() + seconds
            await asyncio.gather(*(client(session, deadline) for _ in range(clients)))

    began, server_began, clients_began = time.perf_counter(), cpu_seconds(server_pid), time.process_time()
    asyncio.run(run())
    elapsed = time.perf_counter() - began
    server_ended = cpu_seconds(server_pid)
    server_cpu_s = None if server_began is None or server_ended is None else server_ended - server_began
    items = max(1, len(latencies) * per_request)
    milliseconds = np.array(latencies) * 1e3
    return {"clients": clients, "per_request": per_request, "body": body, "requests": len(latencies),
            "seconds": elapsed,
            "ips": len(latencies) * per_request / elapsed,
            "server_cpu_s_per_item": None if server_cpu_s is None else server_cpu_s / items,
            "client_cpu_s_per_item": (time.process_time() - clients_began) / items,
            "p50_ms": float(np.percentile(milliseconds, 50)) if latencies else None,
            "p99_ms": float(np.percentile(milliseconds, 99)) if latencies else None,
            "failed": len(failures), "first_failure": failures[0] if failures else None}


def serving(names: Sequence[str], sets: dict[str, list[Path]], measured: dict[str, dict[str, Any]],
            args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """`zoo serve` under each number of concurrent clients, per model and set, beside `predict_batch`."""
    if not names:
        return {"skipped": "no model of --serve-models among those measured"}
    runs = []
    with zoo_server(scratch / "serve.log") as (url, server_pid):
        for name in names:
            endpoint = f"{url}/v1/models/{name}/predict"
            for set_name, files in sets.items():
                reference = measured[name]["sets"][set_name]["predict_batch_ips"]
                for per_request in args.per_request:
                    requests = request_forms(zoo.card(name), files, per_request)
                    load_level(endpoint, server_pid, requests, per_request, 1, 0.5)  # the server loads the model
                    raw_too = per_request == 1 and len(zoo.card(name).inputs) == 1
                    for body in [b for b in args.bodies if b == "form" or raw_too]:
                        for clients in args.clients:
                            print(f"  serve {name}: {set_name}, {clients} clients x {per_request} per request "
                                  f"({body})", file=sys.stderr, flush=True)
                            run = {"model": name, "set": set_name, **load_level(
                                endpoint, server_pid, requests, per_request, clients, args.serve_seconds, body)}
                            run["share_of_predict_batch"] = run["ips"] / reference
                            runs.append(run)
                        if per_request == 1:  # the goal: one image per request, the most clients
                            runs[-1]["goal"] = MIN_SERVING_SHARE_LIGHT.get(name, MIN_SERVING_SHARE)
                            runs[-1]["goal_met"] = runs[-1]["share_of_predict_batch"] >= runs[-1]["goal"]
    return {"runs": runs, "note": "the clients (aiohttp coroutines in the measuring process) share the server's "
                                  "cores"}


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
