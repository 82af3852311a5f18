"""Shared fixtures, and the rules every test runs under: nothing leaves the machine, nothing is written
outside temporary folders.

- A test that opens a connection to any address beyond the loopback fails, even where the library that
  tried swallowed the error (analytics and telemetry threads do).
- Gradio's analytics and Hugging Face's telemetry are off, as `python app.py` has them.
- Models run on onnxruntime, the reference runtime, unless a test names another (ZOO_RUNTIME): `auto`
  would otherwise measure OpenVINO against it at each model's first load and may pick it.
- The training decode cache (ZOO_CACHE) and Hypothesis's storage live in a temporary folder for the
  session; Hypothesis keeps no example database.
- Under CI (the CI variable set, as `.ci/run` sets it) a skipped test or module fails, unless the reason
  is something a machine may lack that no install step provides (`SKIPS_ALLOWED_IN_CI`): there, a missing
  dependency or data set is a broken install, not a reason to test less.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

_SCRATCH = tempfile.mkdtemp(prefix="zoo-tests-")
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(_SCRATCH, "hypothesis")
from hypothesis import settings  # noqa: E402 - reads its storage directory when imported

from zoo.loopback import RAY_LOOPBACK_ENVIRONMENT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The CIFAR-10 JPEG copy; CI has ../shared beside the clone, ZOO_TEST_DATA overrides.
CIFAR = Path(os.environ.get("ZOO_TEST_DATA", ROOT.parent / "shared" / "data" / "cifar10-jpeg"))

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["ZOO_CACHE"] = os.path.join(_SCRATCH, "decode-cache")
os.environ["ZOO_RUNTIME"] = "onnxruntime"
os.environ.update(RAY_LOOPBACK_ENVIRONMENT)  # before anything imports ray
settings.register_profile("no-database", database=None)
settings.load_profile("no-database")

#: Connections a test tried beyond the loopback: (address, what tried), emptied by each test's check.
_OUTSIDE: list[tuple[Any, str]] = []
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def _beyond_loopback(sock: socket.socket, address: Any) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    host = address[0]
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only localhost is the loopback
        return host != "localhost"


def _guarded(original):  # noqa: ANN001, ANN202 - wraps socket.connect / connect_ex
    def connect(sock: socket.socket, address: Any):  # noqa: ANN202
        if _beyond_loopback(sock, address):
            _OUTSIDE.append((address, original.__name__))
            raise ConnectionRefusedError(f"tests may only connect to the loopback, not {address!r}")
        return original(sock, address)

    return connect


socket.socket.connect = _guarded(_connect)  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded(_connect_ex)  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _nothing_beyond_the_loopback():
    """Fail the test if anything in it tried to reach an address beyond the loopback."""
    _OUTSIDE.clear()
    yield
    tried, _OUTSIDE[:] = list(_OUTSIDE), []
    assert not tried, f"the test tried to connect beyond the loopback: {tried}"


#: Skip reasons that stand under CI: a browser or Node apt could not install, a GPU, WebGPU in headless Chromium, named
#: pipes (not on Windows), disk space free for the browser's cache, and reports written only on request.
SKIPS_ALLOWED_IN_CI = re.compile(r"chromium|node and npm|NVIDIA driver|WebGPU|named pipes|space free|ZOO_WEB_REPORT",
                                 re.IGNORECASE)


def _fail_skips_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not SKIPS_ALLOWED_IN_CI.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every dependency and data set is installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    _fail_skips_under_ci(outcome.get_result())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SCRATCH, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 image folders not found at {CIFAR} (set ZOO_TEST_DATA)")
    return CIFAR


@pytest.fixture(scope="session")
def cifar_images(cifar_root: Path) -> list[Path]:
    """A few real test images, one per class."""
    return [sorted((cifar_root / "test" / c).iterdir())[0] for c in sorted(os.listdir(cifar_root / "test"))]
