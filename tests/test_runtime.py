"""The zoo runtime: torch-free import, loading, devices, every input type (integrity: test_integrity.py)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import zoo

#: Single-image models; the changer's two-image API has tests of its own.
SHIPPED = [name for name in zoo.list() if len(zoo.card(name).inputs) == 1]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped single-image models")


def test_import_zoo_does_not_import_torch():
    code = "import sys, zoo; zoo.list(); print('torch' in sys.modules, 'training' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_model_names_the_available_ones():
    with pytest.raises(zoo.UnknownModelError, match=SHIPPED[0]):
        zoo.load("no-such-model")


def test_devices():
    model = zoo.load(SHIPPED[0], device="cpu")
    assert model.device == "cpu"
    assert zoo.load(SHIPPED[0]).device in ("cpu", "cuda")
    with pytest.raises(zoo.DeviceError):
        zoo.load(SHIPPED[0], device="tpu")


@pytest.mark.skipif(zoo.runtime.cuda_driver_present(), reason="this machine has an NVIDIA driver: CUDA is tried")
def test_without_a_gpu_loading_prints_nothing_and_leaves_onnxruntimes_logger_alone():
    """onnxruntime-gpu lists CUDA everywhere; without a driver zoo does not try it (which would print
    onnxruntime's errors), and it does not silence onnxruntime's default logger for the application either."""
    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    quiet = run("import zoo; print(zoo.load('cnn').device)")
    assert quiet.returncode == 0 and quiet.stdout.strip() == "cpu" and quiet.stderr == "", quiet.stderr
    import onnxruntime as ort

    if zoo.runtime.CUDA in ort.get_available_providers():  # the application's own attempt is still reported
        graph = zoo.registry.PACKAGE_MODELS / "cnn" / "model.onnx"
        loud = run(f"import onnxruntime as ort, zoo; zoo.load('cnn'); ort.InferenceSession({str(graph)!r}, "
                   "providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])")
        assert "CUDA" in loud.stderr


def test_cuda_without_a_gpu_is_a_clear_error():
    try:
        model = zoo.load(SHIPPED[0], device="cuda")
    except zoo.DeviceError as exc:
        assert "cuda" in str(exc).lower()
    else:  # a machine with a working GPU
        assert model.device == "cuda"


def test_every_input_type_gives_the_same_prediction(cifar_images):
    model = zoo.load(SHIPPED[0], device="cpu")
    path = cifar_images[0]
    rgb = np.asarray(Image.open(path).convert("RGB"))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    inputs = [path, str(path), path.read_bytes(), Image.open(path), rgb, rgba, rgb / 255.0]
    predictions = [model.predict(x) for x in inputs]
    for p in predictions[1:]:
        assert p.label == predictions[0].label
        assert abs(p.score - predictions[0].score) < 1e-3
    gray = model.predict(rgb.mean(axis=2).astype(np.uint8))
    assert gray.label in model.labels
    assert sum(predictions[0].probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_batch_equals_single_predictions(cifar_images):
    model = zoo.load(SHIPPED[0], device="cpu")
    batch = model.predict_batch(cifar_images)
    for path, prediction in zip(cifar_images, batch):
        single = model.predict(path)
        assert single.label == prediction.label
        assert single.score == pytest.approx(prediction.score, abs=1e-5)


@pytest.mark.parametrize("parallel_from_s", [0.0, float("inf")], ids=["one-image-per-thread", "chunk-per-thread"])
def test_decoding_on_worker_threads_keeps_order_and_answers(cifar_root, monkeypatch, parallel_from_s):
    # 150 items cross two chunk boundaries; both ways of splitting the decoding among the threads are taken.
    monkeypatch.setattr(zoo.model, "PARALLEL_DECODE_S", parallel_from_s)
    files = sorted((cifar_root / "test").rglob("*.jpg"))[::40][:150]
    model = zoo.load(SHIPPED[0], device="cpu")
    batch = model.predict_batch(files)
    feeds = np.concatenate([model.prepare_batch(files[k:k + 50])[model.card.inputs[0].name] for k in (0, 50, 100)])
    direct = model.predict_prepared({model.card.inputs[0].name: feeds})
    assert [p.label for p in batch] == [p.label for p in direct]
    assert [p.probs for p in batch] == [p.probs for p in direct]


def test_predict_batch_raises_the_first_bad_input_and_predict_each_goes_on(cifar_images, tmp_path):
    first_bad, second_bad = tmp_path / "first.jpg", tmp_path / "second.jpg"
    first_bad.write_bytes(b"not an image")
    second_bad.write_bytes(b"")
    items = [*cifar_images * 8, first_bad, *cifar_images, second_bad]
    model = zoo.load(SHIPPED[0], device="cpu")
    with pytest.raises(zoo.ImageError, match="first.jpg"):
        model.predict_batch(items)
    results = list(model.predict_each(items))
    assert [type(r).__name__ for r in results[len(cifar_images) * 8:]] == (
        ["ImageError"] + ["Prediction"] * len(cifar_images) + ["ImageError"])
    assert [r.label for r in results[:len(cifar_images)]] == [p.label for p in model.predict_batch(cifar_images)]


def test_predict_each_reads_a_stream_at_most_two_chunks_ahead(cifar_images):
    taken = []

    def stream():
        for index in range(10 * zoo.model.CHUNK):
            taken.append(index)
            yield cifar_images[index % len(cifar_images)]

    results = zoo.load(SHIPPED[0], device="cpu").predict_each(stream())
    next(results)
    assert len(taken) <= 2 * zoo.model.CHUNK + 1


def test_sessions_without_spinning_threads():
    from zoo.runtime import session_options

    assert session_options(spinning=False).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have"):  # not set: onnxruntime's default, spinning
        session_options().get_session_config_entry("session.intra_op.allow_spinning")


def test_large_photo_of_any_aspect_is_resized(cifar_images):
    model = zoo.load(SHIPPED[0], device="cpu")
    big = Image.open(cifar_images[0]).resize((3000, 2000))
    for image in (big, np.zeros((1000, 3, 3), np.uint8), np.zeros((1, 1, 3), np.uint8)):
        assert model.predict(image).label in model.labels


def test_wrong_number_of_images_is_an_error(cifar_images):
    model = zoo.load(SHIPPED[0], device="cpu")
    with pytest.raises(zoo.ImageError, match="takes 1 image"):
        model.predict(cifar_images[0], cifar_images[1])


def test_a_model_closes_its_threads_and_session():
    import threading

    image = zoo.EXAMPLES / "cifar10" / "cat.jpg"
    earlier = set(threading.enumerate())  # other models of the same name, loaded by other tests, have their own
    with zoo.load(SHIPPED[0], device="cpu") as model:
        expected = model.predict(image)
        assert model.predict_batch([image] * 3) == [expected] * 3
        decoders = [thread for thread in set(threading.enumerate()) - earlier
                    if thread.name.startswith(f"zoo-decode-{model.name}")]
        assert decoders and all(thread.is_alive() for thread in decoders)
    assert not any(thread.is_alive() for thread in decoders)
    for call in (lambda: model.predict(image), lambda: model.predict_batch([image])):
        with pytest.raises(zoo.ZooError, match="was closed"):
            call()
    model.close()  # twice: harmless
