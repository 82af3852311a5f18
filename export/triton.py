"""python -m export triton OUTDIR: the zoo as a Triton Inference Server model repository.

One folder per model in `zoo.list()`: `config.pbtxt` (onnxruntime backend, dynamic batching, the
graph's own input and output names, dtypes and per-item dims) and `1/model.onnx`, the model as one
self-contained file (`zoo.save_onnx`, the portable form where a model has one), so the repository can be
copied anywhere; `labels.txt` names the classes the first output scores (Triton's classification extension).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import onnx

import zoo
from zoo.files import GRAPH_FILE
from zoo.model import CHUNK

from .errors import ExportError

#: The largest batch Triton's dynamic batcher forms: the batch zoo's own `predict_batch` runs.
MAX_BATCH_SIZE = CHUNK
#: How long the batcher waits to fill a batch; a millisecond costs little beside a ResNet-50's run.
MAX_QUEUE_DELAY_US = 1000
VERSION = "1"
LABELS_FILE = "labels.txt"
#: ONNX tensor element types (onnx.TensorProto) as Triton data types.
TRITON_TYPES = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32",
                onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


class TritonExportError(ExportError):
    """A model that Triton's configuration cannot describe (e.g. an unsupported dtype or a dynamic dim)."""


def tensor_entries(values: Sequence[onnx.ValueInfoProto], labels: str | None = None) -> list[str]:
    """config.pbtxt entries for graph inputs or outputs: name, Triton dtype, dims without the batch dim."""
    entries = []
    for index, value in enumerate(values):
        tensor = value.type.tensor_type
        if tensor.elem_type not in TRITON_TYPES:
            raise TritonExportError(f"{value.name}: ONNX element type {tensor.elem_type} has no Triton type here")
        dims = [dim.dim_value for dim in tensor.shape.dim[1:]]
        if not all(dims):
            raise TritonExportError(f"{value.name}: only the batch dimension may be dynamic, got {tensor.shape}")
        label_line = f'\n    label_filename: "{labels}"' if labels and index == 0 else ""
        entries.append(f'  {{\n    name: "{value.name}"\n    data_type: {TRITON_TYPES[tensor.elem_type]}\n'
                       f'    dims: [ {", ".join(map(str, dims))} ]{label_line}\n  }}')
    return entries


def model_config(name: str, graph: onnx.GraphProto, labels: str | None) -> str:
    """The config.pbtxt of one model."""
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    separator = ",\n"
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nbackend: "onnxruntime"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        f"input [\n{separator.join(tensor_entries(inputs))}\n]\n"
        f"output [\n{separator.join(tensor_entries(graph.output, labels))}\n]\n"
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n}}\n"
    )


def write_repository(out: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Write the repository for `names` (default: every model in the zoo) under `out`; returns the model folders.

    Models whose card asks onnxruntime to fold int8-stored weights (`session_config`) still run under
    Triton's onnxruntime backend, which has no setting for that: they dequantize their weights on each run.
    """
    written = []
    for name in names or zoo.list():
        card = zoo.card(name)
        target = Path(out) / name
        if target.exists():
            shutil.rmtree(target)
        (target / VERSION).mkdir(parents=True)
        graph_file = zoo.save_onnx(name, target / VERSION / GRAPH_FILE, portable=True)
        # Every model's first output scores its labels (logits, the changer's class_probs).
        (target / LABELS_FILE).write_text("\n".join(card.labels) + "\n")
        graph = onnx.load(str(graph_file)).graph
        (target / "config.pbtxt").write_text(model_config(name, graph, LABELS_FILE))
        written.append(target)
    return written
