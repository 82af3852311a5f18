"""PyTorch as a runner on a shipped model's own weights, its FLOP count, and this machine's matmul ceiling."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from training.checkpoint import load_model
from zoo.card import ModelCard
from zoo.files import WEIGHTS_FILE
from zoo.registry import model_dir

from .engines import EngineUnavailable
from zoo.timing import BATCH, Runner, random_feeds


def matmul_ceiling(threads: int, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0,
                   device: str = "cpu") -> float:
    """This machine's matmul rate in GFLOP/s (torch.mm of `dtype`, `threads` CPU threads or a GPU): the ceiling
    models are held to."""
    torch.set_num_threads(threads)
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b)
    sync()
    calls, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        torch.mm(a, b)
        calls += 1
    sync()
    return 2 * size**3 * calls / (time.perf_counter() - began) / 1e9


def torch_module(card: ModelCard, implementation: str | None = None) -> torch.nn.Module:
    """The PyTorch network rebuilt from the model's own model.safetensors (int8-stored weights scaled back); for
    a quantized variant (`python -m export quantize`), the float model it was quantized from."""
    overrides = {"deform_implementation": implementation} if implementation else {}
    return load_model(model_dir(card.quantized_from or card.name) / WEIGHTS_FILE, **overrides)[0]


def torch_runner(module: torch.nn.Module, card: ModelCard) -> Runner:
    """The module on its own device; timed calls include the copy of the inputs there and wait for the result."""
    names = [spec.name for spec in card.inputs]
    device = next(module.parameters()).device

    def run(feeds: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            result = module(*(torch.from_numpy(feeds[name]).to(device) for name in names))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result

    return run


def compiled_runner(module: torch.nn.Module, card: ModelCard) -> Runner:
    """torch.compile (inductor); compiling happens on the first calls, which the warm-up absorbs."""
    try:
        run = torch_runner(torch.compile(module, dynamic=False), card)
        run(random_feeds(card, 1))
        run(random_feeds(card, BATCH))
    except Exception as exc:  # no C++ compiler, an unsupported op: recorded, not fatal
        raise EngineUnavailable(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    return run


def first_output(result: Any) -> np.ndarray:
    """The first output of any engine's result (a tensor, a list of outputs, OpenVINO's OVDict), as float32 numpy."""
    if not isinstance(result, (torch.Tensor, np.ndarray, list, tuple)):  # OpenVINO's OVDict
        result = list(result.values())
    if isinstance(result, (list, tuple)):
        result = result[0]
    return result.float().cpu().numpy() if isinstance(result, torch.Tensor) else np.asarray(result, np.float32)


def gflop_per_image(module: torch.nn.Module, card: ModelCard) -> float:
    """Convolution and matmul GFLOP of one image (torch's FlopCounterMode, batch 64 divided by 64)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        torch_runner(module, card)(random_feeds(card, BATCH))
    return counter.get_total_flops() / BATCH / 1e9
