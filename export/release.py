"""python -m export index | release OUT/: the index of every model file, and a release laid out for upload.

`release` writes into OUT the wheel (built from the checkout) and every model file
under its sha256 with `index.json` (zoo.hub.write_mirror), as they are uploaded to a static host:
the files of OUT, as they are, at the URL the package's DEFAULT_MODELS_URL names (docs/training.md).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from zoo import hub
from zoo.registry import PACKAGE_MODELS
from zoo.release import INDEX_FILE, build_index, render_index

from .errors import ExportError

ROOT = Path(__file__).resolve().parents[1]


class ReleaseError(ExportError):
    """The release could not be built: not a git checkout, or the wheel's build failed."""


def model_names(models: Path = PACKAGE_MODELS) -> list[str]:
    """The models of the checkout: every folder of `models` holding a card."""
    return sorted(p.parent.name for p in models.glob("*/card.json"))


def write_index(models: Path = PACKAGE_MODELS) -> Path:
    """Write `models`/index.json from the cards there (run after a model is exported or changed)."""
    path = models / INDEX_FILE
    path.write_text(render_index(build_index(models, model_names(models))))
    return path


def build_wheel(out: Path) -> Path:
    """The wheel of the checkout's files that git does not ignore (built in a copy, so nothing is written into the checkout)."""
    try:
        tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ReleaseError(f"python -m export release runs from a git checkout ({exc}).") from None
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        for relative in filter(None, tracked.decode().split("\0")):
            if (ROOT / relative).is_file():
                (source / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, source / relative)
        shutil.copy2(PACKAGE_MODELS / INDEX_FILE, source / "zoo" / "models" / INDEX_FILE)
        before = set(out.glob("*.whl"))
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                                "-w", str(out), str(source)], capture_output=True, text=True)
        if built.returncode:
            raise ReleaseError(f"building the wheel failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    wheels = sorted(set(out.glob("*.whl")) - before) or sorted(out.glob("zoo_onnx-*.whl"))
    return wheels[-1]


def release(out: Path) -> tuple[Path, hub.Transfer]:
    """Write the release into `out`: the wheel, every model file under its sha256, and index.json."""
    index = PACKAGE_MODELS / INDEX_FILE
    if not index.is_file() or index.read_text() != render_index(build_index(PACKAGE_MODELS, model_names())):
        raise ReleaseError(f"{index} does not list the models' files as their cards do: run `python -m export index` "
                           "(and commit it), then release.")
    out.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(out)
    return wheel, hub.write_mirror(model_names(), out)
