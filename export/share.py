"""python -m export share NAME NAME [...]: the tensors that models hold alike, stored once in a file each lists.

carplane-linear is resnet50-cifar8's frozen backbone under a linear head: the two model.safetensors hold some
24 MB of the same tensors. `share_weights` finds the tensors that every named model holds with the same name,
dtype, shape and bytes, writes them to one safetensors file (SHARED_WEIGHTS_FILE) that is byte for byte the
same in each model's folder, keeps the rest in each model.safetensors (its metadata as it was), points every
graph of the folder that read them (model.onnx, model-portable.onnx, offsets.onnx) at their new place (ONNX
external data: location, offset, length), and records the new files' sha256 and sizes in each card's `files`.
A download then fetches those bytes once (files are published and fetched by sha256).

Only `files` of a card changes, which the card digest in model.onnx leaves out, so the graphs' stamps stay
valid; the model READMEs, which name the weight files, are re-rendered. Each graph is checked to be the same
graph reading the same bytes (its self-contained form is byte for byte what it was) and the test vectors are
run before anything is replaced. A quantized variant whose card pins a changed file's sha256 (its
`source_sha256`) is brought up to date and re-stamped. Sharing again is a no-op; re-exporting one of the
models writes it whole, and sharing again splits it as before.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Collection, Iterator, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from zoo.card import ModelCard
from zoo.errors import ZooError
from zoo.files import CARD_FILE, GRAPH_FILE, SHARED_WEIGHTS_FILE, TEST_VECTORS, WEIGHTS_FILE, WEIGHTS_SUFFIX
from zoo.onnxfile import self_contained
from zoo.registry import PACKAGE_MODELS
from zoo.runtime import file_entry, onnx_metadata, session_options, verify_card, verify_files

from .errors import ExportError
from .report import model_readme
from .stamp_card import README_FILE, repin_variants
from .weights import StoredTensor, _point_into, safetensors_header, stored_in

#: The shared file's one metadata entry: the models that hold it (a JSON list of names, sorted).
SHARED_BY_KEY = "shared_by"
#: Bytes per element of each safetensors dtype: tensors are laid out largest first, so each stays aligned.
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class ShareError(ExportError):
    """Models whose weights cannot be shared as asked; nothing was changed."""


@dataclass(frozen=True)
class Tensor:
    """A tensor's bytes as a safetensors file stores them."""

    dtype: str
    shape: tuple[int, ...]
    data: memoryview

    def same_as(self, other: "Tensor") -> bool:
        return self.dtype == other.dtype and self.shape == other.shape and self.data == other.data


def safetensors_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors file holding `tensors`, the same bytes for the same tensors and metadata (in its order).

    safetensors' own writer lays metadata out in an order that changes from one process to the next; a
    file that two folders and a download by sha256 share must not. Tensors go largest dtype first, then by
    name, after a header padded to 8 bytes, so each starts aligned to its element size.
    """
    unknown = sorted({t.dtype for t in tensors.values()} - set(DTYPE_BYTES))
    if unknown:
        raise ShareError(f"tensors of dtype {', '.join(unknown)} cannot be stored here; known: {sorted(DTYPE_BYTES)}")
    order = sorted(tensors, key=lambda name: (-DTYPE_BYTES[tensors[name].dtype], name))
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in order:
        tensor = tensors[name]
        header[name] = {"dtype": tensor.dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(tensor.data)]}
        offset += len(tensor.data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return b"".join([len(text).to_bytes(8, "little"), text, *(tensors[name].data for name in order)])


def read_safetensors(data: bytes | memoryview) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors (in file order) and the metadata of a safetensors file's bytes."""
    view = memoryview(data)
    header, base = safetensors_header(view)
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {name: Tensor(entry["dtype"], tuple(entry["shape"]),
                            view[base + entry["data_offsets"][0]:base + entry["data_offsets"][1]])
               for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0])}
    return tensors, metadata


