"""The first deformable layer's offset branch as a small ONNX graph of its own: offsets.onnx.

The app runs on onnxruntime alone, which cannot expose a graph's intermediate tensors; this file
is the part of model.onnx that computes the first DeformConv's offsets (image -> normalisation ->
offset Conv), cut out unchanged (its weights still read from model.safetensors), so the app can
draw where that layer samples. The DeformConv's
geometry (kernel, strides, pads, dilations, offset groups) travels in the file's metadata_props.

    python -m export.offsets zoo/models/deformable-cnn/model.onnx zoo/models/deformable-cnn/offsets.onnx
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
from onnx import helper

from zoo.files import OFFSETS_FILE
#: metadata_props key holding the DeformConv's geometry as JSON.
GEOMETRY_KEY = "deform_geometry"


def offsets_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """The subgraph from the graph's inputs to the first DeformConv's offset input; None without DeformConv."""
    deform = next((node for node in model.graph.node if node.op_type == "DeformConv"), None)
    if deform is None:
        return None
    offsets = deform.input[2]
    part = onnx.utils.Extractor(model).extract_model([i.name for i in model.graph.input], [offsets])
    attributes = {a.name: helper.get_attribute_value(a) for a in deform.attribute}
    weight = next(t for t in model.graph.initializer if t.name == deform.input[1])
    geometry = {
        "kernel": list(weight.dims[2:]),
        "strides": list(attributes.get("strides", [1, 1])),
        "pads": list(attributes.get("pads", [0, 0, 0, 0])),
        "dilations": list(attributes.get("dilations", [1, 1])),
        "offset_group": int(attributes.get("offset_group", 1)),
    }
    part.opset_import.extend(op for op in model.opset_import if op.domain not in {o.domain for o in part.opset_import})
    del part.metadata_props[:]
    for key, value in {p.key: p.value for p in model.metadata_props}.items():
        part.metadata_props.add(key=key, value=value)
    part.metadata_props.add(key=GEOMETRY_KEY, value=json.dumps(geometry))
    return part


def write_offsets_model(model_path: Path, out_path: Path) -> bool:
    """Write `out_path` from `model_path` if the model has a DeformConv; returns whether it wrote one."""
    # Weights stay external: the cut-out graph reads the same bytes of model.safetensors as model.onnx.
    part = offsets_model(onnx.load(str(model_path), load_external_data=False))
    if part is None:
        return False
    onnx.save(part, str(out_path))
    onnx.checker.check_model(str(out_path), full_check=True)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m export.offsets", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported model.onnx with a DeformConv")
    parser.add_argument("out", type=Path, help=f"where to write the offsets graph (conventionally {OFFSETS_FILE})")
    args = parser.parse_args(argv)
    if not write_offsets_model(args.model, args.out):
        parser.error(f"{args.model} has no DeformConv node; only deformable models have offsets to show.")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
