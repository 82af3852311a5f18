"""Which models exist and where their folders are: embedded in the package, in the models home, or fetchable.

A model is a folder ``<name>/`` holding ``card.json`` and the files the card lists. The package's
``zoo/models`` has every released model's card and README and the index of all their files; it embeds
the files of some models (all of them in a checkout). The models home is ``$ZOO_HOME``, or unset a
per-user cache folder for this version: models fetched on demand go there, and models of your own
can live there. Set explicitly, ZOO_HOME's folders are read before the package's; the cache is read
after them.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .card import ModelCard
from .errors import ModelFileError, UnknownModelError, ZooError
from .files import CARD_FILE
from .release import DISTRIBUTION, INDEX_FILE, VERSION, read_index

if TYPE_CHECKING:
    from .hub import Transfer

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"
HOME_ENV = "ZOO_HOME"
#: A plain folder name: no separators, no "..", no leading dot, short enough for any filesystem.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")

EMBEDDED, CACHED, FETCHABLE, LOCAL = "embedded", "cached", "download", "local"


def models_root() -> Path:
    """The models home: $ZOO_HOME if set, else the per-user cache folder of this version."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    import platformdirs  # imported here: `import zoo` stays quick

    return Path(platformdirs.user_cache_dir(DISTRIBUTION, appauthor=False, version=VERSION))


def index() -> dict[str, dict[str, dict]]:
    """The package's index: every released model's files (card.json included) with size and sha256."""
    path = PACKAGE_MODELS / INDEX_FILE
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    return _read_index(path, stamp)


@functools.lru_cache(maxsize=4)
def _read_index(path: Path, stamp: int | None) -> dict[str, dict[str, dict]]:
    """read_index, once per version of the file (`stamp`: its modification time): every lookup reads the index."""
    return read_index(path)


def _has_card(folder: Path) -> bool:
    return (folder / CARD_FILE).is_file()


def list_models() -> list[str]:
    """Names of the models that can be loaded (embedded, in the home, or fetched on first use), sorted."""
    names = set(index())
    for root in (PACKAGE_MODELS, models_root()):
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if _NAME.fullmatch(p.name) and _has_card(p))
    return sorted(names)


def is_path(argument: str | os.PathLike[str]) -> bool:
    """Whether `zoo.load` takes `argument` as a model folder: a PathLike, an existing folder, or a path separator."""
    if isinstance(argument, os.PathLike):
        return True
    if not isinstance(argument, str) or not argument:
        return False
    if "/" in argument or os.sep in argument:
        return True
    try:
        return Path(argument).is_dir()
    except (OSError, ValueError):  # too long for a path, or a NUL: not a folder
        return False


