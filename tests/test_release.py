"""The package as a user gets it: the release built by `python -m export release`, served over HTTP on
127.0.0.1, the wheel installed into a fresh venv, models fetched on demand, and the faults a download meets.

The venv reuses the running environment's dependencies through a .pth file; only zoo comes from the wheel,
and every command runs outside the checkout.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import zoo
from zoo import hub
from zoo.registry import PACKAGE_MODELS
from zoo.release import INDEX_FILE, build_index, read_index

ROOT = Path(__file__).resolve().parents[1]
#: PyPI's default limit is 100 MB; the wheel carries the embedded models only.
MAX_WHEEL_BYTES = 30 * 10**6
#: Models the wheel embeds (pyproject's package-data): the README's first examples and the demo run offline.
EMBEDDED = ("changer", "cnn", "deformable-cnn")
IMAGES = sorted((ROOT / "zoo" / "examples" / "cifar10").glob("*.jpg"))


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `command`; a failure shows its output."""
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode:
        pytest.fail(f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


class Mirror(http.server.ThreadingHTTPServer):
    """A static host for a release folder, with range requests, request counts and scripted faults.

    `faults[sha256]`: actions for the next requests of that file, in order: "500", "drop" (half the bytes,
    then the connection closes), "wrong" (other bytes of the same length).
    """

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), MirrorHandler)
        self.folder = folder
        self.requests: Counter[str] = Counter()
        self.ranges: list[str] = []
        self.faults: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    server: Mirror

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        name = self.path.strip("/")
        with self.server.lock:
            self.server.requests[name] += 1
            fault = self.server.faults.get(name, []).pop(0) if self.server.faults.get(name) else None
            if "Range" in self.headers:
                self.server.ranges.append(self.headers["Range"])
        path = self.server.folder / name
        if fault == "500" or not path.is_file():
            self.send_error(500 if fault else 404)
            return
        data = path.read_bytes()
        if fault == "wrong":
            data = bytes(b ^ 0x5A for b in data)
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if "Range" in self.headers else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[: len(body) // 2] if fault == "drop" else body)
        if fault == "drop":
            self.close_connection = True


@contextmanager
def serving(folder: Path) -> Iterator[Mirror]:
    mirror = Mirror(folder)
    thread = threading.Thread(target=mirror.serve_forever, daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        mirror.shutdown()
        mirror.server_close()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    run([sys.executable, "-m", "export", "release", str(out)], cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(release: Path) -> Path:
    (found,) = release.glob("zoo_onnx-*.whl")
    return found


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable), the running environment's packages through a .pth."""
    folder = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(folder)])
    python = folder / ("Scripts" if os.name == "nt" else "bin") / "python"
    site_packages = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    ours = run([sys.executable, "-c", "import site, sysconfig; print('\\n'.join(dict.fromkeys("
                "[*site.getsitepackages(), sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']])))"]
               ).stdout
    Path(site_packages, "running-environment.pth").write_text(ours)
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)])
    return python


@pytest.fixture
def mirror(release: Path) -> Iterator[Mirror]:
    with serving(release) as server:
        yield server


def clean_environment() -> dict[str, str]:
    """This process's environment without zoo's variables, on the reference runtime (as in-process loads are):
    these tests compare the install's outputs with this process's, and `auto` would time OpenVINO first."""
    return {**{key: value for key, value in os.environ.items() if not key.startswith("ZOO_")},
            "ZOO_RUNTIME": "onnxruntime"}


