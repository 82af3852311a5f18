"""zoo on a local Ray cluster kept on the loopback: Ray Data's batch predictor gives exactly zoo's answers on 256
CIFAR-10 test JPEGs (as bytes and as decoded images) and on the changer's pairs, an unreadable file becomes its
row's error; `zoo serve --ray --replicas 2` answers HTTP requests with zoo's predictions."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import zoo

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
zoo_ray = pytest.importorskip("zoo.ray")
from test_serve import free_port, wait_until_healthy  # noqa: E402
from test_serve_operations import solid_webp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CIFAR_TEST = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "test"
PAIRS = sorted((ROOT / "zoo" / "examples" / "pair").glob("*.jpg"))
pytestmark = [pytest.mark.skipif(not CIFAR_TEST.is_dir(), reason=f"the CIFAR-10 JPEGs are not at {CIFAR_TEST}"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    # conftest keeps every Ray process on 127.0.0.1 (zoo.loopback.RAY_LOOPBACK_ENVIRONMENT); checked below.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def photos() -> list[str]:
    files = sorted(map(str, CIFAR_TEST.rglob("*.jpg")))
    return files[:: len(files) // 256][:256]


def by_path(rows: list[dict]) -> dict[str, dict]:
    return {row["path"]: row for row in rows}


def test_ray_data_on_bytes_gives_zoos_labels(cluster, photos):
    expected = zoo.load("cnn", device="cpu").predict_batch(photos)
    rows = by_path(ray.data.read_binary_files(photos, include_paths=True).map_batches(
        zoo_ray.Predictor, fn_constructor_kwargs={"name": "cnn", "device": "cpu"}, batch_size=64,
        compute=ray.data.ActorPoolStrategy(size=1)).take_all())
    assert len(rows) == 256
    assert [rows[path]["label"] for path in photos] == [p.label for p in expected]
    np.testing.assert_allclose([rows[path]["score"] for path in photos], [p.score for p in expected], rtol=1e-6)
    assert all(rows[path]["error"] == "" for path in photos)


def test_ray_data_on_decoded_images_gives_zoos_labels(cluster, photos):
    # read_images decodes with its own reader; CIFAR images are already the model's 32x32, so nothing is resized.
    expected = zoo.load("cnn", device="cpu").predict_batch(photos[:64])
    rows = by_path(ray.data.read_images(photos[:64], include_paths=True, mode="RGB").map_batches(
        zoo_ray.Predictor, fn_constructor_kwargs={"name": "cnn", "device": "cpu"}, batch_size=32,
        compute=ray.data.ActorPoolStrategy(size=1)).take_all())
    assert [rows[path]["label"] for path in photos[:64]] == [p.label for p in expected]


def test_ray_data_pairs_and_an_unreadable_file(cluster, photos):
    pairs = [(photos[k], photos[k + 1]) for k in range(0, 16, 2)]
    items = [{"a": Path(a).read_bytes(), "b": Path(b).read_bytes(), "pair": k} for k, (a, b) in enumerate(pairs)]
    items.append({"a": b"not an image", "b": Path(photos[0]).read_bytes(), "pair": len(pairs)})
    rows = sorted(ray.data.from_items(items).map_batches(
        zoo_ray.Predictor, fn_constructor_kwargs={"name": "changer", "device": "cpu"}, batch_size=64,
        compute=ray.data.ActorPoolStrategy(size=1)).take_all(), key=lambda row: row["pair"])
    expected = zoo.load("changer", device="cpu").predict_batch(pairs)
    for row, prediction in zip(rows, expected):
        assert row["label"] == prediction.label and row["error"] == ""
        assert {name: row[f"change_{name}"] for name in prediction.changes} == pytest.approx(prediction.changes, abs=1e-6)
        assert {name: row[f"param_{name}"] for name in prediction.params} == pytest.approx(prediction.params, abs=1e-6)
    for row, prediction in zip(rows, expected):
        assert row["refined"] == prediction.refined and row["alignment_score"] == pytest.approx(prediction.alignment_score)
    broken = rows[-1]
    assert broken["label"] == "" and np.isnan(broken["score"]) and "not a readable image" in broken["error"]


def test_the_predictors_refine_kwarg_gives_the_networks_estimate():
    batch = {"a": np.array([PAIRS[0].read_bytes()], dtype=object), "b": np.array([PAIRS[1].read_bytes()], dtype=object)}
    plain = zoo_ray.Predictor("changer", device="cpu", refine=False)(batch)
    expected = zoo.load("changer", device="cpu").predict(*PAIRS, refine=False)
    assert "refined" not in plain and plain["label"][0] == expected.label
    assert {name: plain[f"param_{name}"][0] for name in expected.params} == expected.params
    refined = zoo_ray.Predictor("changer", device="cpu")(batch)
    assert refined["refined"][0] and abs(refined["param_angle"][0] - 20) < 0.1


def test_ray_data_without_an_image_column_says_which_to_give(cluster):
    predictor = zoo_ray.Predictor("cnn", device="cpu")
    with pytest.raises(zoo.ZooError, match="'image' or 'bytes'"):
        predictor({"path": np.array(["x.jpg"])})


def test_serve_on_ray_with_two_replicas_answers_like_zoo(cluster, photos, tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    address = ray.get_runtime_context().gcs_address
    with log.open("wb") as output:  # a file, not a pipe: Ray logs more than a pipe holds unread
        server = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", "--ray", "--replicas", "2", "--address",
                                   address, "--port", str(port), "--device", "cpu", "--preload", "cnn",
                                   "--max-batch", "16"], cwd=ROOT, stdout=output,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, seconds=120, log=log)
        for _ in range(300):  # /healthz answers from the first replica up
            if serve.status().applications["zoo"].deployments["ZooDeployment"].replica_states == {"RUNNING": 2}:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"not 2 replicas running: {serve.status().applications['zoo'].deployments}")
        model = zoo.load("cnn", device="cpu")
        for start in range(0, 64, 16):
            batch = photos[start:start + 16]
            answer = httpx.post(f"{url}/v1/models/cnn/predict", timeout=60,
                                files=[("image", (Path(p).name, Path(p).read_bytes())) for p in batch])
            assert answer.status_code == 200, answer.text
            expected = model.predict_batch(batch)
            got = answer.json()["predictions"]
            assert [p["label"] for p in got] == [p.label for p in expected]
            np.testing.assert_allclose([p["score"] for p in got], [p.score for p in expected], rtol=1e-6)
        pair = httpx.post(f"{url}/v1/models/changer/predict", timeout=60,
                          files=[("a", ("a.jpg", PAIRS[0].read_bytes())), ("b", ("b.jpg", PAIRS[1].read_bytes()))])
        assert pair.json()["predictions"][0]["label"] == zoo.load("changer", device="cpu").predict(*PAIRS[:2]).label
        bad = httpx.post(f"{url}/v1/models/cnn/predict", files=[("image", ("x.jpg", b"not an image"))], timeout=60)
        assert bad.status_code == 422 and "not a readable image" in bad.json()["detail"]
        assert httpx.get(f"{url}/v1/models/no-such-model").status_code == 404
        # zoo serve's own rules and routes, through Ray's proxy.
        assert httpx.get(f"{url}/v1/models", headers={"Host": "rebound.example"}).status_code == 400
        raw = httpx.post(f"{url}/v1/models/cnn/predict", content=Path(photos[0]).read_bytes(),
                         headers={"Content-Type": "image/jpeg"}, timeout=60)
        assert raw.json()["predictions"][0]["label"] == model.predict(photos[0]).label
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready", "models": ["cnn"]}
        assert 'zoo_images_total{model="cnn"}' in httpx.get(f"{url}/metrics").text
        huge = httpx.post(f"{url}/v1/models/cnn/predict", timeout=60, files=[("image", ("w.webp", solid_webp()))] * 5)
        assert huge.status_code == 413 and "ZOO_MAX_REQUEST_PIXELS" in huge.json()["detail"]
    finally:
        server.terminate()
        server.wait(30)
        serve.shutdown()
