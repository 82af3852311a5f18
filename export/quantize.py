"""python -m export quantize NAME: NAME-int8, a static int8 QDQ variant of an installed model, shipped where it pays.

The float graph (int8-stored weights dequantized, batch norms folded, the input normalisation's scale folded into
the first convolution) is quantized by onnxruntime.quantization (QDQ: uint8 activations, per-channel int8
weights), calibrated on training inputs (a classifier's train split, the changer's pairs generated from its train
sources). It is then measured against the float model on this machine, zoo's session settings for both, timed
interleaved: test accuracy on the held-out inputs, batch-1 latency and batch-64 throughput. The variant is
installed only where it is at least MIN_SPEEDUP times faster at both batch sizes and loses at most
MAX_INT8_ACCURACY_LOSS of test accuracy; either way the figures go to the report (JSON), so a variant that is not
shipped says why.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

import zoo
from zoo.model import CHUNK
from zoo.timing import cpu_name, interleaved
from training.data import random_pick
from training.labelled import TEST_PAIRS_SEED
from training.tasks import recipe_inputs
from training.recipes import Recipe
from zoo.card import ModelCard
from zoo.registry import PACKAGE_MODELS, model_dir
from zoo.files import CARD_DIGEST_KEY, GRAPH_FILE
from zoo.onnxfile import self_contained
from zoo.runtime import onnx_metadata, session_options

from .build import MAX_INT8_ACCURACY_LOSS, install
from .errors import ExportError
from .onnx_export import op_types, save, set_metadata
from .report import default_license
from .stamp_card import source_pins
from .validate import write_test_vectors
from .weights import StoredWeights

SUFFIX = "-int8"
MIN_SPEEDUP = 1.5
CALIBRATION_INPUTS = 512
#: Held-out pairs the changer's accuracy is measured on (a classifier uses its whole test split).
TEST_PAIRS = 4000
VECTOR_INPUTS = 8
INLINE_BYTES = 1024


class QuantizationError(ExportError):
    """A model cannot be quantized as asked; the message says what to do."""


def labelled_inputs(card: ModelCard, which: str, count: int | None, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feeds and true class indices from the model's own data: `which` split ("train" or "test"); `count`
    inputs drawn at random (None: a classifier's whole split, TEST_PAIRS of the changer's pairs)."""
    recipe = Recipe.from_record(card.provenance["training"]["recipe"])
    inputs = recipe_inputs(recipe, which, pairs=count or TEST_PAIRS, seed=seed)
    if count:
        inputs = inputs.subset(random_pick(len(inputs), count, seed))
    return dict(zip((spec.name for spec in card.inputs), inputs.inputs)), inputs.labels


def batches(feeds: dict[str, np.ndarray], size: int = CHUNK) -> Iterator[dict[str, np.ndarray]]:
    count = len(next(iter(feeds.values())))
    for start in range(0, count, size):
        yield {name: array[start:start + size] for name, array in feeds.items()}


def float_graph(folder: Path) -> onnx.ModelProto:
    """model.onnx with its weights loaded, int8-stored weights dequantized and constants folded (batch norms
    into convolutions), ready for the quantizer; no metadata (the variant gets its own)."""
    import onnxscript.optimizer

    proto = onnx.load_model_from_string(self_contained(folder / GRAPH_FILE))  # every weight file it reads, inline
    fold_weight_dequantization(proto)
    del proto.metadata_props[:]
    return onnxscript.optimizer.optimize(proto)


def fold_weight_dequantization(proto: onnx.ModelProto) -> None:
    """Replace every DequantizeLinear of an initializer by the float32 tensor it computes, in place."""
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(name in initializers for name in node.input if name):
            kept.append(node)
            continue
        quantized, scale = (numpy_helper.to_array(initializers[name]) for name in node.input[:2])
        zero = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 and node.input[2] else 0
        axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
        shape = [1] * quantized.ndim
        if np.ndim(scale):
            shape[axis] = -1
        value = (quantized.astype(np.float32) - np.reshape(zero, shape if np.ndim(zero) else ())) * scale.reshape(shape)
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
    keep_nodes(graph, kept)