@dataclass
class Folder:
    """One model folder as it is: its card (checked against every file and the graph) and its weight files."""

    name: str
    path: Path
    card: ModelCard
    weights: dict[str, bytes]  # file name -> bytes, model.safetensors first
    stored: dict[str, StoredTensor]  # tensor name -> where it is stored

    @classmethod
    def open(cls, root: Path, name: str) -> "Folder":
        path = Path(root) / name
        if not (path / CARD_FILE).is_file():
            raise ShareError(f"no model {name!r} in {root} (no {CARD_FILE}); export it first: python -m export {name}")
        card = ModelCard.read(path)
        verify_files(path, card)  # a damaged or replaced file is never spread to another folder
        verify_card(path, card, onnx_metadata(path / GRAPH_FILE))
        weights = {file: (path / file).read_bytes() for file in card.weight_files}
        return cls(name, path, card, weights, _layout(weights))  # the headers of the bytes read, not read again

    def tensor(self, name: str) -> Tensor:
        where = self.stored[name]
        data = memoryview(self.weights[where.file])[where.offset:where.offset + where.length]
        return Tensor(where.dtype, where.shape, data)

    def graphs(self) -> list[str]:
        """The ONNX files of the folder (model.onnx first): each may read the weight files as external data."""
        return sorted((f for f in self.card.files if f.endswith(".onnx")), key=lambda f: (f != GRAPH_FILE, f))


@dataclass
class Sharing:
    """What `share_weights` found and did: bytes are as the files on disk have them."""

    models: list[str]
    shared_file: str
    tensors: int  # how many tensors are stored once
    shared_bytes: int  # the shared file's size
    own_bytes: dict[str, dict[str, int]]  # per model: bytes of its other files, "before" and "after"
    changed: bool  # False: the models already shared exactly these tensors
    updated_variants: list[str] = field(default_factory=list)  # quantized variants whose cards now pin the new files

    def summary(self) -> str:
        if not self.changed:
            return f"{', '.join(self.models)} already share {self.shared_file}: nothing changed"
        lines = [f"{self.shared_file}: {self.tensors} tensors, {self.shared_bytes:,} bytes, the same file in "
                 f"{', '.join(self.models)}"]
        lines += [f"{name}: its own files {sizes['before']:,} -> {sizes['after']:,} bytes"
                  for name, sizes in self.own_bytes.items()]
        lines += [f"{variant}: card re-pinned to the new files and re-stamped" for variant in self.updated_variants]
        return "\n".join(lines)


def share_weights(names: list[str], out_root: Path = PACKAGE_MODELS, shared_file: str = SHARED_WEIGHTS_FILE) -> Sharing:
    """Store the tensors that the models `names` (folders under `out_root`) hold alike once, in `shared_file`."""
    names = list(dict.fromkeys(names))
    if len(names) < 2:
        raise ShareError(f"sharing takes two models or more, got {names}")
    if PurePosixPath(shared_file).name != shared_file or not shared_file.endswith(WEIGHTS_SUFFIX) \
            or shared_file == WEIGHTS_FILE:
        raise ShareError(f"{shared_file!r}: the shared file's name is a plain *{WEIGHTS_SUFFIX} name, "
                         f"not {WEIGHTS_FILE}")
    out_root = Path(out_root)
    folders = [Folder.open(out_root, name) for name in names]
    _refuse_other_holders(folders, out_root)
    common = _alike(folders)
    shared = safetensors_bytes({name: folders[0].tensor(name) for name in common},
                               {SHARED_BY_KEY: json.dumps(sorted(names))})
    plans = {folder.name: _plan(folder, common, shared_file, shared) for folder in folders}
    own_before = {folder.name: _own_bytes(folder.card, shared_file) for folder in folders}
    if not any(plans.values()):
        unchanged = {name: {"before": size, "after": size} for name, size in own_before.items()}
        return Sharing(names, shared_file, len(common), len(shared), unchanged, changed=False)
    changing = [folder for folder in folders if plans[folder.name]]
    with tempfile.TemporaryDirectory(prefix=".share-", dir=out_root) as tmp:  # beside the folders: renames stay cheap
        staged = {folder.name: _stage(folder, plans[folder.name], Path(tmp)) for folder in changing}
        for folder in changing:  # every folder checked before any is replaced
            _check(folder, staged[folder.name])
        for folder in changing:
            _replace_folder(staged[folder.name], folder.path)
    after = {f.name: ModelCard.read(f.path) for f in folders}
    own_bytes = {name: {"before": own_before[name], "after": _own_bytes(after[name], shared_file)} for name in names}
    variants = [variant for folder in changing
                for variant in repin_variants(out_root, folder.name, folder.card.files, after[folder.name])]
    return Sharing(names, shared_file, len(common), len(shared), own_bytes, True, variants)


