"""Data: image folders (or torchvision's CIFAR-10 download) decoded once into cached uint8 arrays.

Images are decoded and resized with `zoo.preprocess`, the same code the runtime uses, and kept as
uint8 NHWC arrays; the normalisation lives in the network (and so in the ONNX graph).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from zoo import preprocess
from zoo.batch import IMAGE_SUFFIXES
from zoo.preprocess import prepare

from .errors import TrainingError, TrainingFileError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo-training"))


@dataclass
class Split:
    """One split of a labelled image set, decoded: images uint8 (N, H, W, 3), labels int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    fingerprint: str

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> "Split":
        return Split(self.images[keep], self.labels[keep], self.classes, self.source, self.fingerprint)

    def only(self, classes: tuple[str, ...]) -> "Split":
        """The images of `classes` alone, relabelled 0..len(classes)-1 in that order."""
        missing = set(classes) - set(self.classes)
        if missing:
            raise TrainingError(f"{self.source} has no class {sorted(missing)}; it has {list(self.classes)}")
        index = [self.classes.index(name) for name in classes]
        keep = np.flatnonzero(np.isin(self.labels, index))
        relabel = np.full(len(self.classes), -1, dtype=np.int64)
        relabel[index] = np.arange(len(classes))
        return Split(self.images[keep], relabel[self.labels[keep]], tuple(classes), self.source,
                     f"{self.fingerprint}:{','.join(classes)}")


def random_pick(length: int, count: int, seed: int) -> np.ndarray:
    """`count` of the indices 0..length-1 drawn at random (by `seed`), in increasing order."""
    return np.sort(np.random.default_rng(seed).permutation(length)[:count])


def load_split(source: str, split: str, size: int) -> Split:
    """Split `split` ("train" or "test") of `source` at `size`x`size`.

    `source` is "cifar10" (torchvision's downloader, needs internet once) or a folder with
    `train/` and `test/` in ImageFolder layout (e.g. ../shared/data/cifar10-jpeg).
    """
    if source == "cifar10":
        return _load_torchvision_cifar10(split, size)
    return _load_image_folder(Path(source) / split, size)


def _folder_index(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise TrainingFileError(f"{root} is not a folder; expected an ImageFolder tree <root>/<class>/<image>.")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise TrainingFileError(f"no images under {root}")
    return classes, files


def fingerprint_files(root: Path, files: list[tuple[Path, int]]) -> str:
    """A digest of the file names, sizes and labels: changes whenever the data set does."""
    digest = hashlib.sha256()
    for path, label in files:
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0{label}\n".encode())
    return digest.hexdigest()[:16]


@cache
def decoder_digest() -> str:
    """A digest of the decoding code (zoo/preprocess.py): part of the cache key, so that arrays decoded by
    other code are decoded again."""
    return hashlib.sha256(inspect.getsource(preprocess).encode()).hexdigest()[:12]


def _decode(job: tuple[str, int]) -> np.ndarray:
    path, size = job
    return prepare(path, size, size, "center-crop")


def _load_image_folder(root: Path, size: int) -> Split:
    classes, files = _folder_index(root)
    return _decoded(root, files, classes, size, f"{root.name}", str(root))


def _decoded(root: Path, files: list[tuple[Path, int]], classes: tuple[str, ...], size: int, key: str,
             source: str) -> Split:
    """`files` decoded at size x size, from the cache when the same files were decoded before by the same code."""
    fingerprint = fingerprint_files(root, files)
    cached = cache_dir() / f"{key}-{fingerprint}-{size}-{decoder_digest()}"
    labels = np.array([label for _, label in files], dtype=np.int64)
    if not (cached / "images.npy").is_file():
        jobs = [(str(path), size) for path, _ in files]
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            images = np.stack(list(pool.map(_decode, jobs, chunksize=64)))
        _save(cached, images, labels, classes, str(root))
    return Split(np.load(cached / "images.npy", allow_pickle=False), labels, classes, source, fingerprint)


#: Share of each split when a flat image collection is divided by file-name hash (stable, disjoint).
HASH_SPLITS = {"train": (0, 80), "val": (80, 85), "test": (85, 100)}


def hash_bucket(path: Path, root: Path) -> int:
    """The bucket (0-99) of an image under `root`: a hash of its relative path, the same on every machine."""
    return int(hashlib.sha256(str(path.relative_to(root)).encode()).hexdigest()[:8], 16) % 100


def load_hashed_split(root: str | Path, split: str, size: int) -> Split:
    """Split `split` of an ImageFolder tree that has no train/test folders (e.g. the Caltech-101 subset).

    Each image goes to train (80%), val (5%) or test (15%) by a hash of its relative path, so the
    splits are disjoint and stable however the files are listed.
    """
    root = Path(root)
    classes, files = _folder_index(root)
    low, high = HASH_SPLITS[split]
    files = [(path, label) for path, label in files if low <= hash_bucket(path, root) < high]
    return _decoded(root, files, classes, size, f"{root.name}-{split}", f"{root} ({split})")


def _load_torchvision_cifar10(split: str, size: int) -> Split:
    from torchvision.datasets import CIFAR10  # downloads once into the cache

    dataset = CIFAR10(str(cache_dir() / "cifar10-download"), train=split == "train", download=True)
    images = np.asarray(dataset.data, dtype=np.uint8)
    if size != images.shape[1]:
        images = np.stack([prepare(image, size, size, "center-crop") for image in images])
    labels = np.asarray(dataset.targets, dtype=np.int64)
    digest = hashlib.sha256(images[:: max(1, len(images) // 1000)].tobytes() + labels.tobytes()).hexdigest()[:16]
    return Split(images, labels, CIFAR10_CLASSES, f"torchvision CIFAR10 ({split})", digest)


def _save(folder: Path, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "images.partial.npy"
    np.save(partial, images, allow_pickle=False)
    (folder / "meta.json").write_text(json.dumps({"classes": classes, "source": source, "count": len(labels)}))
    partial.rename(folder / "images.npy")  # atomic: an interrupted decode leaves no half cache
