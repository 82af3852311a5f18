"""Every weight stored once: model.safetensors holds them, model.onnx points into it.

ONNX external data may name a file with an `offset` and `length`; safetensors keeps each tensor as
raw little-endian bytes at a known offset, the very layout ONNX reads. So the graph's initializers
are references into model.safetensors, which stays a plain safetensors file that torch (or numpy)
loads by parameter name.

Optionally the convolution weights are kept as per-output-channel symmetric int8 (`X` int8 with
`X.scale` float32): the graph dequantizes them (DequantizeLinear, folded into float32 weights when
the session loads) and computes in float32. That halves a ResNet-50 again after fp16 would have:
24 MB to store and download.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from safetensors.numpy import save_file
from torch import nn

from training.checkpoint import SCALE_SUFFIX
from zoo.files import WEIGHTS_FILE

INT8_MAX = 127


def round_conv_weights_to_int8(model: nn.Module) -> dict[str, torch.Tensor]:
    """Replace every Conv2d weight by its int8 rounding (w = scale * q, per output channel), in place.

    Returns the scales by parameter name. The model then computes exactly what the stored int8
    weights mean, so ONNX parity is checked against it at the usual tolerance.
    """
    scales = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight.data
            scale = weight.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / INT8_MAX
            q = torch.round(weight / scale.view(-1, 1, 1, 1)).clamp(-INT8_MAX, INT8_MAX)
            module.weight.data = q * scale.view(-1, 1, 1, 1)
            scales[f"{module_name}.weight"] = scale
    return scales


def safetensors_header(data: bytes | memoryview) -> tuple[dict[str, Any], int]:
    """A safetensors file's header (tensors by name, "__metadata__") and where its tensor bytes start."""
    header_size = int.from_bytes(bytes(data[:8]), "little")
    return json.loads(bytes(data[8:8 + header_size])), 8 + header_size


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """`safetensors_header` of the file `path`, reading only its header."""
    with open(path, "rb") as handle:
        size = handle.read(8)
        return safetensors_header(size + handle.read(int.from_bytes(size, "little")))


def _safetensors_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """Absolute (offset, length) of every tensor's bytes in a safetensors file."""
    return {name: (where.offset, where.length) for name, where in stored_in(path.name, *_read_header(path)).items()}


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as a weight file stores it: the file (by name, in the model folder), its safetensors dtype and
    shape, and the absolute offset and length of its bytes there, which is what ONNX external data points at."""

    file: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int


def stored_in(file: str, header: dict[str, Any], base: int) -> dict[str, StoredTensor]:
    """The tensors of the weight file named `file`, by name, from its `safetensors_header` (header, base)."""
    found = {}
    for name, entry in header.items():
        if name != "__metadata__":
            start, end = entry["data_offsets"]
            found[name] = StoredTensor(file, entry["dtype"], tuple(entry["shape"]), base + start, end - start)
    return found


@dataclass
class StoredWeights:
    """A written model.safetensors: which tensors it holds, where their bytes are, which are int8."""

    tensors: dict[str, np.ndarray]
    offsets: dict[str, tuple[int, int]]
    int8: frozenset[str]

    @classmethod
    def write(cls, state: dict[str, torch.Tensor], folder: Path, int8_scales: dict[str, torch.Tensor] | None = None,
              metadata: dict[str, Any] | None = None) -> "StoredWeights":
        """Write `state` (a state dict; `int8_scales` names the weights kept as int8) to folder/model.safetensors."""
        int8_scales = int8_scales or {}
        tensors: dict[str, np.ndarray] = {}
        for name, value in state.items():
            array = value.detach().cpu().contiguous().numpy()
            if name in int8_scales:
                scale = int8_scales[name].detach().cpu().numpy().astype(np.float32)
                tensors[name] = np.round(array / scale.reshape(-1, *[1] * (array.ndim - 1))).astype(np.int8)
                tensors[name + SCALE_SUFFIX] = scale
            else:
                tensors[name] = array
        return cls.write_arrays(tensors, folder, frozenset(int8_scales), metadata)

    @classmethod
    def write_arrays(cls, tensors: dict[str, np.ndarray], folder: Path, int8: frozenset[str] = frozenset(),
                     metadata: dict[str, Any] | None = None) -> "StoredWeights":
        """Write numpy `tensors` as they are to folder/model.safetensors (`int8`: names kept behind a DequantizeLinear)."""
        path = Path(folder) / WEIGHTS_FILE
        save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})
        return cls(tensors, _safetensors_offsets(path), int8)

    def link(self, proto: onnx.ModelProto) -> None:
        """Make `proto` read its weights from the file (int8 ones behind a DequantizeLinear), in place.

        Initializers named like a stored tensor become external references; the exporter's own small
        constants stay inline.
        """
        graph = proto.graph
        dequantize_nodes = []
        for initializer in graph.initializer:
            name = initializer.name
            if name not in self.tensors:
                continue
            if name in self.int8:
                dequantized = f"{name}.dequantized"
                for node in graph.node:  # consumers now read the float weights
                    node.input[:] = [dequantized if i == name else i for i in node.input]
                scale = numpy_helper.from_array(self.tensors[name + SCALE_SUFFIX], name + SCALE_SUFFIX)
                _point_into(scale, self.offsets[scale.name])
                graph.initializer.append(scale)
                dequantize_nodes.append(helper.make_node("DequantizeLinear", [name, scale.name], [dequantized],
                                                         axis=0, name=f"dequantize.{name}"))
                initializer.CopyFrom(numpy_helper.from_array(self.tensors[name], name))
            _point_into(initializer, self.offsets[name])
        stale = {node.input[0] for node in dequantize_nodes}  # type annotations still saying float
        kept = [info for info in graph.value_info if info.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(kept)
        nodes = [*dequantize_nodes, *graph.node]  # before their consumers: the node list stays topologically sorted
        del graph.node[:]
        graph.node.extend(nodes)

    def inline_bytes(self, proto: onnx.ModelProto) -> int:
        """Bytes of initializers still inside the graph (the exporter's constants)."""
        return sum(len(t.raw_data) for t in proto.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL)


def _point_into(tensor: onnx.TensorProto, span: tuple[int, int], location: str = WEIGHTS_FILE) -> None:
    """Make `tensor` ONNX external data: `span`'s (offset, length) bytes of the file `location` beside the graph."""
    tensor.ClearField("raw_data")
    for field in ("float_data", "int32_data", "int64_data", "double_data"):
        tensor.ClearField(field)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(span[0])), ("length", str(span[1]))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
