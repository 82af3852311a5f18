"""What every training loop shares: device and precision, optimizer and schedule, resumable checkpoints."""
from __future__ import annotations

import math
import os
import platform
import subprocess
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.files import WEIGHTS_FILE

from .checkpoint import OPTIMIZER_PREFIX, load_tensors, model_weights, read_metadata, weight_files
from .data import Split
from .errors import TrainingError, TrainingFileError
from .recipes import Recipe

LAST = "last.safetensors"
FINAL = WEIGHTS_FILE  # a run's final checkpoint is named as a zoo model's weights: --init and export take either


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 autocast pays off on GPUs and on CPUs with AMX or AVX512-BF16 (python -m bench.deform)."""
    if device.type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def code_version() -> str:
    """The commit this code came from; ZOO_CODE_VERSION names it where the tree is a copy without .git."""
    if os.environ.get("ZOO_CODE_VERSION"):
        return os.environ["ZOO_CODE_VERSION"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_run(recipe: Recipe, out: Path, device: str, seed: int) -> tuple[torch.device, bool, Path]:
    """Seed, pick the device and precision, and make the run folder `out/NAME`."""
    torch.manual_seed(seed)
    dev = pick_device(device)
    torch.backends.cudnn.benchmark = dev.type == "cuda"  # fixed input sizes: let cuDNN pick its fastest kernels
    run_dir = Path(out) / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    return dev, bf16_is_fast(dev), run_dir


def warm_start(model: nn.Module, source: str) -> dict[str, Any]:
    """Load `source` (a model.safetensors of this network: a run's or a zoo model's, int8-stored weights and
    tensors kept in a shared weight file beside it included) into `model`, so that training continues from it;
    returns what it was, for the checkpoint."""
    from zoo.runtime import sha256_file

    path = Path(source)
    if not path.is_file():
        raise TrainingFileError(f"--init {source}: no such file; pass a model.safetensors, e.g. "
                                f"zoo/models/NAME/model.safetensors or runs/NAME/model.safetensors")
    meta = read_metadata(path)
    try:
        model.load_state_dict(model_weights(load_tensors(path)))
    except RuntimeError as error:
        raise TrainingError(f"--init {source}: its tensors do not fit this network ({meta.get('arch')} "
                         f"{meta.get('config')}): {error}") from error
    training = meta.get("training", {})
    shared = {file.name: sha256_file(file) for file in weight_files(path)[1:]}  # a zoo model's shared weight files
    return {"source": str(path), "sha256": sha256_file(path), **({"shared_sha256": shared} if shared else {}),
            "name": meta.get("name"),
            "code_version": meta.get("code_version"), "recipe": training.get("recipe"),
            "epochs_done": training.get("epochs_done"), "seconds": training.get("seconds"),
            "test_accuracy": meta.get("metrics", {}).get("test_accuracy"),
            "initialized_from": meta.get("initialized_from")}  # the chain, when that run was continued too


def make_optimizer(model: nn.Module, recipe: Recipe, total_steps: int):
    """The recipe's optimizer (no weight decay on norms and biases) with a one-cycle schedule."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=recipe.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    # OneCycleLR divides by (warm-up steps - 1) and by the steps after the warm-up: a short run (a --limit
    # smoke test) warms up for at least two steps and leaves at least one; the recipes' runs are unchanged.
    warmup_steps = recipe.warmup * total_steps
    if total_steps >= 3:
        warmup_steps = min(max(warmup_steps, 2.0), total_steps - 1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps,
                                                   pct_start=warmup_steps / total_steps)
    return optimizer, schedule


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, schedule) -> None:
    """One training step: the gradients of `loss`, the optimizer's update, the schedule's next learning rate."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Every tensor of the optimizer's per-parameter state, flattened for safetensors."""
    state = {}
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            if isinstance(value, Tensor):
                state[f"{OPTIMIZER_PREFIX}{index}.{key}"] = value if value.ndim else value.reshape(1)
    return state


def restore(last: Path, recipe: Recipe, model: nn.Module, optimizer: torch.optim.Optimizer, schedule,
            steps_per_epoch: int) -> tuple[int, float, list[dict[str, Any]]]:
    """Continue from `last` if it was written by the same recipe: (epochs done, seconds, history)."""
    if not last.is_file():
        return 0, 0.0, []
    meta = read_metadata(last)
    if meta.get("training", {}).get("recipe") != asdict(recipe):
        return 0, 0.0, []
    model.load_state_dict(model_weights(load_tensors(last)))
    saved = load_tensors(last, OPTIMIZER_PREFIX)
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        prefix = f"{index}."
        for key, value in saved.items():
            if key.startswith(prefix):
                name = key[len(prefix):]
                value = value.to(param.device)
                optimizer.state[param][name] = value.reshape(()) if name == "step" else value
    done = meta["training"]["epochs_done"]
    with warnings.catch_warnings():  # replaying the schedule, not skipping optimizer steps
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(done * steps_per_epoch):
            schedule.step()
    print(f"resuming {recipe.name} after epoch {done}", flush=True)
    return done, meta["training"]["seconds"], meta["metrics"]["history"]


def checkpoint_meta(recipe: Recipe, model: nn.Module, labels: list[str], epochs_done: int, seconds: float,
                    device: torch.device, bf16: bool, seed: int, metrics: dict[str, Any], data: dict[str, Any],
                    **extra: Any) -> dict[str, Any]:
    """What a checkpoint carries (as safetensors metadata) to rebuild, evaluate and describe its model."""
    size = recipe.input_size
    return {
        "name": recipe.name, "task": recipe.task, "arch": recipe.arch, "config": model.config_dict(),
        "labels": list(labels),
        "input": {"height": size, "width": size, "layout": "NHWC", "dtype": "uint8", "resize": "center-crop"},
        "training": {"recipe": asdict(recipe), "epochs_done": epochs_done, "seconds": seconds, "device": device.type,
                     "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                     or platform.machine(),
                     "precision": "bf16-autocast" if bf16 else "fp32", "seed": seed, "torch": torch.__version__},
        "metrics": metrics, "data": data, "code_version": code_version(), **extra,
    }


def splits_meta(train_split: Split, test_split: Split) -> dict[str, Any]:
    """What a checkpoint records of a classifier's data: its source, and what identifies each split."""
    return {"source": train_split.source, "fingerprint_train": train_split.fingerprint,
            "fingerprint_test": test_split.fingerprint, "train_images": len(train_split),
            "test_images": len(test_split)}


def steps_per_epoch(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)
