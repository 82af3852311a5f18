"""`zoo serve` as operators run it: startup and access logs, request ids, /metrics, /livez and /readyz, preload,
the per-request pixel budget with decoding off the event loop, model loading off the loop, a bounded queue,
batching options, offline /docs, raw image bodies, and a bounded load test of good and bad clients. Servers are
real subprocesses on 127.0.0.1 (`test_serve.start`); the batcher and loader are also driven in-process."""
from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image
from test_serve import EXAMPLES, PAIR, assert_path_free, damaged_home, files, start  # noqa: F401 - a fixture

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
prometheus_parser = pytest.importorskip("prometheus_client.parser")
pytestmark = [pytest.mark.skipif(not {"cnn", "changer"} <= set(zoo.list()), reason="cnn and changer are not shipped"),
              pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")]


def solid_webp(side: int = 7000) -> bytes:
    """A lossless WebP of one colour: under 2 KB that decode to `side`² pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in prometheus_parser.text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-log") / "server.log"


@pytest.fixture(scope="module")
def operated(log) -> Iterator[str]:
    """A server as an operator starts it: models preloaded, an access log in JSON lines; yielded once ready."""
    for url in start("--preload", "cnn", "changer", "--access-log", "--log-json", log=log):
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the preloaded models did not load within 60 s"
            time.sleep(0.1)
        yield url


def test_the_startup_line_says_where_what_and_how(operated, log):
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    first = lines[0]["message"]
    assert f"listening on {operated}" in first and "API key off" in first and "preload: cnn, changer" in first
    assert all(name in first for name in zoo.list()) and "device cpu" in first
    assert any(line["message"].startswith("ready: 2 model(s)") for line in lines)


def test_live_and_ready_and_their_heads(operated):
    for route in ("/livez", "/healthz", "/readyz"):
        assert httpx.get(operated + route).status_code == 200
        assert httpx.head(operated + route).status_code == 200
    assert httpx.get(operated + "/readyz").json() == {"status": "ready", "models": ["cnn", "changer"]}


def test_every_answer_has_a_request_id_and_the_access_log_has_its_line(operated, log):
    chosen = httpx.post(f"{operated}/v1/models/cnn/predict", files=files("image", EXAMPLES[:1]),
                        headers={"X-Request-ID": "client-chosen.42"})
    assert chosen.headers["x-request-id"] == "client-chosen.42"
    made = httpx.get(f"{operated}/v1/models/no-such-model", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.status_code == 404 and re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made.headers["x-request-id"])
    time.sleep(0.2)
    access = [line for line in map(json.loads, log.read_text().splitlines()) if line["logger"] == "zoo.access"]
    by_id = {line["request_id"]: line for line in access}
    assert by_id["client-chosen.42"]["path"] == "/v1/models/cnn/predict" and by_id["client-chosen.42"]["status"] == 200
    assert by_id[made.headers["x-request-id"]]["status"] == 404
    assert all(line["duration_ms"] >= 0 and line["method"] in ("GET", "POST", "HEAD") for line in access)


def test_metrics_count_requests_batches_images_and_loads(operated):
    before = metric_samples(httpx.get(f"{operated}/metrics").text)
    assert httpx.post(f"{operated}/v1/models/cnn/predict", files=files("image", EXAMPLES[:3])).status_code == 200
    assert httpx.post(f"{operated}/v1/models/cnn/predict", files=[("image", ("x.jpg", b"not an image"))]).status_code == 422
    response = httpx.get(f"{operated}/metrics")
    assert response.headers["content-type"].startswith("text/plain") and "version=0.0.4" in response.headers["content-type"]
    after = metric_samples(response.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    route = "/v1/models/{name}/predict"
    assert grew("zoo_http_requests_total", route=route, method="POST", status="200") == 1
    assert grew("zoo_http_requests_total", route=route, method="POST", status="422") == 1
    assert grew("zoo_http_request_duration_seconds_count", route=route) == 2
    assert grew("zoo_images_total", model="cnn") == 3
    assert grew("zoo_batch_images_sum", model="cnn") == 3 and grew("zoo_batch_images_count", model="cnn") == 1
    assert after[("zoo_queue_depth", (("model", "cnn"),))] == 0
    assert after[("zoo_model_loaded", (("model", "changer"),))] == 1
    assert 0 < after[("zoo_model_load_seconds", (("model", "cnn"),))] < 60


def test_a_preloaded_model_that_cannot_load_keeps_the_server_unready(damaged_home, tmp_path):
    for url in start("--preload", "cnn", env={"ZOO_HOME": str(damaged_home)}, log=tmp_path / "log"):
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503 and "model.safetensors" in response.json()["failed"]["cnn"]
        assert_path_free(response.text, damaged_home)
        assert httpx.get(f"{url}/livez").status_code == 200
        assert "not ready: model 'cnn' did not load" in (tmp_path / "log").read_text()


def test_the_pixel_budget_of_a_request_is_read_from_headers_before_decoding(operated):
    started = time.perf_counter()
    response = httpx.post(f"{operated}/v1/models/cnn/predict", files=[("image", ("x.webp", solid_webp()))] * 16,
                          timeout=60)
    assert response.status_code == 413 and "ZOO_MAX_REQUEST_PIXELS" in response.json()["detail"]
    assert "784,000,000" in response.json()["detail"]
    assert time.perf_counter() - started < 5  # refused from the headers: 16 such images take ~10 s to decode


def test_large_images_decode_off_the_event_loop(tmp_path):
    """Six 49-megapixel images in one request (allowed by a raised budget) take seconds to decode; meanwhile the
    server answers /livez as usual."""
    webp = solid_webp()
    for url in start(env={"ZOO_MAX_REQUEST_PIXELS": "400000000"}, log=tmp_path / "log"):
        answer: dict[str, object] = {}

        def heavy() -> None:
            begun = time.perf_counter()
            response = httpx.post(f"{url}/v1/models/cnn/predict", files=[("image", ("x.webp", webp))] * 6,
                                  timeout=120)
            answer.update(status=response.status_code, seconds=time.perf_counter() - begun)

        worker = threading.Thread(target=heavy)
        worker.start()
        time.sleep(0.2)
        probes = []
        while worker.is_alive():
            begun = time.perf_counter()
            assert httpx.get(f"{url}/livez", timeout=30).status_code == 200
            probes.append(time.perf_counter() - begun)
            time.sleep(0.05)
        worker.join()
        assert answer["status"] == 200 and len(probes) >= 5
        # Decoding on the loop would hold a probe for (nearly) the whole request.
        assert max(probes) < 0.5 * answer["seconds"], (max(probes), answer)


def test_a_raw_image_body_is_one_image(operated):
    cat = EXAMPLES[0]
    raw = httpx.post(f"{operated}/v1/models/cnn/predict", content=cat.read_bytes(),
                     headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200
    assert raw.json()["predictions"] == [zoo.load("cnn", device="cpu").predict(cat).to_dict()]
    octets = httpx.post(f"{operated}/v1/models/cnn/predict", content=cat.read_bytes(),
                        headers={"Content-Type": "application/octet-stream"})
    assert octets.json() == raw.json()
    pair = httpx.post(f"{operated}/v1/models/changer/predict", content=PAIR[0].read_bytes(),
                      headers={"Content-Type": "image/jpeg"})
    assert pair.status_code == 415 and "'a' and 'b'" in pair.json()["detail"]
    empty = httpx.post(f"{operated}/v1/models/cnn/predict", content=b"", headers={"Content-Type": "image/png"})
    assert empty.status_code == 400
    text = httpx.post(f"{operated}/v1/models/cnn/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    lying = httpx.post(f"{operated}/v1/models/cnn/predict", content=b"GIF89a" + b"\0" * 20,
                       headers={"Content-Type": "image/gif"})
    assert lying.status_code == 422


def test_docs_work_offline_and_describe_the_uploads(operated):
    page = httpx.get(f"{operated}/docs").text
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", page)
    assert sources and all(source.startswith("/docs/assets/") for source in sources), sources
    assert "://" not in page.replace(operated, "")
    for source in sources:
        assert httpx.get(operated + source).status_code == 200, source
    schema = httpx.get(f"{operated}/openapi.json").json()
    body = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["items"]["format"] == "binary" and {"a", "b", "refine"} <= set(form)
    assert "image/*" in body


@pytest.fixture(scope="module")
def narrow(tmp_path_factory) -> Iterator[str]:
    """A server that admits 2 requests per model at once."""
    yield from start("--max-queue", "2", log=tmp_path_factory.mktemp("narrow") / "log")


def test_a_full_queue_answers_503_with_retry_after_and_the_rest_are_right(narrow):
    expected = [p.to_dict() for p in zoo.load("cnn", device="cpu").predict_batch(EXAMPLES)]
    burst = files("image", EXAMPLES * 8)[:64]
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda _: httpx.post(f"{narrow}/v1/models/cnn/predict", files=burst, timeout=120),
                                  range(24)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    for response in responses:
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1" and "--max-queue" in response.json()["detail"]
        else:
            assert response.json()["predictions"] == (expected * 8)[:64]


def test_max_batch_caps_every_onnxruntime_run(tmp_path):
    """Single pairs, and requests of three images that two at a time would pass the cap: no run over 4."""
    for url in start("--max-batch", "4", "--batch-wait-ms", "50", log=tmp_path / "log"):
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda k: httpx.post(f"{url}/v1/models/changer/predict", timeout=60,
                                                          files=files("a", PAIR[:1]) + files("b", PAIR[1:])
                                                          ).status_code, range(16)))
            statuses += list(pool.map(lambda k: httpx.post(f"{url}/v1/models/cnn/predict", timeout=60,
                                                           files=files("image", EXAMPLES[:3])).status_code, range(12)))
        samples = metric_samples(httpx.get(f"{url}/metrics").text)
    assert statuses == [200] * 28
    cnn_runs = samples[("zoo_batch_images_count", (("model", "cnn"),))]
    assert samples[("zoo_batch_images_bucket", (("le", "4.0"), ("model", "cnn")))] == cnn_runs == 12
    runs = samples[("zoo_batch_images_count", (("model", "changer"),))]
    at_most_four = samples[("zoo_batch_images_bucket", (("le", "4.0"), ("model", "changer")))]
    assert runs >= 4 and at_most_four == runs and samples[("zoo_images_total", (("model", "changer"),))] == 16


class SlowModels:
    """LocalModels whose loads take `seconds` (or fail), counted: the loader as the server drives it."""

    def __init__(self, seconds: float = 0.0, error: Exception | None = None) -> None:
        from zoo.serve import LocalModels

        self.backend, self.calls = LocalModels(device="cpu"), 0
        real_load = self.backend._load

        def load(name: str) -> zoo.Model:
            self.calls += 1
            time.sleep(seconds)
            if error is not None:
                raise error
            return real_load(name)

        self.backend._load = load


def test_a_model_loads_off_the_event_loop_once_for_concurrent_requests():
    from zoo.serve import create_app

    slow = SlowModels(seconds=1.0)
    app = create_app(backend=slow.backend)

    async def scenario() -> tuple[list[int], float, float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            begun = time.perf_counter()
            predictions = [asyncio.create_task(client.post("/v1/models/cnn/predict", files=files("image", EXAMPLES[:1])))
                           for _ in range(3)]
            await asyncio.sleep(0.1)
            assert (await client.get("/livez")).status_code == 200
            live_after = time.perf_counter() - begun
            statuses = [response.status_code for response in await asyncio.gather(*predictions)]
            return statuses, live_after, time.perf_counter() - begun

    statuses, live_after, all_after = asyncio.run(scenario())
    assert statuses == [200, 200, 200] and slow.calls == 1
    assert live_after < 0.5 < 1.0 <= all_after  # /livez answered while the model was still loading


def test_a_failed_load_is_remembered_for_a_while(monkeypatch):
    from zoo import serve
    from zoo.serve import create_app

    failing = SlowModels(error=zoo.ModelFileError("/somewhere/cnn/model.onnx is damaged"))
    app = create_app(backend=failing.backend)

    async def three_requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.post("/v1/models/cnn/predict", files=files("image", EXAMPLES[:1])) for _ in range(3)]

    responses = asyncio.run(three_requests())
    assert [r.status_code for r in responses] == [500] * 3 and failing.calls == 1
    assert "<path>/model.onnx" in responses[0].json()["detail"] and "/somewhere" not in responses[0].text
    monkeypatch.setattr(serve, "FAILURE_MEMORY", 0.0)
    failing.backend.failures.clear()
    asyncio.run(three_requests())
    assert failing.calls == 4  # remembered for no time: every request tries again


def resident_bytes(url: str) -> float:
    return metric_samples(httpx.get(f"{url}/metrics").text)[("process_resident_memory_bytes", ())]


def test_thirty_two_clients_mixing_good_and_bad_requests(tmp_path):
    """Two rounds of 32 clients for a bounded time: every good answer equals zoo's, no 5xx, and the server's
    memory after the second round within 20 MiB of the first."""
    cnn, changer = zoo.load("cnn", device="cpu"), zoo.load("changer", device="cpu")
    expected = {path.name: cnn.predict(path).to_dict() for path in EXAMPLES}
    pair_expected = changer.predict(*PAIR).to_dict()
    truncated = EXAMPLES[0].read_bytes()[:400]
    bad_requests = [
        dict(files=[("image", ("t.jpg", truncated))]),
        dict(files=[("image", ("x.txt", b"hello"))]),
        dict(content=b"\xff\xd8 not really", headers={"Content-Type": "image/jpeg"}),
        dict(files=[("image", ("w.webp", solid_webp()))] * 5),  # 245 million pixels: over the request's budget
        dict(content=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    statuses: list[int] = []
    wrong: list[str] = []
    lock = threading.Lock()

    def client(k: int, until: float) -> None:
        rng = np.random.default_rng(k)
        with httpx.Client(timeout=60) as http:
            while time.monotonic() < until:
                kind = rng.integers(4)
                if kind == 0:
                    chosen = [EXAMPLES[i] for i in rng.integers(len(EXAMPLES), size=2)]
                    response = http.post(f"{url}/v1/models/cnn/predict", files=files("image", chosen))
                    good = response.status_code == 200 and response.json()["predictions"] == \
                        [expected[path.name] for path in chosen]
                elif kind == 1:
                    response = http.post(f"{url}/v1/models/changer/predict",
                                         files=files("a", PAIR[:1]) + files("b", PAIR[1:]))
                    good = response.status_code == 200 and response.json()["predictions"] == [pair_expected]
                else:
                    response = http.post(f"{url}/v1/models/cnn/predict", **bad_requests[rng.integers(len(bad_requests))])
                    good = 400 <= response.status_code < 500
                with lock:
                    statuses.append(response.status_code)
                    if not good:
                        wrong.append(f"{response.status_code} {response.text[:200]}")

    def round_of(seconds: float) -> None:
        until = time.monotonic() + seconds
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: client(k, until), range(32)))

    for url in start(log=tmp_path / "log"):
        round_of(12)
        first = resident_bytes(url)
        round_of(12)
        second = resident_bytes(url)
    assert statuses and not wrong, wrong[:5]
    assert not [status for status in statuses if status >= 500]
    assert second - first < 20 * 2**20, (first, second)


def test_the_form_parser_reads_what_http_clients_send_and_refuses_the_rest():
    from fastapi import HTTPException

    from zoo.serve import multipart_fields

    request = httpx.Request("POST", "http://127.0.0.1/", files=[("image", ("a.jpg", b"\r\n--x\r\nA")),
                                                                ("image", ("b.png", b""))], data={"refine": "false"})
    body, content_type = request.read(), request.headers["content-type"]
    assert multipart_fields(body, content_type) == {"refine": [(False, b"false")],
                                                    "image": [(True, b"\r\n--x\r\nA"), (True, b"")]}
    quoted = (b"preamble\r\n--b b\t\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
              b"Content-Type: image/jpeg\r\n\r\nDATA\r\n--b b--\r\nepilogue")
    assert multipart_fields(quoted, 'multipart/form-data; boundary="b b"') == {"image": [(True, b"DATA")]}
    for body, content_type in [
        (b"--b\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nDATA", "multipart/form-data; boundary=b"),
        (b"--b\r\nContent-Type: image/jpeg\r\n\r\nDATA\r\n--b--", "multipart/form-data; boundary=b"),
        (b"--b\r\nContent-Disposition: attachment\r\n\r\nDATA\r\n--b--", "multipart/form-data; boundary=b"),
        (b"--b\r\nno blank line\r\n--b--", "multipart/form-data; boundary=b"),
        (b"--b\r\n\r\n--b--", "multipart/form-data"),
    ]:
        with pytest.raises(HTTPException) as refused:
            multipart_fields(body, content_type)
        assert refused.value.status_code == 400 and "multipart" in refused.value.detail
    many = b"".join(b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x\"\r\n\r\nx\r\n"
                    for _ in range(200)) + b"--b--"
    with pytest.raises(HTTPException) as refused:
        multipart_fields(many, "multipart/form-data; boundary=b")
    assert refused.value.status_code == 413
