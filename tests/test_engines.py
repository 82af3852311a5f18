"""The runtime choice: onnxruntime, OpenVINO and `auto` give the shipped outputs; `auto` measures once per model
and machine and keeps the outcome; providers pass through to onnxruntime; wrong choices are clear errors."""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import zoo
from export.vectors import shipped_vectors
from zoo import engines
from zoo.tasks import TASKS

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[dev]')")

SMALL = "cnn"
#: A float model and an int8 variant, each compared with its shipped test vectors in OpenVINO's f32.
COMPARED = ["cnn", "changer", "carplane-joint-int8"]
#: int8 models: OpenVINO and onnxruntime round some quantized values differently (docs/runtimes.md).
INT8_TOLERANCE = 5e-2


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models home: the shipped models still load from the package; auto's choices are kept here."""
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.delenv(engines.RUNTIME_ENV, raising=False)
    return tmp_path


def _probabilities(model: zoo.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return TASKS[model.card.task].probabilities(model.session.run(None, feeds))


@pytest.mark.parametrize("name", COMPARED)
def test_openvino_in_f32_gives_the_shipped_outputs(name, monkeypatch):
    monkeypatch.setattr(engines, "bf16_allowed", lambda card: False)
    model = zoo.load(name, runtime="openvino", threads=2)
    assert (model.runtime, model.device) == ("openvino", "cpu")
    assert "(f32)" in model.providers[0]
    feeds, outputs = shipped_vectors(name)
    expected = TASKS[model.card.task].probabilities(outputs)
    tolerance = INT8_TOLERANCE if name.endswith("-int8") else model.card.tolerance
    for got, want in zip(_probabilities(model, feeds), expected):
        np.testing.assert_allclose(got, want, atol=tolerance)
        assert (got.argmax(1) == want.argmax(1)).all()


def test_openvino_uses_bf16_only_where_the_card_allows_it(monkeypatch):
    card = zoo.card(SMALL)
    monkeypatch.setattr(engines, "bf16_allowed", lambda card: False)
    held = zoo.load(SMALL, runtime="openvino")
    monkeypatch.setattr(engines, "bf16_allowed", lambda card: True)
    free = zoo.load(SMALL, runtime="openvino")
    assert held.session.precision == "f32"
    assert free.session.precision in ("bf16", "f32")  # f32 on CPUs without bf16
    feeds, outputs = shipped_vectors(SMALL)
    # bf16 keeps the top class of the shipped vectors and moves probabilities by about 1e-2 at most.
    got, want = _probabilities(free, feeds)[0], TASKS[card.task].probabilities(outputs)[0]
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() < 5e-2


@pytest.mark.parametrize(("loss", "allowed"), [(0.0, True), (0.001, True), (0.0011, False), (-0.002, True)])
def test_bf16_is_allowed_within_a_tenth_of_a_point(loss, allowed):
    card = zoo.card(SMALL)
    metrics = {**card.metrics, "bf16": {"test_accuracy": 0.78 - loss, "reference_test_accuracy": 0.78}}
    assert engines.bf16_allowed(replace(card, metrics=metrics)) is allowed
    unmeasured = {key: value for key, value in card.metrics.items() if key != "bf16"}
    assert engines.bf16_allowed(replace(card, metrics=unmeasured)) is False


def test_the_session_runs_from_many_threads_at_once():
    model = zoo.load(SMALL, runtime="openvino")
    rng = np.random.default_rng(0)
    batches = [{"image": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)} for _ in range(16)]
    alone = [model.session.run(None, feeds)[0] for feeds in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda feeds: model.session.run(None, feeds)[0], batches))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def _verdict(runtime: str, calls: list[str]):
    def measure(folder, card, threads):
        calls.append(card.name)
        return {"runtime": runtime}
    return measure


@pytest.mark.parametrize("winner", ["openvino", "onnxruntime"])
def test_auto_measures_once_then_reads_its_choice(home, monkeypatch, winner):
    calls: list[str] = []
    monkeypatch.setattr(engines, "measure_runtimes", _verdict(winner, calls))
    first = zoo.load(SMALL, runtime="auto", device="cpu")
    second = zoo.load(SMALL, device="cpu")  # auto is the default
    assert first.runtime == second.runtime == winner
    assert calls == [SMALL]
    choices = json.loads((home / engines.CHOICES_FILE).read_text())
    assert [choice["runtime"] for choice in choices.values()] == [winner]
    assert first.predict(np.zeros((32, 32, 3), np.uint8)).label in first.labels