def model_folder(path: str | os.PathLike[str]) -> Path:
    """A model folder of your own, given as a path (`is_path`): it must exist and hold a card."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UnknownModelError(f"{folder} is not a folder: zoo.load takes a model name (zoo.list()) or a model folder "
                             "holding card.json and the files it lists.")
    if not (folder / CARD_FILE).is_file():
        raise ModelFileError(f"{folder} has no {CARD_FILE}: a model folder holds its card and the files it lists, "
                             "as `python -m export` writes them.")
    return folder


def check_name(name: object) -> str:
    """`name` if it is a plain model name (not a path), else UnknownModelError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UnknownModelError(
            f"{name!r:.120} is not a model name (up to 100 lower-case letters, digits, '-', '_', '.'; no paths). "
            f"Available: {', '.join(list_models()) or 'none'}."
        )
    return name


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds every file its card lists (sizes and hashes are checked at load)."""
    from .hub import missing_files

    try:
        return not missing_files(folder, ModelCard.read(folder).files)
    except ModelFileError:
        return False


def is_pinned(name: str, folder: Path) -> bool:
    """Whether `folder`'s card is the package's card of `name` (then the folder is the zoo's, to complete)."""
    package_card = PACKAGE_MODELS / name / CARD_FILE
    return package_card.is_file() and (folder / CARD_FILE).read_bytes() == package_card.read_bytes()


def source(name: str) -> str:
    """Where model `name` comes from: EMBEDDED, CACHED (fetched, complete), FETCHABLE, or LOCAL (a home
    folder whose card is not the package's: a model of your own). UnknownModelError if there is none."""
    check_name(name)
    home = models_root() / name
    embedded = is_complete(PACKAGE_MODELS / name)
    if _has_card(home) and (HOME_ENV in os.environ or not embedded):
        if not is_pinned(name, home):
            return LOCAL
        return CACHED if is_complete(home) else FETCHABLE  # a fetch that stopped half-way goes on
    if embedded:
        return EMBEDDED
    if name in index():
        return FETCHABLE
    if _has_card(home):
        return LOCAL
    raise UnknownModelError(
        f"no model named {name!r} (in the package or in {HOME_ENV}). Available: {', '.join(list_models()) or 'none'}."
    )


def card_dir(name: str) -> Path:
    """A folder holding model `name`'s card, without fetching anything."""
    where = source(name)
    return PACKAGE_MODELS / name if where in (EMBEDDED, FETCHABLE) else models_root() / name


def read_card(name: str) -> ModelCard:
    """The card of registry name `name` (never a path), without fetching anything."""
    return ModelCard.read(card_dir(name))


def card_or_error(name: str) -> ModelCard | ZooError:
    """The card of registry name `name` as `read_card` reads it, or the ZooError saying why it cannot be read
    (an unknown name, a card that is missing, unreadable or damaged), returned rather than raised: for listings
    that show every model and mark the unreadable ones instead of stopping at the first."""
    try:
        return read_card(name)
    except ZooError as exc:
        return exc
    except OSError as exc:  # the folder itself unreadable (permissions, a vanished mount)
        return ModelFileError(f"model {name!r} cannot be read: {exc}")


def without_folder(message: str, name: str) -> str:
    """`message` (a ZooError's text about model `name`) with the folders of `name` dropped from its paths:
    `card.json is damaged ...` rather than `/home/.../name/card.json is damaged ...`, for tables and logs."""
    for root in (models_root(), PACKAGE_MODELS):
        message = message.replace(f"{root / name}{os.sep}", "").replace(str(root / name), name)
    return message


def model_dir(name: str) -> Path:
    """The folder of model `name` with every file its card lists, fetched into the home first if needed."""
    where = source(name)
    if where == EMBEDDED:
        return PACKAGE_MODELS / name
    if where in (CACHED, LOCAL):
        return models_root() / name
    fetch(name)
    return models_root() / name


def fetch(name: str, refresh: bool = False, home: Path | None = None) -> Transfer:
    """Fetch model `name`'s files into `home` (default: the models home) unless there; `refresh`: re-check
    every present file's hash. Returns what was downloaded and copied."""
    from .hub import fetch_model

    entries = index().get(check_name(name))
    if entries is None:
        raise UnknownModelError(f"{name!r} is not a model of this release; available: {', '.join(index())}.")
    return fetch_model(name, (home or models_root()) / name, entries, PACKAGE_MODELS / name / CARD_FILE,
                       _local_copies(home), refresh)


def _local_copies(home: Path | None) -> dict[str, list[Path]]:
    """sha256 -> the places on this machine where a file with it may already be (the package, the home)."""
    roots = [PACKAGE_MODELS, home or models_root()]
    copies: dict[str, list[Path]] = {}
    for name, files in index().items():
        for relative, meta in files.items():
            copies.setdefault(meta["sha256"], []).extend(root / name / relative for root in roots)
    return copies


#: The columns of `zoo list` and of the demo's Models tab.
SUMMARY_HEADER = ("name", "task", "input", "test acc", "size", "where")
UNAVAILABLE = "unavailable"  # the task cell of a model whose card cannot be read


def model_cards() -> dict[str, ModelCard | ZooError]:
    """Every model's card, or the ZooError saying why it cannot be read, in registry order."""
    return {name: card_or_error(name) for name in list_models()}


def model_summaries(cards: dict[str, ModelCard | ZooError] | None = None) -> list[tuple[str, ...]]:
    """One row per model of `cards` (default: `model_cards()`), SUMMARY_HEADER's columns; the app's Models tab
    shows the same. "where": embedded in the package, downloaded (cached), to download on first use, or a local
    model of your own. A model whose card cannot be read has UNAVAILABLE as its task and "-" for its figures
    (`unavailable_models` says why); the others are listed as usual."""
    rows = []
    for name, c in (model_cards() if cards is None else cards).items():
        try:
            where = source(name)
        except (ZooError, OSError):
            where = "-"
        if isinstance(c, ZooError):
            rows.append((name, UNAVAILABLE, "-", "-", "-", where))
            continue
        inputs = " + ".join(f"{s.height}x{s.width}" for s in c.inputs)
        acc = f"{c.headline_accuracy:.2%}" if c.headline_accuracy is not None else "-"
        rows.append((name, c.task, inputs, acc, f"{c.size_bytes / 1e6:.1f} MB", where))
    return rows


def unavailable_models(cards: dict[str, ModelCard | ZooError] | None = None) -> dict[str, str]:
    """The models of `cards` (default: `model_cards()`) whose card cannot be read: name -> zoo's message, without
    the model's folder."""
    errors = model_cards() if cards is None else cards
    return {name: without_folder(str(error), name) for name, error in errors.items()
            if isinstance(error, ZooError)}
