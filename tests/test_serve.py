"""`zoo serve` started as a subprocess on a free loopback port and called with a real HTTP client: every route,
the changer, auth on and off, the bad-input corpus over HTTP (4xx with zoo's message, never a 500), and
concurrent clients whose answers all equal `zoo.load(...).predict`."""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
from test_bad_input import CASES

import zoo

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "zoo" / "examples" / "cifar10").glob("*.jpg"))
PAIR = sorted((ROOT / "zoo" / "examples" / "pair").glob("*.jpg"))[:2]
MAX_REQUEST_BYTES = 2 * 2**20
pytestmark = [pytest.mark.skipif(not {"cnn", "changer"} <= set(zoo.list()), reason="cnn and changer are not shipped"),
              pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, seconds: float, log: Path | None = None) -> None:
    """Wait until the server at `url` answers /healthz; fail with its output (its stdout pipe, or `log`) if it
    exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
        if server.poll() is not None:
            break
    if log is not None:
        output = log.read_text(errors="replace")
    else:
        output = server.stdout.read1().decode() if server.stdout and server.poll() is not None else ""
    raise AssertionError(f"the server did not answer /healthz within {seconds} s: {output[-3000:]}")


def start(*options: str, env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[str]:
    """`zoo serve` on a free loopback port with `options`, its output in `log` (default: a temporary file)."""
    port = free_port()
    env = {**os.environ, "ZOO_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES), **(env or {})}
    log = log or Path(tempfile.mkstemp(prefix="zoo-serve-", suffix=".log")[1])
    with open(log, "wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", "--port", str(port), "--device", "cpu",
                                   *options], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, seconds=30, log=log)
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    yield from start()


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    yield from start("--api-key", "s3cret")


@pytest.fixture(scope="module")
def damaged_home(tmp_path_factory) -> Path:
    """A ZOO_HOME folder: `cnn` copied with its weights cut short, `broken` whose card.json is not JSON, and
    `edited`, a copy of cnn whose card was edited."""
    home = tmp_path_factory.mktemp("zoo-home")
    shutil.copytree(zoo.registry.PACKAGE_MODELS / "cnn", home / "cnn")
    weights = home / "cnn" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    (home / "broken").mkdir()
    (home / "broken" / "card.json").write_text("{not json")
    shutil.copytree(zoo.registry.PACKAGE_MODELS / "cnn", home / "edited")
    card = home / "edited" / "card.json"
    card.write_text(card.read_text().replace('"labels": [', '"labels": [ ', 1))
    return home


@pytest.fixture(scope="module")
def damaged_url(damaged_home) -> Iterator[str]:
    yield from start(env={"ZOO_HOME": str(damaged_home)})


def assert_path_free(text: str, *folders: Path) -> None:
    """No folder of this machine (the checkout, the home directory, `folders`) in `text`."""
    for folder in (ROOT, Path.home(), zoo.models_root(), *folders):
        assert str(folder) not in text and str(folder.resolve()) not in text, (folder, text)


def files(field: str, paths: list[Path]) -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (path.name, path.read_bytes())) for path in paths]


def test_health_models_card_and_docs(url):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    listed = httpx.get(f"{url}/v1/models").json()["models"]
    assert [m["name"] for m in listed] == zoo.list()
    assert httpx.get(f"{url}/v1/models/cnn").json() == zoo.card("cnn").to_dict()
    assert httpx.get(f"{url}/docs").status_code == 200
    assert "/v1/models/{name}/predict" in httpx.get(f"{url}/openapi.json").json()["paths"]


def test_predictions_equal_zoos(url):
    answer = httpx.post(f"{url}/v1/models/cnn/predict", files=files("image", EXAMPLES)).json()["predictions"]
    assert answer == [p.to_dict() for p in zoo.load("cnn", device="cpu").predict_batch(EXAMPLES)]
    pair = files("a", PAIR[:1]) + files("b", PAIR[1:])
    answer = httpx.post(f"{url}/v1/models/changer/predict", files=pair).json()["predictions"]
    assert answer == [zoo.load("changer", device="cpu").predict(*PAIR).to_dict()]


def test_the_refine_field_turns_the_changers_alignment_off(url):
    pair = files("a", PAIR[:1]) + files("b", PAIR[1:])
    model = zoo.load("changer", device="cpu")
    refined = httpx.post(f"{url}/v1/models/changer/predict", files=pair).json()["predictions"][0]
    assert refined["refined"] is True and refined["alignment_score"] > 0.99
    for how in ({"data": {"refine": "false"}}, {"params": {"refine": "0"}}):
        plain = httpx.post(f"{url}/v1/models/changer/predict", files=pair, **how).json()["predictions"]
        assert plain == [model.predict(*PAIR, refine=False).to_dict()]
    bad = httpx.post(f"{url}/v1/models/changer/predict", files=pair, data={"refine": "maybe"})
    assert bad.status_code == 400 and "refine" in bad.json()["detail"]


def test_sixteen_concurrent_clients_get_zoos_answers(url):
    expected = {path.name: zoo.load("cnn", device="cpu").predict(path).to_dict() for path in EXAMPLES}

    def client(k: int) -> list[bool]:
        with httpx.Client(base_url=url, timeout=60) as http:
            chosen = [EXAMPLES[(k + j) % len(EXAMPLES)] for j in range(3)]
            got = http.post("/v1/models/cnn/predict", files=files("image", chosen)).json()["predictions"]
            return [answer == expected[path.name] for answer, path in zip(got, chosen)]

    with ThreadPoolExecutor(16) as pool:
        results = [ok for oks in pool.map(client, range(16)) for ok in oks]
    assert len(results) == 48 and all(results)


def uploadable_cases(folder: Path) -> Iterator[tuple[str, object, bytes]]:
    """The bad-input corpus's cases that are files (with zoo's default limits), as bytes to upload."""
    for name, case in sorted(CASES.items()):
        if case.limits:
            continue
        try:
            made = case.make(folder)
        except OSError:
            continue
        if isinstance(made, Path) and made.is_file():
            yield name, case, made.read_bytes()


def test_the_bad_input_corpus_gets_4xx_with_zoos_message_over_http(url, tmp_path):
    model = zoo.load("cnn", device="cpu")
    tried = 0
    with httpx.Client(base_url=url, timeout=60) as http:
        for name, case, data in uploadable_cases(tmp_path):
            response = http.post("/v1/models/cnn/predict", files=[("image", ("upload", data))])
            tried += 1
            try:  # what zoo itself says of the same bytes
                expected = {"predictions": [model.predict(data).to_dict()]}
            except zoo.ZooError as exc:
                assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
                assert response.json() == {"detail": str(exc)}, name
            else:
                assert response.status_code == 200 and response.json() == expected, (name, response.text)
    assert tried >= 30


@pytest.mark.parametrize("request_files, status, message", [
    ([], 415, "multipart/form-data"),
    ([("other", ("x.jpg", b"x"))], 400, "multipart file field"),
    ([("image", ("big.png", b"\0" * (MAX_REQUEST_BYTES + 1)))], 413, "ZOO_MAX_REQUEST_BYTES"),
    ([("image", ("x.jpg", EXAMPLES[0].read_bytes()))] * 65, 413, "at most 64"),
    ([("image", ("x.jpg", EXAMPLES[0].read_bytes()))] * 129, 413, "at most 64"),
    ([("a", ("x.jpg", PAIR[0].read_bytes()))], 400, "as many"),
])
def test_malformed_requests_say_why(url, request_files, status, message):
    name = "changer" if request_files and request_files[0][0] == "a" else "cnn"
    response = httpx.post(f"{url}/v1/models/{name}/predict", files=request_files or None,
                          data=None if request_files else {"x": "1"})
    assert response.status_code == status and message in response.json()["detail"]


def raw_exchange(url: str, head: bytes, body_parts: Iterator[bytes] = iter(()), seconds: float = 15,
                 pause: float = 0) -> bytes:
    """Send `head` and then `body_parts` (`pause` seconds apart) over one socket, stopping when the server answers
    or closes it, and read the answer (for at most `seconds`)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=seconds) as connection:
        try:
            connection.sendall(head)
            for part in body_parts:
                if select.select([connection], [], [], pause)[0]:
                    break  # the server answered (or closed): send no more
                connection.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer, deadline = b"", time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = connection.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not data:
                break
            answer += data
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                break
        return answer


