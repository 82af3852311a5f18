"""The app answers concurrent clients correctly, over HTTP on 127.0.0.1 only: app.py on a free loopback
port, bounded asyncio clients.

8 clients x 5 requests each (upload, call, wait for the result; every fifth request of a client goes to
/changer), all answers checked against zoo's own predictions. A correctness test, not a measurement:
it is bounded in size (40 requests) and in time (LOAD_SECONDS, after which it is cancelled and fails).
"""
from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from app_server import serve_app
from PIL import Image

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio")
CLIENTS = 8
REQUESTS_PER_CLIENT = 5
CHANGER_EVERY = 5
LOAD_SECONDS = 180
REQUEST_SECONDS = 60
OVERSIZED_BYTES = 32 * 2**20  # far over app.py's MAX_FILE_SIZE


def _groups() -> dict[str, list[str]]:
    """Model names by demo group, in registry order: the app's tabs and endpoints."""
    groups: dict[str, list[str]] = {}
    for name in zoo.list():
        groups.setdefault(zoo.card(name).demo or name, []).append(name)
    return groups


GROUPS = _groups()
pytestmark = pytest.mark.skipif("cifar10" not in GROUPS, reason="no CIFAR-10 model shipped")


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory):
    with serve_app(tmp_path_factory.mktemp("load") / "app.log") as url:  # no --host: the default
        yield url


@pytest.fixture(scope="module")
def requests() -> list[tuple[str, list[bytes], list[str]]]:
    """(endpoint, uploads, expected top labels) for a pool of inputs; expected from zoo directly."""
    pool = []
    for seed in range(8):
        image = _png(seed)
        pool.append(("cifar10", [image], [zoo.load(n, device="cpu").predict(image).label for n in GROUPS["cifar10"]]))
    if "changer" in GROUPS:
        changer = zoo.load(GROUPS["changer"][0], device="cpu")
        for seed in range(8, 12):
            pair = [_png(seed), _png(seed + 100)]
            pool.append(("changer", pair, [changer.predict(*pair).label]))
    return pool


def _last_event(stream: str) -> tuple[str, object]:
    """The last server-sent event of a Gradio call: ('complete', outputs) or ('error', message)."""
    kind, data = "", None
    for line in stream.splitlines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: "):])
    return kind, data


async def _call(client: httpx.AsyncClient, endpoint: str, uploads: list[bytes]) -> tuple[str, object]:
    files = []
    for k, data in enumerate(uploads):
        response = await client.post("gradio_api/upload", files=[("files", (f"image{k}.png", data, "image/png"))])
        response.raise_for_status()
        files.append({"path": response.json()[0], "meta": {"_type": "gradio.FileData"}})
    response = await client.post(f"gradio_api/call/{endpoint}", json={"data": files})
    response.raise_for_status()
    result = await client.get(f"gradio_api/call/{endpoint}/{response.json()['event_id']}")
    result.raise_for_status()
    return _last_event(result.text)


def _top_labels(outputs: object) -> list[str]:
    """The top label of every model's answer (label components are dicts with a 'label')."""
    return [o["label"] for o in outputs if isinstance(o, dict) and "label" in o] if isinstance(outputs, list) else []


async def _client(url: str, number: int, pool: list, latencies: list[float], errors: list[str]) -> None:
    by_endpoint = {endpoint: [r for r in pool if r[0] == endpoint] for endpoint in {r[0] for r in pool}}
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_SECONDS) as client:
        for k in range(REQUESTS_PER_CLIENT):
            to_changer = "changer" in by_endpoint and k % CHANGER_EVERY == CHANGER_EVERY - 1
            choices = by_endpoint["changer" if to_changer else "cifar10"]
            endpoint, uploads, expected = choices[(number + k) % len(choices)]
            began = time.perf_counter()
            try:
                kind, outputs = await _call(client, endpoint, uploads)
            except httpx.HTTPError as exc:
                errors.append(f"client {number} request {k}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - began)
            got = _top_labels(outputs)[: len(expected)]
            if kind != "complete" or got != expected:
                errors.append(f"client {number} request {k} /{endpoint}: {kind} {got} != {expected}: "
                              f"{str(outputs)[:200]}")


def test_concurrent_clients_get_zoos_answers(app_url, requests):
    latencies: list[float] = []
    errors: list[str] = []

    async def load() -> None:
        await asyncio.gather(*(_client(app_url, n, requests, latencies, errors) for n in range(CLIENTS)))

    asyncio.run(asyncio.wait_for(load(), LOAD_SECONDS))
    assert errors == [], "\n".join(errors[:10])
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT


def test_oversized_upload_is_refused_with_a_message(app_url):
    with httpx.Client(base_url=app_url, timeout=REQUEST_SECONDS) as client:
        huge = ("huge.png", b"\0" * OVERSIZED_BYTES, "image/png")
        response = client.post("gradio_api/upload", files=[("files", huge)])
    assert response.status_code == 413
    assert "size" in response.text and "exceeded" in response.text


@pytest.mark.parametrize("upload, message", [
    (b"just some text, not an image\n" * 10, "cannot identify image file|not a readable image"),
    (_png(0)[:60], "damaged or truncated|cannot identify image file|not a readable image"),
])
def test_non_image_upload_is_refused_with_a_message(app_url, upload, message):
    async def call() -> tuple[str, object]:
        async with httpx.AsyncClient(base_url=app_url, timeout=REQUEST_SECONDS) as client:
            return await _call(client, "cifar10", [upload])

    kind, data = asyncio.run(call())
    assert kind == "error" and isinstance(data, dict)
    assert re.search(message, data["error"]) and "Traceback" not in data["error"], data["error"]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc shows them) of the TCP sockets listening on `port`."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, local_port = local.rsplit(":", 1)
            if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="listening sockets are read from /proc")
def test_the_server_binds_to_loopback_by_default(app_url):
    port = int(app_url.rstrip("/").rsplit(":", 1)[1])
    addresses = _listening_addresses(port)
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1
    assert addresses and addresses <= loopback, addresses
