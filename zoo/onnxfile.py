"""ONNX files read and rewritten at the protobuf level, with neither onnx nor onnxruntime.

A shipped graph keeps its weights as ONNX external data: references (file, offset, length) into the
model's `model.safetensors`, so every tensor is stored once. `self_contained` turns such a graph into
one file with the weights inside, which any ONNX tool or runtime reads wherever the bytes end up:
the onnx package refuses external data behind a symbolic link (the Hugging Face Hub cache) or with
several hard links (uv's installs), and some runtimes look for it beside a link's target.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from .errors import ModelFileError

# Field numbers of onnx.proto: ModelProto.graph and .metadata_props, GraphProto.initializer,
# TensorProto.raw_data, .external_data and .data_location, StringStringEntryProto.key and .value.
MODEL_GRAPH = 7
MODEL_METADATA_PROPS = 14
GRAPH_INITIALIZER = 5
TENSOR_RAW_DATA = 9
TENSOR_EXTERNAL_DATA = 13
TENSOR_DATA_LOCATION = 14
ENTRY_KEY, ENTRY_VALUE = 1, 2
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
LENGTH_DELIMITED = 2


@dataclass(frozen=True)
class Field:
    """One field of a serialized protobuf message: its number, its value, and its bytes tag included."""

    number: int
    value: memoryview | int
    raw: memoryview


def fields(buffer: memoryview) -> Iterator[Field]:
    """Each top-level field of a serialized protobuf message, in file order."""
    position = 0
    while position < len(buffer):
        start = position
        tag, position = _varint(buffer, position)
        number, wire_type = tag >> 3, tag & 7
        value: memoryview | int
        if wire_type == 0:
            value, position = _varint(buffer, position)
        elif wire_type == LENGTH_DELIMITED:
            length, position = _varint(buffer, position)
            value, position = buffer[position:position + length], position + length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, position = buffer[position:position + width], position + width
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if position > len(buffer):
            raise ValueError("a field runs past the end of the file")
        yield Field(number, value, buffer[start:position])


def _varint(buffer: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


#: A serialized message as the pieces it is joined from: the bytes are copied once, when the file is joined.
Chunks = list[bytes | memoryview]


def _length_delimited(number: int, payload: Chunks) -> Chunks:
    size = sum(len(chunk) for chunk in payload)
    return [_encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(size), *payload]


def _entries(message: memoryview, number: int) -> dict[str, str]:
    """The StringStringEntryProto fields `number` of `message` as a dict."""
    out = {}
    for field in fields(message):
        if field.number == number:
            entry = {f.number: f.value for f in fields(field.value)}  # type: ignore[arg-type]
            out[bytes(entry.get(ENTRY_KEY, b"")).decode()] = bytes(entry.get(ENTRY_VALUE, b"")).decode()
    return out


def metadata(data: bytes | memoryview) -> dict[str, str]:
    """The metadata_props of a serialized ONNX model."""
    return _entries(memoryview(data), MODEL_METADATA_PROPS)


def self_contained(path: Path) -> bytes:
    """The ONNX model at `path` with every external initializer's bytes moved inside it.

    External data must be a plain file name in the graph's own folder (as zoo writes it); the result
    is the same graph, the same metadata and the same tensor bytes, readable from anywhere.
    """
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read ({exc}); reinstall the package or re-export the model.") from None
    weights: dict[str, bytes] = {}
    try:
        return b"".join(_rewritten(data, MODEL_GRAPH, lambda graph: _rewritten(
            graph, GRAPH_INITIALIZER, lambda tensor: _inline_tensor(tensor, path, weights))))
    except (IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not a readable ONNX file ({exc}); re-export the model.") from None


def _rewritten(message: memoryview, number: int, rewrite: Callable[[memoryview], Chunks]) -> Chunks:
    """`message` with each length-delimited field `number` replaced by `rewrite` of its value."""
    out: Chunks = []
    for field in fields(message):
        out += _length_delimited(number, rewrite(field.value)) if field.number == number else [field.raw]  # type: ignore[arg-type]
    return out


def _inline_tensor(tensor: memoryview, path: Path, weights: dict[str, bytes]) -> Chunks:
    parsed = list(fields(tensor))
    if not any(f.number == TENSOR_DATA_LOCATION and f.value == EXTERNAL for f in parsed):
        return [tensor]
    reference = _entries(tensor, TENSOR_EXTERNAL_DATA)
    location = reference.get("location", "")
    parts = PurePosixPath(location).parts
    if len(parts) != 1 or parts[0] in ("", ".", "..") or "\\" in location:
        raise ModelFileError(f"{path} reads weights from {location!r}, not a file beside it; re-export the model.")
    if location not in weights:
        try:
            weights[location] = (path.parent / location).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{path} reads its weights from {location}, which cannot be read ({exc}); "
                                 "reinstall the package or re-export the model.") from None
    source = weights[location]
    offset = int(reference.get("offset", "0"))
    length = int(reference["length"]) if "length" in reference else len(source) - offset
    if offset < 0 or length < 0 or offset + length > len(source):
        raise ModelFileError(f"{path} reads bytes {offset}..{offset + length} of {location}, which has {len(source)}: "
                             "the two files do not belong together; reinstall the package or re-export the model.")
    kept: Chunks = [f.raw for f in parsed if f.number not in (TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION)]
    return kept + _length_delimited(TENSOR_RAW_DATA, [memoryview(source)[offset:offset + length]])
