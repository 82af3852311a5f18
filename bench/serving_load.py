"""`python -m bench.scale`'s `zoo serve` part: the server as a subprocess on the loopback, under concurrent clients
(aiohttp coroutines in the measuring process), one image (pair) or a batch per request, beside `predict_batch` on
the same files."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

import zoo
from zoo.card import ModelCard
from zoo.tasks import TASKS

from .data import arguments, items_for


#: `zoo serve` under the most concurrent clients, one image (pair) per request, at least this share of
#: `predict_batch` on the same files: a ResNet-50's inference dwarfs a request's HTTP work; `cnn`'s and the
#: changer's (a fraction of a millisecond an image) do not.
MIN_SERVING_SHARE = 0.70


MIN_SERVING_SHARE_LIGHT = {"cnn": 0.50, "changer": 0.50}


#: Models served and run under Ray by default (those among the models measured).
SERVE_MODELS = ("cnn", "changer", "carplane-joint")


#: Concurrent clients of `zoo serve`, and Ray Data workers.
CLIENTS = (1, 8, 32)


#: Images (pairs) per request: one, as an app sends them, and a batch, as a job that gathers them does.
PER_REQUEST = (1, 8)


#: How long `zoo serve` may take to answer /healthz.
SERVER_START_S = 60.0


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