def _own_bytes(card: ModelCard, shared_file: str) -> int:
    """Bytes of a model's files other than the shared weight file: what it does not share with another model."""
    return sum(int(meta["bytes"]) for name, meta in card.files.items() if name != shared_file)


def _refuse_other_holders(folders: list[Folder], root: Path) -> None:
    """Refuse to rewrite a shared file that a model left out of `folders` holds too: it would stop being shared."""
    named = {folder.name for folder in folders}
    held = {(file, folder.card.files[file]["sha256"]): folder.name
            for folder in folders for file in folder.card.weight_files[1:]}
    if not held:
        return
    for other, card in cards_in(root, other_than=named).items():
        for (file, sha256), holder in held.items():
            if card.files.get(file, {}).get("sha256") == sha256:
                raise ShareError(f"{holder}'s {file} is also {other}'s: share them together "
                                 f"(python -m export share {' '.join(sorted(named | {other}))})")


def list_models_in(root: Path) -> list[str]:
    """The model folders in `root`: those with a card."""
    return sorted(p.name for p in Path(root).iterdir() if not p.name.startswith(".") and (p / CARD_FILE).is_file())


def cards_in(root: Path, other_than: Collection[str] = ()) -> dict[str, ModelCard]:
    """The cards of the model folders in `root` but those named `other_than`, by name; a card that cannot be read
    is left out (a damaged model elsewhere is not these models' to judge)."""
    cards = {}
    for name in list_models_in(root):
        if name not in other_than:
            try:
                cards[name] = ModelCard.read(Path(root) / name)
            except ZooError:
                continue
    return cards


def _alike(folders: list[Folder]) -> list[str]:
    """The tensors every folder holds with the same name, dtype, shape and bytes, by name."""
    first, rest = folders[0], folders[1:]
    common = [name for name in sorted(first.stored)
              if all(name in other.stored and first.tensor(name).same_as(other.tensor(name)) for other in rest)]
    if not common:
        raise ShareError(f"{', '.join(f.name for f in folders)} hold no tensor with the same name, dtype, shape and "
                         "bytes: nothing to share")
    return common


def _plan(folder: Folder, common: list[str], shared_file: str, shared: bytes) -> dict[str, bytes | None]:
    """The folder's files that sharing writes (name -> new bytes) or removes (name -> None); empty: unchanged."""
    _, metadata = read_safetensors(folder.weights[WEIGHTS_FILE])  # kept as it was, in its order
    own = {name: folder.tensor(name) for name in folder.stored if name not in common}
    weights = {WEIGHTS_FILE: safetensors_bytes(own, metadata), shared_file: shared}
    layout = _layout(weights)
    graphs = {graph: _repointed(folder, graph, layout) for graph in folder.graphs()}
    new = {**weights, **graphs}
    plan: dict[str, bytes | None] = {file: data for file, data in new.items()
                                     if folder.card.files.get(file, {}).get("sha256") != _sha256(data)}
    plan.update({file: None for file in folder.card.weight_files if file not in weights})
    return plan


def _layout(weights: dict[str, bytes]) -> dict[str, StoredTensor]:
    """Where each tensor of the weight files `weights` (name -> bytes) is stored, by name."""
    layout: dict[str, StoredTensor] = {}
    for file, data in weights.items():
        layout.update(stored_in(file, *safetensors_header(data)))
    return layout


