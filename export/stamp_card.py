"""Stamp model.onnx with its card's digest, so the runtime refuses an edited or damaged card.json;
`python -m export restamp NAME|all`: bring installed models in line with a card whose content changed."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from zoo.card import ModelCard, render_card
from zoo.files import CARD_DIGEST_KEY, CARD_FILE, GRAPH_FILE
from zoo.onnxfile import MODEL_METADATA_PROPS, fields
from zoo.runtime import card_digest, file_entry, onnx_metadata, verify_files

from .errors import ExportError

README_FILE = "README.md"


def stamped(data: bytes, digest: str) -> bytes:
    """A serialized ONNX model with `digest` as its CARD_DIGEST_KEY metadata (replacing an older one).

    Only metadata_props change (checked): the graph, its external data references and every other field are
    the same bytes, so parity results and test vectors stay valid.
    """
    proto = onnx.load_model_from_string(data)
    kept = [entry for entry in proto.metadata_props if entry.key != CARD_DIGEST_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    stamp = proto.metadata_props.add()
    stamp.key = CARD_DIGEST_KEY
    stamp.value = digest
    out = proto.SerializeToString()
    if _without_metadata(out) != _without_metadata(data):
        raise ExportError("stamping the card's digest would change more than the graph's metadata_props")
    return out


def _without_metadata(data: bytes) -> list[bytes]:
    return [bytes(f.raw) for f in fields(memoryview(data)) if f.number != MODEL_METADATA_PROPS]


def stamp_card_digest(onnx_path: Path, card: ModelCard) -> None:
    """Record `card_digest(card)` in the graph's metadata_props (replacing an older one).

    Call it once the card's content is final and before the files are hashed into `card.files`:
    the digest leaves `files` out, and model.onnx's own hash must be taken after the stamp. Only
    metadata changes, so parity results and test vectors stay valid; external data is left as it is.
    """
    onnx_path = Path(onnx_path)
    onnx_path.write_bytes(stamped(onnx_path.read_bytes(), card_digest(card.to_dict())))


def restamp(folder: Path, card: ModelCard | None = None) -> list[str]:
    """Make a model folder agree with `card` (default: its card.json as it is); returns the files rewritten.

    For a card whose content changed (a field added, provenance brought up to date): README.md is re-rendered
    from it, its digest stamped into model.onnx and into every other graph of the folder that carries one, and
    `files` re-hashed for what changed; card.json is written last. Every file the card on disk lists is first
    checked against its recorded sha256 and size, so restamping never vouches for a damaged or replaced file.
    Graphs change in their metadata only. Nothing to do: nothing is written. A quantized variant beside it that
    pins its files is pinned to the new ones (`repin_variants`).
    """
    from .report import model_readme  # the report imports the runtime's cards, not this module

    folder = Path(folder)
    on_disk = ModelCard.read(folder)
    verify_files(folder, on_disk)
    card = on_disk if card is None else card
    if card.name != on_disk.name:
        raise ExportError(f"{folder}: the card names {card.name!r}, the folder's card {on_disk.name!r}")
    card = replace(card, files=dict(on_disk.files))
    digest = card_digest(card.to_dict())
    rewritten: dict[str, bytes] = {}
    if README_FILE in card.files:
        readme = model_readme(card).encode()
        if readme != (folder / README_FILE).read_bytes():
            rewritten[README_FILE] = readme
    for graph in sorted(f for f in card.files if f.endswith(".onnx")):
        data = (folder / graph).read_bytes()
        recorded = onnx_metadata(folder / graph).get(CARD_DIGEST_KEY)
        if (graph == GRAPH_FILE or recorded is not None) and recorded != digest:
            rewritten[graph] = stamped(data, digest)
    for name, data in rewritten.items():
        _write(folder / name, data)
    files = {**card.files, **{name: file_entry(folder / name) for name in rewritten}}
    new_card = replace(card, files=files)
    text = render_card(new_card.to_dict()).encode()
    if text != (folder / CARD_FILE).read_bytes():
        _write(folder / CARD_FILE, text)
        rewritten[CARD_FILE] = text
    repin_variants(folder.parent, card.name, on_disk.files, new_card)
    return sorted(rewritten)


def _write(path: Path, data: bytes) -> None:
    """Replace `path` by `data` at once: readers see the old file or the new one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def restamp_models(names: list[str], out_root: Path, fill_license: bool = False) -> dict[str, list[str]]:
    """`restamp` each of the models `names` under `out_root` (["all"]: every model there); returns the files
    rewritten by model. `fill_license`: a card with no `license` gets the one its provenance says
    (`export.report.default_license`); a card that has one keeps it."""
    from .report import default_license
    from .share import list_models_in

    out_root = Path(out_root)
    names = list_models_in(out_root) if list(names) == ["all"] else list(names)
    missing = [name for name in names if not (out_root / name / CARD_FILE).is_file()]
    if missing:
        raise ExportError(f"no model {', '.join(map(repr, missing))} in {out_root}; "
                          f"available: {', '.join(list_models_in(out_root)) or 'none'}")
    rewritten: dict[str, list[str]] = {}
    for name in names:
        card = ModelCard.read(out_root / name)
        if fill_license and card.license is None:
            card = replace(card, license=default_license(card))
        rewritten[name] = restamp(out_root / name, card)
    return rewritten


def source_pins(card: ModelCard) -> dict[str, str]:
    """The sha256 of the files a quantized variant is made from, by name: the source's graph and weight files."""
    return {file: card.files[file]["sha256"] for file in (GRAPH_FILE, *card.weight_files)}


def repin_variants(root: Path, source: str, before: dict[str, dict[str, Any]], after: ModelCard) -> list[str]:
    """Quantized variants in `root` made from model `source` whose card pins its files as they were (`before`,
    its card's `files` then: `quantization.source_sha256`), pinned to them as they are (`after`) and re-stamped;
    returns their names. For a source whose files changed but not what they compute (split by `export share`,
    re-stamped): the same graph and tensors. A variant that pins other files (a source exported again) is left:
    quantize it again. The first pins stay in `source_sha256_when_quantized`."""
    from .share import cards_in

    updated = []
    for other, card in cards_in(root).items():
        storage = card.provenance.get("export", {}).get("storage", {})
        quantization = storage.get("quantization") or {}
        pinned = quantization.get("source_sha256") or {}
        if quantization.get("source") != source or not pinned:
            continue
        if any(before.get(file, {}).get("sha256") != sha256 for file, sha256 in pinned.items()):
            continue
        repinned = source_pins(after)
        if repinned == pinned:
            continue
        quantization = {**quantization, "source_sha256": repinned,
                        "source_sha256_when_quantized": quantization.get("source_sha256_when_quantized", pinned)}
        provenance = {**card.provenance, "export": {**card.provenance["export"],
                                                    "storage": {**storage, "quantization": quantization}}}
        restamp(root / other, replace(card, provenance=provenance))
        updated.append(other)
    return updated
