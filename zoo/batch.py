"""Many images through one model: paths from files, folders and globs (or pairs from a CSV), one result row
per input written as it comes (JSON lines or CSV), resumable, with progress on stderr.

Everything streams: paths are expanded lazily, predictions are written and dropped chunk by chunk, and a
resumed run holds only the set of paths already predicted (and the rows of those that failed).

--resume keeps one row per input. A row is complete once its line ends: a last line cut short (a full disk,
a power loss) is removed and its input predicted again. An input whose row is an error is tried again: its
new row replaces the old one (at the end of the file), and the error rows of inputs that this run does not
name are written back unchanged.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

from .errors import ZooError
from .model import Model
from .tasks import Prediction

#: File suffixes a folder is searched for (a file or glob named explicitly is taken whatever its suffix).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
FORMATS = (".jsonl", ".csv")
CSV_COLUMNS = ("path", "label", "score", "probs", "changes", "params", "refined", "alignment_score", "error")


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
    """The output file: rows appended as they come, in JSON lines or CSV (by the file's suffix).

    Resumed, the file is first repaired (see the module's docstring): `done` holds the paths predicted,
    `failed` the error rows held back until their inputs are tried again, `dropped` counts incomplete rows.
    """

    def __init__(self, path: Path, resume: bool) -> None:
        if path.suffix.lower() not in FORMATS:
            raise BatchError(f"--out {path}: write results to a .jsonl or .csv file.")
        self.path, self.csv = path, path.suffix.lower() == ".csv"
        self.done: set[str] = set()
        self.failed: dict[str, dict[str, object]] = {}
        self.dropped = 0
        resuming = resume and path.exists()
        try:
            if resuming:
                self.repair()
            self.handle: IO[str] = open(path, "a" if resuming else "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise BatchError(f"--out {path}: {exc.strerror or exc}.") from None
        self.writer = csv.DictWriter(self.handle, CSV_COLUMNS) if self.csv else None
        if self.writer and not (resuming and path.stat().st_size):
            self.writer.writeheader()
            self.handle.flush()

    def repair(self) -> None:
        """Read a file to resume: leave out a last line that did not end, keep the predictions, hold back the
        error rows, drop rows that are not whole (a row glued to a cut one); rewrite the file if any went, in
        one step (a new file moved into place), so that a crash meanwhile leaves the old one."""
        kept = broken = 0
        with open(self.path, newline="", encoding="utf-8", errors="surrogateescape") as source, \
                tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=f".{self.path.name}.", delete=False,
                                            newline="", encoding="utf-8", errors="surrogateescape") as target:
            try:
                for row, text in self._rows(self._whole_lines(source)):
                    if row is None:
                        broken += 1
                    elif row.get("error"):
                        self.failed[str(row["path"])] = row
                    else:
                        if row:  # {} is the CSV header
                            self.done.add(str(row["path"]))
                            kept += 1
                        target.write(text)
                if broken and not kept and not self.failed:
                    raise BatchError(f"--resume: {self.path} holds no rows of zoo predict; name its --out file, "
                                     "or leave out --resume to overwrite it.")
            except BaseException:
                target.close()
                os.unlink(target.name)
                raise
        self.dropped += broken
        if self.dropped or self.failed:
            shutil.copymode(self.path, target.name)
            os.replace(target.name, self.path)
        else:
            os.unlink(target.name)

    def _whole_lines(self, source: IO[str]) -> Iterator[str]:
        """The file's lines but a last one that does not end (a row is written whole only once its line ends)."""
        previous = None
        for line in source:
            if previous is not None:
                yield previous
            previous = line
        if previous is not None:
            if previous.endswith("\n"):
                yield previous
            else:
                self.dropped += 1

    def _rows(self, source: Iterable[str]) -> Iterator[tuple[dict[str, object] | None, str]]:
        """Each row of the file and the text that writes it again: ({}, header) first for CSV, (None, text)
        for a row that is not whole."""
        if not self.csv:
            for line in source:
                try:
                    row = json.loads(line)
                except ValueError:
                    row = None
                yield (row if isinstance(row, dict) and isinstance(row.get("path"), str) else None), line
            return
        reader = csv.reader(source)
        try:
            header = next(reader, None)
            if header is None:
                return
            if header != list(CSV_COLUMNS):
                raise BatchError(f"--resume: {self.path} has the columns {', '.join(header)}, not zoo's "
                                 f"({', '.join(CSV_COLUMNS)}); leave out --resume to overwrite it.")
            yield {}, _csv_line(header)
            for cells in reader:
                whole = len(cells) == len(CSV_COLUMNS) and cells[0]
                yield (dict(zip(CSV_COLUMNS, cells)) if whole else None), _csv_line(cells)
        except csv.Error:  # a quote left open by a glued row: the rest cannot be read as rows
            yield None, ""

    def write(self, row: dict[str, object]) -> None:
        self.failed.pop(str(row["path"]), None)
        if self.writer:
            self.writer.writerow({key: json.dumps(value) if isinstance(value, dict) else value for key, value in row.items()})
        else:
            self.handle.write(json.dumps(row) + "\n")
        self.handle.flush()

    def close(self) -> None:
        """Write back the error rows of inputs this run did not try again, and close the file."""
        try:
            for row in list(self.failed.values()):
                self.write(row)
        finally:
            self.handle.close()


def _csv_line(cells: list[str]) -> str:
    """One CSV row as csv.writer writes it (the text of a kept row when the file is rewritten)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


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
    if rows and rows.dropped:
        progress.stream.write(f"zoo: {out}: removed {rows.dropped:,} row(s) left incomplete (a cut or glued line); "
                              "their inputs are predicted again\n")
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
