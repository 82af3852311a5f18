"""Many images through one model: paths from files, folders and globs (or pairs from a CSV), one result row
per input written as it comes (JSON lines or CSV), resumable, with progress on stderr.

Everything streams: paths are expanded lazily, predictions are written and dropped chunk by chunk, and a
resumed run holds only the set of paths already written.
"""
from __future__ import annotations

import csv
import glob
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from .errors import ZooError
from .model import Model, Prediction

#: File suffixes a folder is searched for (a file or glob named explicitly is taken whatever its suffix).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
FORMATS = (".jsonl", ".csv")
CSV_COLUMNS = ("path", "label", "score", "probs", "changes", "params", "error")


class BatchError(ZooError):
    """A batch run cannot start as asked (an output of unknown format, a malformed pairs file)."""


def image_paths(arguments: Iterable[str]) -> Iterator[str]:
    """Each image named by `arguments`, in order: a file as it is, a folder's images recursively (sorted), a
    glob's matches (sorted); a path that does not exist is yielded too, so that it gets an error row."""
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            yield from (str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif not path.exists() and glob.has_magic(argument):
            yield from sorted(glob.glob(argument, recursive=True))
        else:
            yield argument


def csv_pairs(path: str) -> Iterator[tuple[str, str]]:
    """The (a, b) image pairs of a two-column CSV, a header row allowed (a first row whose cells are `a`, `b`)."""
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise BatchError(f"cannot read the pairs file {path}: {exc}") from None
    with handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and [cell.strip().lower() for cell in row] == ["a", "b"]):
                continue
            if len(row) != 2:
                raise BatchError(f"{path}, line {number}: expected two columns (image a, image b), got {len(row)}.")
            yield row[0].strip(), row[1].strip()


def key_of(item: str | tuple[str, str]) -> str:
    """The `path` a row records for an input: the path, or `a,b` for a pair."""
    return item if isinstance(item, str) else ",".join(item)


def row_of(key: str, result: Prediction | ZooError) -> dict[str, object]:
    if isinstance(result, ZooError):
        return {"path": key, "error": str(result)}
    return {"path": key, **result.to_dict()}


class Rows:
    """The output file: rows appended as they come, in JSON lines or CSV (by the file's suffix)."""

    def __init__(self, path: Path, resume: bool) -> None:
        if path.suffix.lower() not in FORMATS:
            raise BatchError(f"--out {path}: write results to a .jsonl or .csv file.")
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.done = self.written_keys() if resume and path.exists() else set()
        fresh = not self.done and not (resume and path.exists() and path.stat().st_size)
        self.handle: IO[str] = open(path, "a" if resume else "w", newline="")
        self.writer = csv.DictWriter(self.handle, CSV_COLUMNS) if self.csv else None
        if self.writer and fresh:
            self.writer.writeheader()

    def written_keys(self) -> set[str]:
        """Paths that already have a prediction in the file (error rows are tried again)."""
        with open(self.path, newline="") as handle:
            rows: Iterable[dict] = (csv.DictReader(handle) if self.csv
                                    else (json.loads(line) for line in handle if line.strip()))
            return {row["path"] for row in rows if not row.get("error")}

    def write(self, row: dict[str, object]) -> None:
        if self.writer:
            self.writer.writerow({key: json.dumps(value) if isinstance(value, dict) else value for key, value in row.items()})
        else:
            self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class Progress:
    """images done and images/s on stderr, rewritten in place at most a few times a second."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream, self.started, self.shown = stream or sys.stderr, time.perf_counter(), 0.0
        self.done = self.failed = 0

    def count(self, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        now = time.perf_counter()
        if now - self.shown >= 0.25:
            self.shown = now
            self.stream.write(f"\r{self.line()}")
            self.stream.flush()

    def line(self) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return f"{self.done:,} images, {self.failed:,} errors, {self.done / seconds:,.1f} images/s"


def run(model: Model, items: Iterable[str | tuple[str, str]], out: Path | None, resume: bool) -> Progress:
    """Predict every item, writing a row each to `out` (or a JSON line each to stdout); returns the counts."""
    rows = Rows(out, resume) if out else None
    skip = rows.done if rows else set()
    todo = (item for item in items if key_of(item) not in skip)
    progress = Progress()
    pending: deque[str] = deque()  # keys of the items predict_each has taken, oldest first

    def keyed(stream: Iterable[str | tuple[str, str]]) -> Iterator[str | Sequence[str]]:
        for item in stream:
            pending.append(key_of(item))
            yield item

    try:
        for result in model.predict_each(keyed(todo)):
            row = row_of(pending.popleft(), result)
            if rows:
                rows.write(row)
            else:
                sys.stdout.write(json.dumps(row) + "\n")
            progress.count(failed="error" in row)
    finally:
        if rows:
            rows.close()
    progress.stream.write(f"\r{progress.line()}; done{f', skipped {len(skip):,} already in {out}' if skip else ''}\n")
    return progress
