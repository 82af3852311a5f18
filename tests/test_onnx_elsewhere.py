"""Every model as one self-contained ONNX file, run with no zoo at all, from every way it is installed.

The file is the one each model's README tells users to take (`zoo export-onnx NAME FILE`, `--portable`
where the graph has a portable form). It is written from three layouts: (a) this checkout, (b) a
non-editable install of the built wheel made by `uv pip install` (uv's default link mode: files
hard-linked from its cache), (c) a copy laid out like the Hugging Face Hub cache (every file a symbolic
link into a blobs folder). From each, the file must pass the onnx checker, reproduce its test vectors
in plain onnxruntime and in OpenVINO, give zoo's labels on real test images and, for the int8
variants, keep its test accuracy in OpenVINO. The README's example runs as written.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image, ImageOps

import zoo
from bench.runtimes import predicted, probabilities, runners, shipped_vectors
from zoo.cli import main as zoo_main
from zoo.files import PORTABLE_GRAPH_FILE
from zoo.registry import PACKAGE_MODELS
from zoo.runtime import sha256_file

ROOT = Path(__file__).resolve().parents[1]
MODELS = zoo.list()
SHIPPED_ROOT = PACKAGE_MODELS
LAYOUTS = ("checkout", "uv-install", "hub-cache")
#: Largest probability difference from the shipped test vectors. An int8 graph's integer kernels round each
#: layer their own way: on a vector it scores 0.63, carplane-linear-int8 moves by 3.7e-2 in OpenVINO and by
#: 4.0e-2 in onnxruntime itself when it reads the Q/DQ pairs as the standard's float operations.
PROBABILITY_TOLERANCE = {"float": 1e-4, "int8": 5e-2}
#: The changer's `params` output (shifts as fractions of the side, the angle in degrees, the scale): the same
#: numbers in every runtime, up to float32 rounding (measured in OpenVINO: 1e-5 on angles up to 28 degrees).
PARAMS_TOLERANCE = 1e-3
#: Points of test accuracy an int8 variant may lose in OpenVINO against onnxruntime.
INT8_RUNTIME_GAP = 0.005
LABEL_IMAGES = 64
pytestmark = pytest.mark.skipif(not MODELS, reason="no shipped models")


def runtime_missing(module: str, why: str) -> None:
    """Fail (not skip) when a runtime the proof needs is not installed: a silent skip would prove nothing."""
    pytest.fail(f"{module} is not installed, so {why} cannot be checked; install the project with "
                f'pip install -e ".[all]" (its dev extra brings {module}).')


def openvino_core():
    try:
        import openvino
    except ImportError:
        runtime_missing("openvino", "the files in OpenVINO")
    return openvino.Core()


def is_portable_form(name: str) -> bool:
    """Whether the README tells users to take the `--portable` form (the graph has one)."""
    return PORTABLE_GRAPH_FILE in zoo.card(name).files


def quantized(name: str) -> bool:
    return name.endswith("-int8")


def export_command(name: str, out: Path) -> list[str]:
    return ["export-onnx", name, str(out), *(["--portable"] if is_portable_form(name) else [])]


#: Characters of a failed command's stdout and stderr that its failure message shows (each, from the end).
OUTPUT_TAIL = 4000


def run_checked(command: list, **kwargs) -> subprocess.CompletedProcess:
    """Run `command` (text output, captured). On a non-zero exit the test fails with the command, its working
    folder, its exit code and the tail of its stdout and stderr, which `check=True` would have hidden."""
    command = [str(part) for part in command]
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = lambda text: text[-OUTPUT_TAIL:].rstrip() or "(nothing)"  # noqa: E731
        pytest.fail(f"{shlex.join(command)}\n(in {kwargs.get('cwd') or os.getcwd()}) exited with {done.returncode}\n"
                    f"--- stdout, last {OUTPUT_TAIL} characters ---\n{tail(done.stdout)}\n"
                    f"--- stderr, last {OUTPUT_TAIL} characters ---\n{tail(done.stderr)}", pytrace=False)
    return done


def running_site_packages() -> list[str]:
    """The site-packages folders of the interpreter running the tests: a virtual environment's own (and, where it
    was made with --system-site-packages, its base interpreter's), or the base interpreter's and the user's."""
    folders = [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


# --- the three layouts --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def uv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment where the built wheel was installed by `uv pip install` (no editable install)."""
    uv = shutil.which("uv")
    if uv is None:
        runtime_missing("uv", "a uv install of the wheel")
    work = tmp_path_factory.mktemp("uv")
    # The release as the project builds it: the wheel, and the model files it does not embed, which the installed
    # zoo fetches from this folder (ZOO_MODELS_URL, `installed_env`).
    run_checked([sys.executable, "-m", "export", "release", work / "dist"], cwd=ROOT)
    wheel = next((work / "dist").glob("*.whl"))  # the one wheel built, whatever the distribution's name
    run_checked([uv, "venv", "-q", "--python", sys.executable, work / "venv"])
    python = work / "venv" / "bin" / "python"
    # zoo comes from the wheel; its dependencies (onnxruntime, numpy, Pillow) are reused from the environment
    # running the tests, with no network. Not --system-site-packages: where the tests run in a virtual
    # environment, the "system" is its base interpreter, which has none of them. A .pth file in the new
    # environment appends the running one's site-packages folders to sys.path, after the new environment's own,
    # so the wheel's zoo comes first. Plain folder lines: the .pth files in those folders (among them an editable
    # install of zoo) are not read.
    inner = run_checked([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=work).stdout
    pth = Path(inner.strip()) / "zoo_tests_running_environment.pth"
    pth.write_text("".join(f"{folder}\n" for folder in running_site_packages()))
    env = {**os.environ, "UV_CACHE_DIR": str(work / "uv-cache")}  # beside the venv: one filesystem, so hard links
    run_checked([uv, "pip", "install", "-q", "--offline", "--no-deps", "--python", python, wheel], env=env)
    # Run outside the checkout: `python -c` puts the working folder first on sys.path.
    where = run_checked([python, "-c", "import zoo.registry; print(zoo.registry.PACKAGE_MODELS)"], cwd=work,
                        env=installed_env(python))
    installed = Path(where.stdout.strip())
    assert str(installed).startswith(str(work / "venv")), f"zoo in the uv venv resolves to {installed}, not the wheel"
    weights = installed / "cnn" / "model.safetensors"
    assert weights.stat().st_nlink > 1, f"{weights} is not hard-linked from uv's cache: not uv's default layout"
    return python


def _without_zoo_home() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "ZOO_HOME"}


def installed_env(python: Path) -> dict[str, str]:
    """The environment of the uv install's commands: models it does not embed come from the release folder beside
    it, into a models home of its own."""
    work = python.parents[2]
    return {**_without_zoo_home(), "ZOO_HOME": str(work / "home"), "ZOO_MODELS_URL": str(work / "dist")}


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models laid out like the Hub cache: snapshots/<rev>/<name>/<file> -> ../../blobs/<sha256>."""
    cache = tmp_path_factory.mktemp("hub") / "models--zoo"
    snapshot = cache / "snapshots" / "main"
    for name in MODELS:
        source = SHIPPED_ROOT / name
        for path in (p for p in source.rglob("*") if p.is_file()):
            blob = cache / "blobs" / sha256_file(path)
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                shutil.copyfile(path, blob)
            link = snapshot / name / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def write_taken_file(layout: str, name: str, out: Path, request: pytest.FixtureRequest,
                     monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the README says to take, written by zoo as installed in `layout`."""
    target = out / f"{name}.onnx"
    if layout == "uv-install":
        python = request.getfixturevalue("uv_python")
        zoo_script = python.parent / "zoo"
        run_checked([zoo_script, *export_command(name, target)], env=installed_env(python), cwd=python.parent)
        return target
    if layout == "hub-cache":
        monkeypatch.setenv("ZOO_HOME", str(request.getfixturevalue("hub_root")))
        assert (zoo.models_root() / name / "model.onnx").is_symlink()
    else:
        monkeypatch.delenv("ZOO_HOME", raising=False)
    return zoo.save_onnx(name, target, portable=is_portable_form(name))


def zoo_labels(layout: str, name: str, inputs: list[tuple[Path, ...]], request: pytest.FixtureRequest) -> list[str]:
    """zoo.load(name).predict's labels on `inputs`, with zoo as installed in `layout`."""
    if layout != "uv-install":  # ZOO_HOME already points where write_taken_file wrote from
        model = zoo.load(name, device="cpu")
        return [p.label for p in model.predict_batch([i if len(i) > 1 else i[0] for i in inputs])]
    script = ("import json, sys, zoo\n"
              "items = json.loads(sys.argv[2])\n"
              "model = zoo.load(sys.argv[1], device='cpu')\n"
              "print(json.dumps([p.label for p in model.predict_batch([i if len(i) > 1 else i[0] for i in items])]))")
    python = request.getfixturevalue("uv_python")
    done = run_checked([python, "-c", script, name, json.dumps([[str(p) for p in item] for item in inputs])],
                       env=installed_env(python), cwd=python.parent)
    return json.loads(done.stdout)


# --- inputs -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def label_inputs(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[tuple[Path, ...]]]:
    """Real test images: 64 CIFAR-10 test JPEGs (8 of each of 8 classes), and 64 pairs of one of them and a
    view of it shifted, turned and zoomed, for the changer. Keyed by the number of inputs a model takes."""
    classes = sorted(os.listdir(cifar_root / "test"))
    singles = [path for c in classes[:8] for path in sorted((cifar_root / "test" / c).iterdir())[:LABEL_IMAGES // 8]]
    views = tmp_path_factory.mktemp("views")
    pairs = []
    for k, path in enumerate(singles):
        image = Image.open(path).convert("RGB").resize((96, 96), Image.Resampling.BICUBIC)
        moved = image.rotate(12 * (k % 3), resample=Image.Resampling.BILINEAR, translate=(3 * (k % 2), 0))
        moved.save(views / f"{k}.png")
        pairs.append((path, views / f"{k}.png"))
    return {1: [(path,) for path in singles], 2: pairs}


def documented_input(path: Path, height: int, width: int) -> np.ndarray:
    """An image as the model READMEs say to make the input: upright RGB, cover the size bilinearly, cut the centre."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    return np.asarray(ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR), dtype=np.uint8)


@pytest.fixture(scope="module")
def int8_test_split() -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Each int8 variant's whole test split (feeds, labels), loaded once."""
    from export.quantize import labelled_inputs

    return {name: labelled_inputs(zoo.card(name), "test", None, seed=0) for name in MODELS if quantized(name)}


# --- the proof ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_taken_file_runs_everywhere(layout, name, tmp_path, request, monkeypatch, label_inputs, int8_test_split):
    path = write_taken_file(layout, name, tmp_path, request, monkeypatch)
    where = f"{name} [{layout}]"

    # 1. the onnx package reads and fully checks it; nothing points outside the file.
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer), where
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    card = zoo.card(name)
    spec = card.inputs[0]
    assert json.loads(meta["labels"]) == list(card.labels), where
    assert json.loads(meta["input"]) == {"height": spec.height, "width": spec.width, "layout": "NHWC",
                                         "dtype": "uint8", "resize": spec.resize}, where

    # 2. the shipped test vectors, in plain onnxruntime and in OpenVINO.
    runs = runners(path, openvino_default=False)
    feeds, expected = shipped_vectors(name)
    tolerance = PROBABILITY_TOLERANCE["int8" if quantized(name) else "float"]
    for runtime, run in runs.items():
        got = run(feeds)
        for k, (mine, theirs) in enumerate(zip(probabilities(card.task, got), probabilities(card.task, expected))):
            gap = float(np.abs(mine - theirs).max())
            assert gap <= tolerance, f"{where} in {runtime}: output {k} probabilities differ by {gap:.2e} > {tolerance}"
            assert (mine.argmax(1) == theirs.argmax(1)).all(), f"{where} in {runtime}: output {k} top class differs"
        if "params" in card.outputs:
            index = list(card.outputs).index("params")
            gap = float(np.abs(got[index] - expected[index]).max())
            assert gap <= PARAMS_TOLERANCE, f"{where} in {runtime}: params differ by {gap:.2e} > {PARAMS_TOLERANCE}"

    # 3. zoo's labels on real test images, from the file through the README's preprocessing.
    inputs = label_inputs[len(card.inputs)]
    documented = {s.name: np.stack([documented_input(item[k], s.height, s.width) for item in inputs])
                  for k, s in enumerate(card.inputs)}
    plain = [card.labels[i] for i in predicted(runs["onnxruntime"], documented)]
    assert plain == zoo_labels(layout, name, inputs, request), f"{where}: onnxruntime on the file disagrees with zoo"

    # 4. an int8 variant keeps its test accuracy in OpenVINO.
    if quantized(name):
        split, truth = int8_test_split[name]
        accuracy = {runtime: float((predicted(run, split) == truth).mean()) for runtime, run in runs.items()}
        assert accuracy["onnxruntime"] == pytest.approx(card.metrics["test_accuracy"], abs=1e-9), where
        assert accuracy["onnxruntime"] - accuracy["openvino f32"] <= INT8_RUNTIME_GAP, \
            f"{where} in openvino: test accuracy {accuracy['openvino f32']:.2%} against onnxruntime's {accuracy['onnxruntime']:.2%}"


#: Models the onnx reference evaluator cannot run, and why.
REFERENCE_UNSUPPORTED = {
    "deformable-cnn": "its portable form uses GridSample with mode 'bilinear' (opset 16-19), which onnx's reference "
                      "evaluator does not implement (it knows opset 20's 'linear'); its DeformConv kernel there is "
                      "pure Python and ran over ten minutes on the eight test vectors",
}


@pytest.mark.parametrize("name", [name for name in MODELS if name not in REFERENCE_UNSUPPORTED])
def test_reference_evaluator_reads_the_standard_the_same(name, tmp_path, monkeypatch):
    """onnx.reference, the runtime-independent reading of the standard, reproduces the test vectors."""
    from onnx.reference import ReferenceEvaluator

    monkeypatch.delenv("ZOO_HOME", raising=False)
    path = zoo.save_onnx(name, tmp_path / f"{name}.onnx")
    feeds, expected = shipped_vectors(name)
    feeds = {key: value[:2] for key, value in feeds.items()}  # numpy kernels: two inputs are enough
    got = ReferenceEvaluator(str(path)).run(None, feeds)
    tolerance = PROBABILITY_TOLERANCE["int8" if quantized(name) else "float"]
    task = zoo.card(name).task
    for k, (mine, theirs) in enumerate(zip(probabilities(task, got), probabilities(task, [e[:2] for e in expected]))):
        gap = float(np.abs(mine - theirs).max())
        assert gap <= tolerance, f"{name} in onnx.reference: output {k} probabilities differ by {gap:.2e}"
        assert (mine.argmax(1) == theirs.argmax(1)).all(), f"{name} in onnx.reference: top class differs"


@pytest.mark.parametrize("name", MODELS)
def test_readme_example_runs_as_written(name, tmp_path, label_inputs, monkeypatch):
    """The "Use it without zoo" example of the model's README, run as a user would, prints zoo's answer."""
    monkeypatch.delenv("ZOO_HOME", raising=False)
    readme = (SHIPPED_ROOT / name / "README.md").read_text()
    section = readme.split("## Use it without zoo", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"`zoo export-onnx ([^`]+)`", section).group(1).split()
    assert "zoo" not in re.findall(r"^(?:import|from) (\w+)", code, re.M)
    command[1] = str(tmp_path / command[1])  # the README writes it in the working folder
    assert zoo_main(["export-onnx", *command]) == 0, f"zoo export-onnx {' '.join(command)} failed"
    item = label_inputs[len(zoo.card(name).inputs)][5]
    for source, target in zip(item, ("a.jpg", "b.jpg") if len(item) > 1 else ("photo.jpg",)):
        Image.open(source).convert("RGB").save(tmp_path / target, quality=95)
    done = run_checked([sys.executable, "-c", code], cwd=tmp_path, env=_without_zoo_home())
    label, score = done.stdout.splitlines()[0].rsplit(" ", 1)
    expected = zoo.load(name, device="cpu").predict(*(tmp_path / t for t in (("a.jpg", "b.jpg") if len(item) > 1 else ("photo.jpg",))))
    assert label == expected.label
    assert float(score) == pytest.approx(expected.score, abs=1e-4)


def _graph_reading(tmp_path: Path, location: str, offset: int, length: int) -> Path:
    """A one-initializer graph whose weights are external data at `location`, `offset`, `length`."""
    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    node = onnx.helper.make_node("Add", ["x", "w"], ["y"])
    value = lambda name: onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [4])  # noqa: E731
    graph = onnx.helper.make_graph([node], "g", [value("x")], [value("y")], [weight])
    path = tmp_path / "model.onnx"
    model = onnx.helper.make_model(graph, ir_version=10, opset_imports=[onnx.helper.make_opsetid("", 19)])
    path.write_bytes(model.SerializeToString())
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8 + np.arange(4, dtype=np.float32).tobytes())
    return path


def test_self_contained_moves_the_external_bytes_inside(tmp_path):
    from zoo.onnxfile import self_contained

    session = ort.InferenceSession(self_contained(_graph_reading(tmp_path, "weights.bin", 8, 16)),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": np.ones(4, np.float32)})[0], [1, 2, 3, 4])


@pytest.mark.parametrize("location, offset, length, why", [
    ("../weights.bin", 8, 16, "not a file beside it"),
    ("/etc/passwd", 0, 4, "not a file beside it"),
    ("weights.bin", 8, 64, "do not belong together"),
    ("missing.bin", 0, 4, "cannot be read"),
])
def test_self_contained_refuses_references_it_cannot_honour(tmp_path, location, offset, length, why):
    from zoo.onnxfile import self_contained

    with pytest.raises(zoo.ModelFileError, match=why):
        self_contained(_graph_reading(tmp_path, location, offset, length))


def test_export_onnx_into_a_missing_folder_says_so(tmp_path, capsys):
    assert zoo_main(["export-onnx", "cnn", str(tmp_path / "nowhere" / "cnn.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