def test_a_chunked_body_over_the_cap_is_refused_while_it_is_read(url):
    head = (b"POST /v1/models/cnn/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    part_head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n\r\n'
    chunk = b"\0" * 65536
    parts = (b"%x\r\n%s\r\n" % (len(data), data)
             for data in [part_head, *[chunk] * (MAX_REQUEST_BYTES // len(chunk) + 2)])
    answer = raw_exchange(url, head, parts)  # the body never ends: only a refusal while reading answers it
    assert answer.startswith(b"HTTP/1.1 413") and b"ZOO_MAX_REQUEST_BYTES" in answer, answer[:300]


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    yield from start(env={"ZOO_READ_TIMEOUT": "1", "ZOO_ALLOWED_HOSTS": "127.0.0.1,zoo.internal"})


def test_a_client_that_sends_its_headers_byte_by_byte_is_cut_off(slow_url):
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n"
    answer = raw_exchange(slow_url, b"", (bytes([byte]) for byte in head), seconds=5, pause=0.05)
    assert answer.startswith(b"HTTP/1.1 408") and b"ZOO_READ_TIMEOUT" in answer, answer[:300]


def test_a_client_that_sends_its_body_byte_by_byte_is_cut_off(slow_url):
    head = (b"POST /v1/models/cnn/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="x"\r\n\r\n')
    answer = raw_exchange(slow_url, head, (b"\0" for _ in range(60)), seconds=5, pause=0.05)
    assert answer.startswith(b"HTTP/1.1 408") and b"ZOO_READ_TIMEOUT" in answer, answer[:300]


def test_on_the_loopback_only_its_host_names_are_answered(url, slow_url):
    port = url.rpartition(":")[2]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert httpx.get(f"{url}/v1/models", headers={"Host": host}).status_code == 200, host
    for host in (f"rebound.example:{port}", "rebound.example", "127.0.0.1.rebound.example"):
        refused = httpx.get(f"{url}/v1/models", headers={"Host": host})
        assert refused.status_code == 400 and "ZOO_ALLOWED_HOSTS" in refused.json()["detail"], host
    assert httpx.get(f"{slow_url}/v1/models", headers={"Host": "zoo.internal:80"}).status_code == 200
    assert httpx.get(f"{slow_url}/v1/models", headers={"Host": "localhost"}).status_code == 400


def test_an_unknown_model_is_404(url):
    response = httpx.post(f"{url}/v1/models/no-such-model/predict", files=files("image", EXAMPLES[:1]))
    assert response.status_code == 404 and "no model named" in response.json()["detail"]


def test_error_answers_carry_no_paths_of_the_server(url, damaged_url, damaged_home):
    unknown = httpx.post(f"{url}/v1/models/no-such-model/predict", files=files("image", EXAMPLES[:1]))
    assert unknown.status_code == 404
    assert_path_free(unknown.text)
    damaged = httpx.post(f"{damaged_url}/v1/models/cnn/predict", files=files("image", EXAMPLES[:1]))
    assert damaged.status_code == 500 and "model.safetensors" in damaged.json()["detail"], damaged.text
    assert_path_free(damaged.text, damaged_home)


def test_a_damaged_model_is_listed_as_unavailable_and_the_others_as_usual(damaged_url, damaged_home):
    response = httpx.get(f"{damaged_url}/v1/models")
    assert response.status_code == 200, response.text
    listed = {entry["name"]: entry for entry in response.json()["models"]}
    assert set(zoo.list()) | {"broken", "edited"} <= set(listed)
    broken = listed.pop("broken")
    assert broken["available"] is False and "card.json" in broken["reason"]
    assert_path_free(broken["reason"], damaged_home)
    assert all(entry["available"] and entry["labels"] for entry in listed.values())


def test_a_card_is_served_only_once_checked(damaged_url, damaged_home):
    assert httpx.get(f"{damaged_url}/v1/models/changer").json() == zoo.card("changer").to_dict()
    for name in ("edited", "broken", "cnn"):  # an edited card, one that is not JSON, weights cut short
        response = httpx.get(f"{damaged_url}/v1/models/{name}")
        assert response.status_code >= 400 and "labels" not in response.json(), (name, response.text)
        assert_path_free(response.text, damaged_home)
    assert "card.json" in httpx.get(f"{damaged_url}/v1/models/edited").json()["detail"]


def test_the_api_key_is_required_when_set(keyed_url):
    assert httpx.get(f"{keyed_url}/healthz").status_code == 200
    assert httpx.head(f"{keyed_url}/healthz").status_code == 200
    for scheme in ("bearer", "BEARER", "Bearer"):  # the scheme is case-insensitive
        assert httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
    assert httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
    assert httpx.get(f"{keyed_url}/v1/models").status_code == 401
    assert httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    good = httpx.get(f"{keyed_url}/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert good.status_code == 200 and good.json()["models"]


def test_listening_beyond_the_loopback_needs_a_key_or_no_auth():
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "ZOO_API_KEY"})
    assert done.returncode == 1 and "needs an API key" in done.stderr


def test_beside_other_pages_the_key_guards_only_the_apis_paths():
    from fastapi.testclient import TestClient

    from zoo.serve import API_PATHS, create_app

    client = TestClient(create_app("s3cret", guarded=API_PATHS))
    assert client.get("/v1/models").status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/a-page-of-the-demo").status_code == 404  # reaches the app: not refused by the guard
    assert client.get("/healthz").status_code == 200
