"""onnxruntime and OpenVINO as runners on a shipped model.onnx, and zoo's onnxruntime settings against each
alternative. An engine that does not install here or cannot run a model raises `EngineUnavailable`."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import onnxruntime as ort

import zoo
from zoo.card import ModelCard
from zoo.engines import OpenVINOSession, openvino_installed
from zoo.files import GRAPH_FILE
from zoo.onnxfile import self_contained
from zoo.registry import model_dir
from zoo.runtime import session_options
from zoo.timing import Runner, interleaved, random_feeds


class EngineUnavailable(Exception):
    """An engine that does not install here or cannot run this model; the message says why."""


def ort_runner(name: str, threads: int) -> Runner:
    """zoo's own onnxruntime session of model `name` on the CPU (named, so `auto`'s choice does not enter)."""
    session = zoo.load(name, device="cpu", threads=threads, runtime="onnxruntime").session
    return lambda feeds: session.run(None, feeds)


def openvino_runner(card: ModelCard, threads: int, bf16: bool = False) -> tuple[Runner, str]:
    """OpenVINO's CPU plugin on the model's self-contained model.onnx, configured as zoo configures it
    (`zoo.engines.OpenVINOSession`): f32, int8 layers staying int8; with `bf16`, OpenVINO's default precision
    (bf16 on CPUs that have it). Returns the runner and the precision OpenVINO computes floating-point layers in."""
    if not openvino_installed():
        raise EngineUnavailable("openvino is not installed (pip install -e '.[bench]')")
    try:
        session = OpenVINOSession(self_contained(model_dir(card.name) / GRAPH_FILE), threads, bf16)
        session.run(None, random_feeds(card, 1))
    except Exception as exc:  # e.g. an op its ONNX frontend lacks
        raise EngineUnavailable(f"OpenVINO cannot run model.onnx: {str(exc)[:300]}") from None
    return (lambda feeds: session.run(None, feeds)), session.precision


#: Alternatives to zoo's session settings (`zoo.runtime.session_options`), each one change away from them:
#: the before/after of every session-option lever, measured in the same run.
SESSION_VARIANTS: dict[str, Callable[[ort.SessionOptions], None]] = {
    "basic_graph_optimization": lambda o: setattr(o, "graph_optimization_level",
                                                  ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "extended_graph_optimization": lambda o: setattr(o, "graph_optimization_level",
                                                     ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "zoo_again": lambda o: None,  # zoo's settings timed a second time: the noise between identical sessions
    "no_thread_spinning": lambda o: o.add_session_config_entry("session.intra_op.allow_spinning", "0"),
    "no_memory_arena": lambda o: setattr(o, "enable_cpu_mem_arena", False),
    "no_memory_pattern": lambda o: setattr(o, "enable_mem_pattern", False),
    "parallel_execution": lambda o: (setattr(o, "execution_mode", ort.ExecutionMode.ORT_PARALLEL),
                                     setattr(o, "inter_op_num_threads", 2)),
    "one_thread": lambda o: setattr(o, "intra_op_num_threads", 1),
}
#: The variant loading a graph optimised ahead of time (what export could ship): see `saved_optimized_model`.
PREOPTIMIZED = "preoptimized_model"


def saved_optimized_model(card: ModelCard, threads: int, folder: Path) -> Path:
    """model.onnx optimised by onnxruntime at the extended level (the portable one; the NCHWc layouts of
    "all" are this CPU's) and saved with its weights in a file of their own: batch norms folded into the
    convolutions (and, for int8-stored weights, those dequantized) are new tensors that cannot point into
    model.safetensors. Loaded with zoo's settings, it shows what an optimised model saved at export would buy."""
    options = session_options(threads, card.session_config)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.weights")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(model_dir(card.name) / GRAPH_FILE), options, providers=["CPUExecutionProvider"])
    return folder / "optimized.onnx"


def session_variants(card: ModelCard, threads: int, iterations_b1: int, iterations_b64: int,
                     rounds: int = 3) -> dict[str, Any]:
    """zoo's session settings and each alternative (`SESSION_VARIANTS`, and the graph saved optimised ahead of
    time): load seconds (best of 3), batch-1 p50/p99 and batch-64 throughput, timed interleaved."""
    config = card.session_config
    with tempfile.TemporaryDirectory(prefix="zoo-preoptimized-") as scratch:
        optimized = saved_optimized_model(card, threads, Path(scratch))
        graph = model_dir(card.name) / GRAPH_FILE
        paths = {"zoo": graph, **{key: graph for key in SESSION_VARIANTS}, PREOPTIMIZED: optimized}
        sessions, results = {}, {}
        for variant, path in paths.items():
            loads = []
            for _ in range(3):
                options = session_options(threads, config)
                SESSION_VARIANTS.get(variant, lambda options: None)(options)
                began = time.perf_counter()
                sessions[variant] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                loads.append(time.perf_counter() - began)
            results[variant] = {"load_s": min(loads)}
        results[PREOPTIMIZED]["extra_bytes"] = sum(p.stat().st_size for p in Path(scratch).iterdir())
        runners = {variant: (lambda feeds, s=session: s.run(None, feeds)) for variant, session in sessions.items()}
        timings = interleaved(runners, card, rounds, iterations_b1, iterations_b64)
    return {variant: {**results[variant], **timings[variant]} for variant in paths}
