"""Checkpoint -> model.onnx: both torch.onnx exporters, the DeformConv registration, metadata_props."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from .deform_onnx import DEFORM_OPSET, TRANSLATION_TABLE, register_torchscript

EXPORTERS = ("dynamo", "torchscript")


def to_onnx(model: nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str], output_names: list[str],
            exporter: str = "dynamo", opset: int = DEFORM_OPSET, optimize: bool = True) -> onnx.ModelProto:
    """Export `model` with a dynamic batch dimension on every input and output."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(
                model, example, dynamo=True, opset_version=opset, input_names=input_names,
                output_names=output_names, custom_translation_table=TRANSLATION_TABLE,
                dynamic_shapes=tuple({0: batch} for _ in example), optimize=optimize, verbose=False,
            )
            proto = program.model_proto
            for node in proto.graph.node:  # the exporter's stack traces and module paths: 80% of a graph's bytes
                del node.metadata_props[:]
            cast_constants_plainly(proto)
        else:
            register_torchscript()
            buffer = io.BytesIO()
            torch.onnx.export(
                model, example, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in [*input_names, *output_names]},
            )
            proto = onnx.load_from_string(buffer.getvalue())
    return proto


def cast_constants_plainly(proto: onnx.ModelProto) -> None:
    """Rewrite CastLike(constant, x) as Cast(constant, to=x's type), in place.

    The unoptimised dynamo graph gives each bias-free convolution a zero bias built as
    Expand(CastLike(0, activations), Shape(weight)). CastLike reads a runtime tensor, so onnxruntime's
    load-time constant folding leaves that bias uncomputed, and with it every Conv + BatchNorm and
    Conv + activation fusion: about 2x slower (README, Performance: before and after). A Cast of a constant
    folds; the weights stay the state dict's, in model.safetensors.
    """
    typed = onnx.shape_inference.infer_shapes(proto)
    types = {info.name: info.type.tensor_type.elem_type
             for info in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]}
    constants = {node.output[0] for node in proto.graph.node if node.op_type == "Constant"}
    constants |= {tensor.name for tensor in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "CastLike" and node.input[0] in constants and types.get(node.input[1]):
            node.CopyFrom(onnx.helper.make_node("Cast", [node.input[0]], list(node.output), name=node.name,
                                                to=types[node.input[1]]))


def set_metadata(proto: onnx.ModelProto, values: dict[str, Any]) -> None:
    """metadata_props: strings as they are, anything else as JSON."""
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)


def op_types(proto: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in proto.graph.node}


def save(proto: onnx.ModelProto, path: Path) -> None:
    onnx.save(proto, str(path))