def in_venv(python: Path, code: str, env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    clean = clean_environment()
    command = [str(python), "-c", code]
    if check:
        return run(command, env={**clean, **env}, cwd=cwd)
    return subprocess.run(command, capture_output=True, text=True, env={**clean, **env}, cwd=cwd)


PREDICT = """
import json, sys, zoo
model = zoo.load(sys.argv[1] if len(sys.argv) > 1 else "{name}")
print(json.dumps({{"file": zoo.__file__, "probs": [p.probs for p in model.predict_batch({images!r})]}}))
"""


def predict_in_venv(python: Path, name: str, env: dict[str, str], cwd: Path) -> dict:
    code = PREDICT.format(name=name, images=[str(p) for p in IMAGES])
    return json.loads(in_venv(python, code, env, cwd).stdout.splitlines()[-1])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_committed_index_lists_every_file_of_every_card():
    names = sorted(p.parent.name for p in PACKAGE_MODELS.glob("*/card.json"))
    assert read_index(PACKAGE_MODELS / INDEX_FILE) == build_index(PACKAGE_MODELS, names)["models"], (
        "zoo/models/index.json is stale: run `python -m export index`")


def test_the_wheel_is_small_and_carries_every_card_and_the_embedded_models(wheel: Path):
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"
    names = set(zipfile.ZipFile(wheel).namelist())
    index = read_index(PACKAGE_MODELS / INDEX_FILE)
    assert f"zoo/models/{INDEX_FILE}" in names
    for model, files in index.items():
        shipped = {f for f in files if f"zoo/models/{model}/{f}" in names}
        expected = set(files) if model in EMBEDDED else {"card.json", "README.md"}
        assert shipped == expected, model
    assert {f"zoo/examples/cifar10/{p.name}" for p in IMAGES} <= names
    assert "zoo/app.py" in names


def test_the_embedded_models_run_offline_right_after_install(venv_python: Path, tmp_path: Path):
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_OFFLINE": "1"}
    out = in_venv(venv_python, "import zoo; a, b = sorted((zoo.EXAMPLES / 'pair').glob('*.jpg')); "
                               "print(zoo.load('changer').predict(a, b).label, zoo.__file__)", env, tmp_path).stdout
    assert out.startswith("displacement+rotation ") and str(ROOT) not in out
    listing = in_venv(venv_python, "from zoo.cli import main; main(['list'])", env, tmp_path).stdout
    where = {line.split()[0]: line.split()[-1] for line in listing.splitlines()[1:]}
    assert where == {name: "embedded" if name in EMBEDDED else "download" for name in zoo.list()}
    assert not (tmp_path / "home").exists()


def test_a_model_is_fetched_once_checked_and_then_used_offline(venv_python: Path, mirror: Mirror, tmp_path: Path):
    home = tmp_path / "home"
    env = {"ZOO_HOME": str(home), "ZOO_MODELS_URL": mirror.url}
    fetched = predict_in_venv(venv_python, "carplane-joint", env, tmp_path)
    assert str(ROOT) not in fetched["file"]
    expected = [p.probs for p in zoo.load("carplane-joint").predict_batch(IMAGES)]
    for ours, theirs in zip(fetched["probs"], expected):
        assert ours == pytest.approx(theirs, abs=1e-6)
    files = read_index(PACKAGE_MODELS / INDEX_FILE)["carplane-joint"]
    for relative, meta in files.items():
        assert sha256(home / "carplane-joint" / relative) == meta["sha256"], relative
    # What the wheel carries (card, README) is not fetched; every other file once.
    assert sum(mirror.requests.values()) == len(files) - 2
    assert set(mirror.requests.values()) == {1}
    before = sum(mirror.requests.values())
    predict_in_venv(venv_python, "carplane-joint", env, tmp_path)
    assert sum(mirror.requests.values()) == before, "a second load made requests"
    offline = {"ZOO_HOME": str(home), "ZOO_OFFLINE": "1"}
    assert predict_in_venv(venv_python, "carplane-joint", offline, tmp_path)["probs"] == fetched["probs"]
    refused = in_venv(venv_python, "import zoo; zoo.load('carplane-triplet')", offline, tmp_path, check=False)
    assert refused.returncode == 1
    assert "ZOO_OFFLINE is set" in refused.stderr and "zoo download carplane-triplet --to DIR" in refused.stderr
    assert not (home / "carplane-triplet").exists()


def test_a_mirror_written_by_zoo_download_serves_a_machine_without_the_server(venv_python: Path, mirror: Mirror,
                                                                             tmp_path: Path):
    folder = tmp_path / "mirror"
    in_venv(venv_python, f"from zoo.cli import main; raise SystemExit(main(['download', '--all', '--to', "
                         f"{str(folder)!r}]))", {"ZOO_HOME": str(tmp_path / "a"), "ZOO_MODELS_URL": mirror.url},
            tmp_path)
    served = sum(mirror.requests.values())
    mirror.shutdown()
    env = {"ZOO_HOME": str(tmp_path / "b"), "ZOO_MODELS_URL": str(folder), "ZOO_OFFLINE": "1"}
    answer = predict_in_venv(venv_python, "carplane-linear-int8", env, tmp_path)
    assert answer["probs"][0] == pytest.approx(zoo.load("carplane-linear-int8").predict(IMAGES[0]).probs, abs=1e-6)
    assert sum(mirror.requests.values()) == served
    assert json.loads((folder / "index.json").read_text())["models"] == read_index(PACKAGE_MODELS / INDEX_FILE)


def test_two_processes_loading_one_model_download_it_once(venv_python: Path, mirror: Mirror, tmp_path: Path):
    env = {**clean_environment(), "ZOO_HOME": str(tmp_path / "home"), "ZOO_MODELS_URL": mirror.url}
    code = PREDICT.format(name="carplane-triplet-int8", images=[str(IMAGES[0])])
    processes = [subprocess.Popen([str(venv_python), "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert json.loads(outputs[0][0])["probs"] == json.loads(outputs[1][0])["probs"]
    files = read_index(PACKAGE_MODELS / INDEX_FILE)["carplane-triplet-int8"]
    assert sum(mirror.requests.values()) == len(files) - 2 and set(mirror.requests.values()) == {1}


def test_shared_weights_are_fetched_once(venv_python: Path, mirror: Mirror, tmp_path: Path):
    env = {"ZOO_HOME": str(tmp_path / "home"), "ZOO_MODELS_URL": mirror.url}
    in_venv(venv_python, "import zoo; zoo.load('resnet50-cifar8')", env, tmp_path)
    index = read_index(PACKAGE_MODELS / INDEX_FILE)
    before = set(mirror.requests)
    in_venv(venv_python, "import zoo; zoo.load('carplane-linear')", env, tmp_path)
    fetched = sum(meta["bytes"] for meta in index["carplane-linear"].values() if meta["sha256"] in
                  set(mirror.requests) - before)
    total = sum(meta["bytes"] for meta in index["carplane-linear"].values())
    print(f"carplane-linear after resnet50-cifar8: {fetched / 1e6:.2f} MB fetched of {total / 1e6:.1f} MB")
    assert fetched < 2e6


# Faults, in this process: the fetch itself (zoo.hub), every file downloaded (nothing copied from the checkout).

def fetch_cnn(home: Path) -> hub.Transfer:
    entries = read_index(PACKAGE_MODELS / INDEX_FILE)["cnn"]
    return hub.fetch_model("cnn", home / "cnn", entries, PACKAGE_MODELS / "cnn" / "card.json", local_copies={})


def weights_sha(name: str = "cnn") -> str:
    return read_index(PACKAGE_MODELS / INDEX_FILE)[name]["model.safetensors"]["sha256"]


def assert_nothing_half_written(home: Path) -> None:
    leftovers = [p for p in home.rglob("*") if p.is_file() and (p.name.startswith(".") or p.parent.name == ".partial"
                                                                 or p.name == "model.safetensors")]
    assert leftovers == []


@pytest.fixture
def to_mirror(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    monkeypatch.setenv("ZOO_MODELS_URL", mirror.url)
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    return mirror


def test_server_errors_are_retried(to_mirror: Mirror, tmp_path: Path):
    to_mirror.faults[weights_sha()] = ["500", "500"]
    transfer = fetch_cnn(tmp_path)
    assert to_mirror.requests[weights_sha()] == 3
    assert "cnn/model.safetensors" in transfer.downloaded
    zoo.load(tmp_path / "cnn")


def test_a_dropped_connection_resumes(to_mirror: Mirror, tmp_path: Path):
    to_mirror.faults[weights_sha()] = ["drop"]
    fetch_cnn(tmp_path)
    size = read_index(PACKAGE_MODELS / INDEX_FILE)["cnn"]["model.safetensors"]["bytes"]
    (resumed,) = to_mirror.ranges  # from what arrived before the drop, not from the start
    assert 0 < int(resumed.removeprefix("bytes=").removesuffix("-")) <= size // 2
    assert sha256(tmp_path / "cnn" / "model.safetensors") == weights_sha()


def test_wrong_bytes_are_refused_and_nothing_is_kept(to_mirror: Mirror, tmp_path: Path):
    to_mirror.faults[weights_sha()] = ["wrong"] * (hub.RETRIES + 1)
    with pytest.raises(hub.DownloadError) as refused:
        fetch_cnn(tmp_path)
    message = str(refused.value)
    assert "model.safetensors" in message and weights_sha() in message and "wrong content" in message
    assert_nothing_half_written(tmp_path)
    assert not (tmp_path / "cnn" / "card.json").exists()
    to_mirror.faults.clear()
    fetch_cnn(tmp_path)  # a later load takes nothing from the failed one
    zoo.load(tmp_path / "cnn")


def test_an_unwritable_home_is_a_clear_error(to_mirror: Mirror, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(hub.DownloadError, match="cannot write model 'cnn' into .*ZOO_HOME"):
        fetch_cnn(blocker / "home")


def test_an_unreachable_mirror_names_the_way_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with serving(tmp_path) as empty:  # answers 404 to everything
        monkeypatch.setenv("ZOO_MODELS_URL", empty.url)
        with pytest.raises(hub.DownloadError, match="answered 404 .*ZOO_MODELS_URL"):
            fetch_cnn(tmp_path / "home")
        assert sum(empty.requests.values()) == 1  # not found is not retried
    assert_nothing_half_written(tmp_path / "home")


def test_zoo_download_repairs_a_damaged_file_and_zoo_cache_clears_only_downloads(to_mirror: Mirror, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    from zoo import registry

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    fetch_cnn(tmp_path)
    graph = tmp_path / "cnn" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")
    with pytest.raises(zoo.ModelFileError, match="model.onnx"):
        zoo.load("cnn")  # a damaged file is reported, never silently replaced at load
    registry.fetch("cnn", refresh=True)  # what `zoo download cnn` does
    zoo.load("cnn")
    shutil.copytree(PACKAGE_MODELS / "deformable-cnn", tmp_path / "mine")
    assert {m.name: m.fetched for m in hub.cached_models(tmp_path)} == {"cnn": True, "mine": False}
    assert registry.source("mine") == registry.LOCAL and registry.source("cnn") == registry.CACHED
    assert hub.clear(tmp_path) == ["cnn"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["mine"]
