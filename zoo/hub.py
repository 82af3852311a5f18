"""Model files on demand: what the package does not embed is fetched once, checked, into the models home.

Each file is published under its sha256 (`zoo.release`), and the package's index pins the sha256 and
size of every file of every model, so a file is fetched by its hash and kept only if it has it.
Downloads go through pooch (the hash checked on a temporary file in the target folder, which is then
renamed into place; retries with backoff), with zoo's own downloader: it resumes an interrupted
transfer with an HTTP range request, reads file:// and plain-folder mirrors, shows progress on a
terminal, and takes proxies from the usual environment variables (requests). A lock per file
(filelock) makes processes that load the same model at once download it once; a file that another
model already holds (shared weights) is copied from there instead of fetched.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from .errors import ZooError
from .files import CARD_FILE
from .release import DEFAULT_MODELS_URL
from .runtime import sha256_file

MODELS_URL_ENV = "ZOO_MODELS_URL"
OFFLINE_ENV = "ZOO_OFFLINE"
#: Further attempts after a failed transfer (connection reset, 5xx, wrong bytes), waiting 1, 2, 3 s.
RETRIES = 3
#: Connect and read timeouts of one HTTP request, seconds.
TIMEOUT = (15, 60)
#: Beside the model folders in the home: unfinished transfers (resumed by the next attempt) and locks.
PARTIAL_FOLDER = ".partial"
LOCK_FOLDER = ".locks"
CHUNK_BYTES = 1 << 16


class DownloadError(ZooError):
    """A model file could not be fetched: offline, unreachable, wrong bytes, or a home that cannot be written."""


@dataclass
class Transfer:
    """What a fetch did: bytes downloaded, bytes copied from files already here, and the files of each kind."""

    downloaded_bytes: int = 0
    copied_bytes: int = 0
    downloaded: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)

    def add(self, other: "Transfer") -> None:
        self.downloaded_bytes += other.downloaded_bytes
        self.copied_bytes += other.copied_bytes
        self.downloaded += other.downloaded
        self.copied += other.copied


def models_url() -> str:
    """The root of the published release files: $ZOO_MODELS_URL (http(s)://, file:// or a folder) or the default."""
    return os.environ.get(MODELS_URL_ENV) or DEFAULT_MODELS_URL


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def blob_url(root: str, sha256: str) -> str:
    return f"{root.rstrip('/')}/{sha256}" if "://" in root else str(Path(root).expanduser() / sha256)


def missing_files(folder: Path, files: dict[str, Any]) -> list[str]:
    """The files of `files` that `folder` lacks. A present file is never replaced on load: it was written whole
    (renamed into place), so a wrong one is damage, which the load's checks report and `zoo download` repairs."""
    return [relative for relative in files if not (folder / relative).is_file()]


def fetch_model(name: str, target: Path, entries: dict[str, dict[str, Any]], card_source: Path,
                local_copies: dict[str, list[Path]], refresh: bool = False) -> Transfer:
    """Make `target` a complete folder of model `name`: every file of `entries` (the index's, card.json
    included) fetched unless present, the card copied from `card_source` and written last.

    `local_copies`: sha256 -> files already on this machine that have it (copied rather than fetched).
    `refresh`: hash every present file too and fetch again those that differ (`zoo download`).
    """
    files = {relative: meta for relative, meta in entries.items() if relative != CARD_FILE}
    wanted = _differing(target, files) if refresh else missing_files(target, files)
    transfer = Transfer()
    if wanted:
        where = models_url()
        if offline() and "://" in where and not where.startswith("file://"):
            raise DownloadError(
                f"model {name!r} needs {len(wanted)} file(s) that are not here ({', '.join(sorted(wanted))} in "
                f"{target}) and {OFFLINE_ENV} is set, so zoo does not download them. On a machine with internet, "
                f"`zoo download {name} --to DIR` writes them into DIR; then set {MODELS_URL_ENV}=DIR here, or unset "
                f"{OFFLINE_ENV} to fetch them from {where}."
            )
        for relative in sorted(wanted):
            transfer.add(_fetch_file(name, target, relative, files[relative], where, local_copies))
    card = target / CARD_FILE
    if not card.is_file() or card.read_bytes() != card_source.read_bytes():
        _copy_checked(card_source, card, entries[CARD_FILE], target)
    return transfer


def _differing(target: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    missing = set(missing_files(target, files))
    return [relative for relative, meta in files.items()
            if relative in missing or (target / relative).stat().st_size != meta["bytes"]
            or sha256_file(target / relative) != meta["sha256"]]


def _fetch_file(name: str, target: Path, relative: str, meta: dict[str, Any], root: str,
                local_copies: dict[str, list[Path]]) -> Transfer:
    sha256, destination = meta["sha256"], target / relative
    home = target.parent
    try:
        for folder in (home / LOCK_FOLDER, home / PARTIAL_FOLDER, destination.parent):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot write model {name!r} into {home} ({exc.strerror or exc}); set ZOO_HOME to a folder you can "
            "write, or fill one with `zoo download NAME --to DIR` and point ZOO_HOME at it."
        ) from None
    from filelock import FileLock  # imported here: loading an embedded model needs none of this

    with FileLock(str(home / LOCK_FOLDER / f"{sha256}.lock")):
        # Another process may have fetched it while this one waited for the lock.
        if destination.is_file() and destination.stat().st_size == meta["bytes"] and sha256_file(destination) == sha256:
            return Transfer()
        for source in local_copies.get(sha256, ()):
            if source.is_file() and source.stat().st_size == meta["bytes"] and sha256_file(source) == sha256:
                _copy_checked(source, destination, meta, home)
                return Transfer(copied_bytes=meta["bytes"], copied=[f"{name}/{relative}"])
        _download(name, relative, meta, blob_url(root, sha256), destination, home / PARTIAL_FOLDER / sha256)
        return Transfer(downloaded_bytes=meta["bytes"], downloaded=[f"{name}/{relative}"])


def _copy_checked(source: Path, destination: Path, meta: dict[str, Any], home: Path) -> None:
    """Copy `source` to `destination` through a temporary file in the same folder, renamed only if its hash is right."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    os.close(handle)
    try:
        shutil.copyfile(source, temporary)
        if sha256_file(Path(temporary)) != meta["sha256"]:
            raise DownloadError(f"{source} does not have the sha256 that the package's index records for "
                                f"{destination.name}; reinstall the package.")
        os.replace(temporary, destination)
    except OSError as exc:
        raise DownloadError(f"cannot write {destination} ({exc.strerror or exc}); check that {home} "
                            "is writable and has space.") from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _download(name: str, relative: str, meta: dict[str, Any], url: str, destination: Path, partial: Path) -> None:
    import pooch
    import requests

    store = pooch.create(path=destination.parent, base_url="", registry={destination.name: f"sha256:{meta['sha256']}"},
                         urls={destination.name: url}, retry_if_failed=RETRIES)
    downloader = ResumingDownloader(partial, f"{name}/{relative}", meta["bytes"])
    try:
        with _quiet(pooch.get_logger()):
            store.fetch(destination.name, downloader=downloader)
    except ValueError as exc:  # pooch: the bytes do not have the pinned sha256 (its message gives both)
        raise DownloadError(
            f"{url} sent {relative} of model {name!r} with the wrong content, {RETRIES + 1} times: {exc} "
            f"Nothing was kept. The mirror at {models_url()} is damaged or serves another release; fix it or set "
            f"{MODELS_URL_ENV} to another."
        ) from None
    except (requests.RequestException, OSError) as exc:
        raise DownloadError(
            f"cannot fetch {relative} of model {name!r} from {url} after {RETRIES + 1} attempts "
            f"({type(exc).__name__}: {exc}). Check the connection and proxy settings (HTTPS_PROXY), set "
            f"{MODELS_URL_ENV} to a mirror, or on another machine run `zoo download {name} --to DIR` and set "
            f"{MODELS_URL_ENV}=DIR here."
        ) from None


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """pooch logs every download at INFO on stderr; zoo shows its own progress on a terminal only."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class ResumingDownloader:
    """A pooch downloader: http(s) with range requests that resume `partial`, file:// and plain paths copied.

    The bytes gather in `partial` (kept across attempts and processes, so an interrupted transfer goes on
    where it stopped) and are moved to pooch's temporary file once complete; pooch then checks the hash.
    """

    def __init__(self, partial: Path, label: str, size: int) -> None:
        self.partial, self.label, self.size = partial, label, size

    def __call__(self, url: str, output_file: str, pooch: object, check_only: bool = False) -> bool | None:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https"):
            if check_only:
                return True
            self._http(url)
            os.replace(self.partial, output_file)
        else:
            path = Path(url2pathname(unquote(parsed.path))) if parsed.scheme == "file" else Path(url)
            if check_only:
                return path.is_file()
            if not path.is_file():
                raise DownloadError(f"{path} does not exist: that mirror does not have {self.label} of this release. "
                                    f"Set {MODELS_URL_ENV} to one that does (`zoo download --all --to DIR`).")
            shutil.copyfile(path, output_file)
        return None

    def _http(self, url: str) -> None:
        import requests

        start = self.partial.stat().st_size if self.partial.is_file() else 0
        if start >= self.size:  # a stale transfer of the same hash: start again
            self.partial.unlink()
            start = 0
        headers = {"Range": f"bytes={start}-"} if start else {}
        with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                # Not transient: pooch would retry it, so it is raised as zoo's own error, which pooch passes on.
                raise DownloadError(
                    f"{url} answered {response.status_code} {response.reason} for {self.label}: that host does not "
                    f"serve this release's files. Set {MODELS_URL_ENV} to one that does (written by `python -m "
                    f"export release` or `zoo download --all --to DIR`)."
                )
            response.raise_for_status()
            resumed = response.status_code == 206
            with open(self.partial, "ab" if resumed else "wb") as out:
                done = start if resumed else 0
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    done += len(chunk)
                    self._progress(done)
        self._progress(done, end=True)
        if done != self.size:
            # Wrong length: start from scratch next time rather than resume from bad bytes.
            self.partial.unlink(missing_ok=True)
            raise requests.exceptions.ConnectionError(f"received {done} of {self.size} bytes")

    def _progress(self, done: int, end: bool = False) -> None:
        if not sys.stderr.isatty():
            return
        sys.stderr.write(f"\rzoo: {self.label}  {done / 1e6:.1f} / {self.size / 1e6:.1f} MB")
        if end:
            sys.stderr.write("\n")
        sys.stderr.flush()


def write_mirror(names: list[str], out: Path) -> Transfer:
    """Write the release layout of models `names` into `out`: each file under its sha256, and `index.json` for
    them, so that ZOO_MODELS_URL=out serves them (fetching into the home first what this machine lacks)."""
    from . import registry
    from .release import INDEX_FILE, index_document, render_index

    entries = registry.index()
    transfer = Transfer()
    for name in names:
        if registry.source(name) == registry.FETCHABLE:
            transfer.add(registry.fetch(name))
        folder = registry.model_dir(name)
        for relative, meta in entries[name].items():
            blob = out / meta["sha256"]
            if not (blob.is_file() and blob.stat().st_size == meta["bytes"]):
                _copy_checked(folder / relative, blob, meta, out)
    index = index_document({name: entries[name] for name in names})
    try:
        (out / INDEX_FILE).write_text(render_index(index))
    except OSError as exc:
        raise DownloadError(f"cannot write {out / INDEX_FILE} ({exc.strerror or exc}).") from None
    return transfer


@dataclass(frozen=True)
class CachedModel:
    """A model folder in the models home: its name, bytes on disk, and whether zoo fetched it (or it is yours)."""

    name: str
    bytes: int
    fetched: bool
    complete: bool


def cached_models(home: Path) -> list[CachedModel]:
    from . import registry

    if not home.is_dir():
        return []
    found = []
    for folder in sorted(p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")):
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        fetched = folder.name in registry.index() and (
            not (folder / CARD_FILE).is_file() or registry.is_pinned(folder.name, folder))
        found.append(CachedModel(folder.name, size, fetched, registry.is_complete(folder)))
    return found


def clear(home: Path, names: list[str] | None = None) -> list[str]:
    """Remove fetched models (all, or `names`) and unfinished transfers from `home`; models of your own stay.
    Returns the names removed."""
    removed = []
    for model in cached_models(home):
        if model.fetched and (names is None or model.name in names):
            shutil.rmtree(home / model.name)
            removed.append(model.name)
    if names is None:
        shutil.rmtree(home / PARTIAL_FOLDER, ignore_errors=True)
    return removed
