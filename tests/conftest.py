from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The CIFAR-10 JPEG copy; CI has ../shared beside the clone, ZOO_TEST_DATA overrides.
CIFAR = Path(os.environ.get("ZOO_TEST_DATA", ROOT.parent / "shared" / "data" / "cifar10-jpeg"))


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    if not (CIFAR / "test").is_dir():
        pytest.skip(f"CIFAR-10 image folders not found at {CIFAR} (set ZOO_TEST_DATA)")
    return CIFAR


@pytest.fixture(scope="session")
def cifar_images(cifar_root: Path) -> list[Path]:
    """A few real test images, one per class."""
    return [sorted((cifar_root / "test" / c).iterdir())[0] for c in sorted(os.listdir(cifar_root / "test"))]