def test_auto_measures_again_on_another_thread_count_or_a_damaged_record(home, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(engines, "measure_runtimes", _verdict("onnxruntime", calls))
    zoo.load(SMALL, runtime="auto", threads=1)
    zoo.load(SMALL, runtime="auto", threads=2)
    assert len(calls) == 2
    (home / engines.CHOICES_FILE).write_text("{not json")
    zoo.load(SMALL, runtime="auto", threads=1)
    assert len(calls) == 3


def test_auto_runs_the_real_measurement_and_keeps_its_figures(home):
    model = zoo.load(SMALL, runtime="auto", device="cpu", threads=1)
    (choice,) = json.loads((home / engines.CHOICES_FILE).read_text()).values()
    assert choice["runtime"] == model.runtime
    assert choice["onnxruntime_ms_b1"] > 0 and choice["openvino_ips_b64"] > 0
    assert (choice["openvino_gain"] >= engines.MIN_OPENVINO_GAIN) == (model.runtime == "openvino")


def test_auto_falls_back_to_onnxruntime_where_openvino_cannot_compile(home):
    model = zoo.load("deformable-cnn", runtime="auto", device="cpu")
    assert model.runtime == "onnxruntime"
    (choice,) = json.loads((home / engines.CHOICES_FILE).read_text()).values()
    assert "DeformConv" in choice["why"]
    with pytest.raises(zoo.ModelFileError, match="runtime='onnxruntime'"):
        zoo.load("deformable-cnn", runtime="openvino")


def test_auto_keeps_onnxruntime_when_openvino_is_not_installed(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.setattr(engines, "measure_runtimes", lambda *_: pytest.fail("nothing to measure against"))
    assert zoo.load(SMALL, runtime="auto").runtime == "onnxruntime"
    with pytest.raises(zoo.DeviceError, match="OpenVINO is not installed"):
        zoo.load(SMALL, runtime="openvino")


def test_a_models_home_that_cannot_be_written_only_means_measuring_again(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ZOO_HOME", str(blocker / "home"))  # under a file: cannot be created
    calls: list[str] = []
    monkeypatch.setattr(engines, "measure_runtimes", _verdict("onnxruntime", calls))
    assert zoo.load(SMALL, runtime="auto").runtime == "onnxruntime"
    assert calls == [SMALL]


def test_the_runtime_comes_from_the_environment_when_not_named(home, monkeypatch):
    monkeypatch.setenv(engines.RUNTIME_ENV, "openvino")
    assert zoo.load(SMALL).runtime == "openvino"
    assert zoo.load(SMALL, runtime="onnxruntime").runtime == "onnxruntime"
    monkeypatch.setenv(engines.RUNTIME_ENV, "tensorflow")
    with pytest.raises(zoo.DeviceError, match=r"'tensorflow' \(from \$ZOO_RUNTIME\)"):
        zoo.load(SMALL)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runtime": "tvm"}, "unknown runtime 'tvm'"),
    ({"runtime": "openvino", "device": "cuda"}, "runs on the CPU"),
    ({"runtime": "openvino", "providers": ["CPUExecutionProvider"]}, "do not apply to runtime='openvino'"),
    ({"providers": ["CoreMLExecutionProvider"]}, r"not in this onnxruntime \(available"),
])
def test_wrong_runtime_choices_are_clear_errors(kwargs, message):
    with pytest.raises(zoo.DeviceError, match=message):
        zoo.load(SMALL, **kwargs)


@pytest.mark.skipif(engines.cuda_usable("cuda"), reason="the GPU is there: the provider starts")
def test_a_listed_provider_that_cannot_start_is_an_error_unless_the_cpu_is_accepted():
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider to fail")
    with pytest.raises(zoo.DeviceError, match="fell back to CPUExecutionProvider"):
        zoo.load(SMALL, providers=["CUDAExecutionProvider"])
    model = zoo.load(SMALL, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (model.device, model.providers) == ("cpu", ["CPUExecutionProvider"])


def test_providers_pass_through_to_onnxruntime():
    model = zoo.load(SMALL, providers=[("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})])
    assert (model.runtime, model.device, model.providers) == ("onnxruntime", "cpu", ["CPUExecutionProvider"])
    feeds, outputs = shipped_vectors(SMALL)
    np.testing.assert_allclose(model.session.run(None, feeds)[0], outputs[0], atol=model.card.tolerance)


def test_a_damaged_graph_is_refused_before_openvino_compiles_it(tmp_path, monkeypatch):
    from zoo.registry import model_dir

    folder = tmp_path / SMALL
    folder.mkdir()
    for path in model_dir(SMALL).rglob("*"):
        if path.is_file():
            target = folder / path.relative_to(model_dir(SMALL))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr(engines, "OpenVINOSession", lambda *_: pytest.fail("compiled a damaged graph"))
    with pytest.raises(zoo.ModelFileError, match="model.onnx"):
        zoo.load(str(folder), runtime="openvino")


def test_zoo_serve_answers_on_the_runtime_it_is_given():
    """The API's batches run on OpenVINO when the server is started with runtime="openvino", with the labels
    onnxruntime gives (the changer: concurrent pairs, some refined and some not, batched together)."""
    import asyncio

    import httpx

    from zoo.serve import LocalModels, create_app

    pair = sorted((zoo.EXAMPLES / "pair").glob("*.jpg"))
    backend = LocalModels(device="cpu", runtime="openvino")
    app = create_app(backend=backend)

    async def scenario() -> list[dict]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            def post(refine: str):
                return client.post("/v1/models/changer/predict", data={"refine": refine},
                                   files=[("a", pair[0].read_bytes()), ("b", pair[1].read_bytes())])
            answers = await asyncio.gather(*(post(refine) for refine in ("true", "false", "true")))
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        return [answer.json()["predictions"][0] for answer in answers]

    served = asyncio.run(scenario())
    assert asyncio.run(backend.model("changer")).runtime == "openvino"
    reference = zoo.load("changer", runtime="onnxruntime")
    for answer, refine in zip(served, (True, False, True)):
        expected = reference.predict(*pair, refine=refine)
        assert answer["label"] == expected.label
        assert answer["params"]["angle"] == pytest.approx(expected.params["angle"], abs=0.5 if not refine else 0.05)