def _tensors_of(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers, and those of node attributes and sub-graphs."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors_of(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors_of(subgraph)


def _repointed(folder: Folder, graph_file: str, layout: dict[str, StoredTensor]) -> bytes:
    """The graph's bytes with every external reference into the old weight files moved to the new layout."""
    data = (folder.path / graph_file).read_bytes()
    proto = onnx.load_model_from_string(data)
    spans = {(where.file, where.offset, where.length): name for name, where in folder.stored.items()}
    for tensor in _tensors_of(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        reference = {entry.key: entry.value for entry in tensor.external_data}
        location = reference.get("location", "")
        if location not in folder.weights:
            raise ShareError(f"{folder.path / graph_file} reads {tensor.name} from {location!r}, not from one of its "
                             f"weight files {list(folder.weights)}; re-export {folder.name}")
        span = (location, int(reference.get("offset", 0)), int(reference.get("length", -1)))
        if span not in spans:
            raise ShareError(f"{folder.path / graph_file} reads bytes {span[1]}..{span[1] + span[2]} of {location} for "
                             f"{tensor.name}, which are not one stored tensor; re-export {folder.name}")
        where = layout[spans[span]]
        _point_into(tensor, (where.offset, where.length), where.file)
    return proto.SerializeToString()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stage(folder: Folder, plan: dict[str, bytes | None], tmp: Path) -> Path:
    """A copy of the folder with the plan carried out, its README re-rendered and its card's `files` updated."""
    stage = tmp / folder.name
    shutil.copytree(folder.path, stage, symlinks=False)
    for file, data in plan.items():
        if data is None:
            (stage / file).unlink()
        else:
            (stage / file).write_bytes(data)
    files = {file: meta for file, meta in folder.card.files.items() if plan.get(file, b"") is not None}
    files.update({file: file_entry(stage / file) for file, data in plan.items() if data is not None})
    card = replace(folder.card, files=dict(sorted(files.items())))
    if README_FILE in files:  # the README names the weight files
        (stage / README_FILE).write_text(model_readme(card))
        files[README_FILE] = file_entry(stage / README_FILE)
    replace(card, files=dict(sorted(files.items()))).write(stage)
    return stage


def _check(folder: Folder, stage: Path) -> None:
    """The staged folder is consistent and computes what the folder computed: each graph's self-contained form
    (its weights inside) is byte for byte what it was, and model.onnx reproduces the test vectors."""
    card = ModelCard.read(stage)
    verify_files(stage, card)
    verify_card(stage, card, onnx_metadata(stage / GRAPH_FILE))  # the digest left `files` out: still valid
    for graph in folder.graphs():
        if self_contained(stage / graph) != self_contained(folder.path / graph):
            raise ShareError(f"{graph} of {folder.name} would no longer read the same weights; nothing was changed")
    vectors = stage / TEST_VECTORS
    if not (vectors / "input_0.pb").is_file():
        return
    session = ort.InferenceSession(self_contained(stage / GRAPH_FILE), session_options(config=card.session_config),
                                   providers=["CPUExecutionProvider"])
    feeds = {spec.name: numpy_helper.to_array(onnx.load_tensor(str(vectors / f"input_{k}.pb")))
             for k, spec in enumerate(session.get_inputs())}
    for k, output in enumerate(session.run(None, feeds)):
        expected = numpy_helper.to_array(onnx.load_tensor(str(vectors / f"output_{k}.pb")))
        if not np.allclose(output, expected, rtol=1e-4, atol=card.tolerance):
            raise ShareError(f"{folder.name}'s model.onnx no longer reproduces {TEST_VECTORS}/output_{k}.pb; "
                             "nothing was changed")


def _replace_folder(stage: Path, target: Path) -> None:
    """Put the staged folder in place of `target` (the old one is removed once the new one is there)."""
    old = target.with_name(f".{target.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    target.rename(old)
    try:
        shutil.copytree(stage, target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        old.rename(target)
        raise
    shutil.rmtree(old)