def keep_nodes(graph: onnx.GraphProto, kept: list[onnx.NodeProto]) -> None:
    """Make `kept` the graph's nodes, in place, and drop the initializers that nothing reads any more."""
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)


#: Nodes between a graph input and its normalisation that change its layout or type, not its values' scale.
INPUT_PASSTHROUGH = ("Cast", "Transpose")


def fold_input_scale(proto: onnx.ModelProto) -> int:
    """Fold the input normalisation's scale into the first convolution, in place; returns how many were folded.

    The pattern: a graph input, possibly through Cast/Transpose nodes (uint8 NHWC pixels to float NCHW), then
    Mul by a constant `s`, then Sub (or Add) of a constant `m`, read by one Conv (weights `W`, no groups) and
    nothing else; each constant a scalar or per channel ([1, C, 1, 1], [C, 1, 1], ...). It is rewritten as
    Sub(x, m / s) (Add(x, m / s)) read by Conv(W * s), weights scaled per input channel: the same function in
    float (Conv(W, x*s - m) == Conv(W*s, x - m/s), zero padding included), with the Mul gone. Quantized, the Mul
    ran at full resolution as a per-channel QLinearMul (5.7% of carplane-joint-int8's node time at batch 64 in
    onnxruntime's profiler).

    The constants and weights are written as new initializers (others may share the old ones). A graph without
    the pattern, or with a scale that has a zero or a non-finite value, is left as it is; a per-channel constant
    whose channel count differs from the convolution's input channels (a graph no runtime could run) is an error.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers = consumers_of(graph)
    producers = {output: node for node in graph.node for output in node.output}
    graph_outputs = {output.name for output in graph.output}
    graph_inputs = {tensor.name for tensor in graph.input}
    taken = set(initializers) | set(producers) | graph_inputs

    def from_input(name: str) -> bool:
        while name in producers and producers[name].op_type in INPUT_PASSTHROUGH:
            name = producers[name].input[0]
        return name in graph_inputs and name not in initializers

    def only_consumer(name: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in graph_outputs else None

    def fresh(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    folded, removed = 0, set()
    for mul in list(graph.node):
        if mul.op_type != "Mul" or len(mul.input) != 2:
            continue
        data, scale_name = (mul.input if mul.input[1] in initializers else mul.input[::-1])
        if scale_name not in initializers or data in initializers or not from_input(data):
            continue
        shift = only_consumer(mul.output[0])
        if shift is None or shift.op_type not in ("Sub", "Add") or len(shift.input) != 2:
            continue
        if shift.op_type == "Sub" and shift.input[0] != mul.output[0]:
            continue  # m - x*s: the data negated, not this pattern
        shift_name = shift.input[1] if shift.input[0] == mul.output[0] else shift.input[0]
        conv = only_consumer(shift.output[0])
        if (shift_name not in initializers or conv is None or conv.op_type != "Conv" or conv.input[0] != shift.output[0]
                or len(conv.input) < 2 or conv.input[1] not in initializers
                or any(a.name == "group" and a.i != 1 for a in conv.attribute)):
            continue
        weights = numpy_helper.to_array(initializers[conv.input[1]])
        scale = numpy_helper.to_array(initializers[scale_name])
        offset = numpy_helper.to_array(initializers[shift_name])
        channel_scale = per_channel(scale, weights.ndim, weights.shape[1], f"{mul.name}'s constant {scale_name!r}")
        channel_offset = per_channel(offset, weights.ndim, weights.shape[1], f"{shift.name}'s constant {shift_name!r}")
        if channel_scale is None or channel_offset is None or not np.all(np.isfinite(channel_scale)) \
                or np.any(channel_scale == 0):
            continue
        # float64 then back: the rewritten constants are as close to W*s and m/s as float32 holds them.
        scaled = weights.astype(np.float64) * channel_scale.astype(np.float64).reshape(1, -1, *[1] * (weights.ndim - 2))
        scaled_name = fresh(f"{conv.input[1]}.input_scaled")
        offset_name = fresh(f"{shift_name}.over_scale")
        graph.initializer.extend([
            numpy_helper.from_array(scaled.astype(weights.dtype), scaled_name),
            numpy_helper.from_array((offset.astype(np.float64) / scale.astype(np.float64)).astype(offset.dtype),
                                    offset_name)])
        shift.input[:] = [data, offset_name]
        conv.input[1] = scaled_name
        removed.add(id(mul))
        folded += 1
    if folded:
        keep_nodes(graph, [node for node in graph.node if id(node) not in removed])
    return folded


def per_channel(constant: np.ndarray, rank: int, channels: int, what: str) -> np.ndarray | None:
    """`constant` as `channels` values, one per channel (axis 1 of a rank-`rank` tensor it broadcasts against);
    None if it varies along another axis (not a per-channel constant). A channel count other than `channels`
    (or 1) is a graph that cannot run: QuantizationError."""
    if constant.ndim > rank:
        return None
    shape = (1,) * (rank - constant.ndim) + constant.shape
    if any(size != 1 for axis, size in enumerate(shape) if axis != 1):
        return None
    if shape[1] not in (1, channels):
        raise QuantizationError(f"{what} has {shape[1]} channels where the convolution it feeds reads {channels}; "
                                f"the graph cannot run: re-export the model.")
    return np.broadcast_to(constant.reshape(shape[1]), (channels,))


def quantize(float_model: onnx.ModelProto, calibration: dict[str, np.ndarray], out: Path) -> onnx.ModelProto:
    """Static QDQ quantization of `float_model`, calibrated (min/max) on `calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = batches(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    onnx.save(float_model, str(out / "float.onnx"))
    # onnxruntime's symbolic shape inference cannot read the exporter's Constant nodes; ONNX's own suffices.
    quant_pre_process(str(out / "float.onnx"), str(out / "prepared.onnx"), skip_symbolic_shape=True)
    quantize_static(str(out / "prepared.onnx"), str(out / "int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    nodes_to_exclude=head_nodes(onnx.load(str(out / "prepared.onnx"))),
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    # 7-bit weights: x86 CPUs without VNNI multiply u8 x s8 pairs into saturating int16 sums,
                    # which cost the 8-bit variants up to 9 points there (cnn-int8 78.0% -> 69.1% on a Zen 3).
                    reduce_range=True)
    proto = onnx.load(str(out / "int8.onnx"))
    float_max_pool_inputs(proto)
    return proto


def consumers_of(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each tensor, by tensor name."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def head_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the fully connected heads (Gemm, MatMul) and every node after them: they stay float.

    A head is a sliver of the compute, and quantized logits (one step was 0.1 in carplane-linear-int8) let
    runtimes that round a value differently move a probability by several hundredths.
    """
    consumers = consumers_of(proto.graph)
    found, queue = {}, [node for node in proto.graph.node if node.op_type in ("Gemm", "MatMul")]
    while queue:
        node = queue.pop()
        if node.name not in found:
            found[node.name] = node
            queue.extend(user for output in node.output for user in consumers.get(output, []))
    return sorted(found)


def float_max_pool_inputs(proto: onnx.ModelProto) -> None:
    """Remove the Q/DQ pairs whose only consumers are MaxPool nodes, in place: max-pools read float inputs.

    With a Q/DQ pair between the stem convolution and its max-pool, OpenVINO 2026.4 scored carplane-linear-int8
    81.4% on its test split where onnxruntime, and onnxruntime reading Q/DQ as the standard's float operations,
    gave 96.05%; without it, OpenVINO gives 95.8% and onnxruntime's accuracy is unchanged.
    """
    graph = proto.graph
    consumers = consumers_of(graph)
    quantizers = {node.output[0]: node for node in graph.node if node.op_type == "QuantizeLinear"}
    bypass, removed = {}, set()
    for node in graph.node:
        source = quantizers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        users = consumers.get(node.output[0], [])
        if source is None or not users or any(user.op_type != "MaxPool" for user in users):
            continue
        if all(user is node for user in consumers[source.output[0]]):
            bypass[node.output[0]] = source.input[0]
            removed.update({id(node), id(source)})
    kept = [node for node in graph.node if id(node) not in removed]
    for node in kept:
        node.input[:] = [bypass.get(name, name) for name in node.input]
    keep_nodes(graph, kept)


def predictions(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Each input's predicted class: the first output's argmax."""
    return np.concatenate([session.run(None, batch)[0].argmax(1) for batch in batches(feeds)])


def quantize_model(name: str, out_root: Path = PACKAGE_MODELS, threads: int = 0, rounds: int = 5,
                   calibration_inputs: int = CALIBRATION_INPUTS) -> dict[str, Any]:
    """Quantize installed model `name`, measure it against the float model, and install `name`-int8 under
    `out_root` if it pays; returns the measurements and the decision."""
    if name.endswith(SUFFIX):
        raise QuantizationError(f"{name!r} is already a quantized variant; quantize {name[:-len(SUFFIX)]!r} instead.")
    card = zoo.card(name)
    source = model_dir(name)
    variant = name + SUFFIX
    calibration, _ = labelled_inputs(card, "train", calibration_inputs, seed=1)
    test_feeds, test_labels = labelled_inputs(card, "test", None, seed=TEST_PAIRS_SEED)
    with tempfile.TemporaryDirectory(prefix=f"quantize-{name}-") as tmp:
        work, stage = Path(tmp) / "work", Path(tmp) / variant
        work.mkdir()
        stage.mkdir()
        float_model = float_graph(source)
        fold_input_scale(float_model)  # no full-resolution per-channel int8 Mul before the stem
        proto = quantize(float_model, calibration, work)
        # Small tensors (shapes, scales, zero points) stay in the graph, where shape inference can read them.
        arrays = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        weights = StoredWeights.write_arrays({key: a for key, a in arrays.items() if a.nbytes > INLINE_BYTES}, stage,
                                             metadata={"quantized_from": name})
        weights.link(proto)
        metadata = {key: value for key, value in onnx_metadata(source / GRAPH_FILE).items() if key != CARD_DIGEST_KEY}
        set_metadata(proto, {**metadata, "name": variant})
        save(proto, stage / GRAPH_FILE)
        onnx.checker.check_model(str(stage / GRAPH_FILE), full_check=True)

        sessions = {"float32": ort.InferenceSession(self_contained(source / GRAPH_FILE),
                                                    session_options(threads, card.session_config),
                                                    providers=["CPUExecutionProvider"]),
                    "int8": ort.InferenceSession(str(stage / GRAPH_FILE), session_options(threads),
                                                 providers=["CPUExecutionProvider"])}
        predicted = {key: predictions(session, test_feeds) for key, session in sessions.items()}
        timing = interleaved({key: (lambda feeds, s=session: s.run(None, feeds)) for key, session in sessions.items()},
                             card, rounds, iterations_b1=50, iterations_b64=2)
        report = {
            "test_inputs": len(test_labels), "calibration_inputs": len(next(iter(calibration.values()))),
            "float32_test_accuracy": float((predicted["float32"] == test_labels).mean()),
            "int8_test_accuracy": float((predicted["int8"] == test_labels).mean()),
            "argmax_agreement": float((predicted["float32"] == predicted["int8"]).mean()),
            "float32": timing["float32"], "int8": timing["int8"],
            "speedup_b1": timing["float32"]["ms_b1"] / timing["int8"]["ms_b1"],
            "speedup_b64": timing["int8"]["ips_b64"] / timing["float32"]["ips_b64"],
            "int8_bytes": sum(path.stat().st_size for path in stage.iterdir()),
            "cpu": cpu_name(),
        }
        report["accuracy_loss"] = report["float32_test_accuracy"] - report["int8_test_accuracy"]
        shortfalls = why_not(report)
        report["shipped"] = not shortfalls
        if shortfalls:
            report["why_not"] = "; ".join(shortfalls)
            return report

        vector_feeds = {key: array[:VECTOR_INPUTS] for key, array in test_feeds.items()}
        write_test_vectors(stage, stage / GRAPH_FILE, vector_feeds)
        install(stage, variant_card_of(card, report, sorted(op_types(proto))), out_root)
        report["installed"] = variant  # its name: the report stays valid wherever the models folder is
    return report


def why_not(report: dict[str, Any]) -> list[str]:
    """The bar an int8 variant must clear, as the reasons a measured one misses it (none: it ships)."""
    reasons = [f"{report[key]:.2f}x faster at batch {size} (needs {MIN_SPEEDUP}x)"
               for key, size in (("speedup_b1", 1), ("speedup_b64", 64)) if report[key] < MIN_SPEEDUP]
    # Accuracies are counts over the test split: 0.937 - 0.934 (6 of 2,000) is 0.0030000000000000027 in floats.
    if round(report["accuracy_loss"], 9) > MAX_INT8_ACCURACY_LOSS:
        reasons.append(f"loses {report['accuracy_loss']:.2%} of test accuracy (allowed {MAX_INT8_ACCURACY_LOSS:.1%})")
    return reasons


def variant_card_of(card: ModelCard, report: dict[str, Any], graph_ops: list[str]) -> ModelCard:
    """The int8 variant's card: the float model's provenance and labels, its own measured metrics."""
    quantization = {
        "method": "onnxruntime.quantization static QDQ: uint8 activations (min/max calibration), int8 weights "
                  "per output channel in 7 bits (reduce_range: no int16 saturation on CPUs without VNNI); batch "
                  "norms folded first, and the input normalisation's scale into the first convolution's weights "
                  "(no per-channel int8 Mul on the full-resolution input); max-pools read float inputs (OpenVINO "
                  "reads a quantized stem max-pool input differently); the fully connected head and what follows "
                  "it stay float",
        "source": card.name, "source_sha256": source_pins(card),
        "onnxruntime": ort.__version__, **report,
    }
    extra = {key: value for key, value in card.extra.items() if key != "session_config"}  # no weights to fold
    variant = replace(
        card,
        name=card.name + SUFFIX,
        description=f"{card.description} Quantized to int8 (static QDQ) from {card.name}.",
        files={},
        metrics={"test_accuracy": report["int8_test_accuracy"], "test_images": report["test_inputs"],
                 "float32_test_accuracy": report["float32_test_accuracy"]},
        plots={},
        provenance={**card.provenance, "export": {
            "exporter": "onnxruntime.quantization (python -m export quantize)", "parity": {}, "graph_ops": {GRAPH_FILE: graph_ops},
            "storage": {"weights": "int8 weights and uint8 activations (static QDQ), computed by onnxruntime's "
                                   "quantized kernels", "quantization": quantization}}},
        extra={**extra, "quantized_from": card.name},
    )
    return replace(variant, license=default_license(variant))  # its weights are quantized from the float model's


def merge_report(path: Path, name: str, report: dict[str, Any]) -> None:
    """Add (or replace) one model's quantization figures in the JSON report at `path`."""
    reports = json.loads(path.read_text()) if path.is_file() else {}
    reports[name] = report
    path.write_text(json.dumps(dict(sorted(reports.items())), indent=2) + "\n")
