"""safetensors checkpoints whose metadata rebuilds the model: no pickle anywhere."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .nets import build

#: A tensor `X` stored as int8 comes with `X.scale` (float32, one per output channel): X = int8 * scale.
SCALE_SUFFIX = ".scale"

def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write the model's weights (plus `extra` tensors, e.g. optimizer state) with JSON metadata, atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for key, value in (extra or {}).items():
        tensors[key] = value.detach().contiguous().cpu()
    partial = Path(path).with_suffix(".partial")
    save_file(tensors, str(partial), metadata={k: json.dumps(v) for k, v in meta.items()})
    partial.replace(path)


def read_metadata(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return {k: json.loads(v) for k, v in raw.items()}


def load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix` (removed), int8-stored weights multiplied back to float."""
    with safe_open(str(path), framework="pt") as handle:
        raw = {k[len(prefix):]: handle.get_tensor(k) for k in handle.keys() if k.startswith(prefix)}
    tensors = {}
    for name, value in raw.items():
        scale = raw.get(name + SCALE_SUFFIX)
        if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in raw:
            continue
        tensors[name] = value if scale is None else value.float() * scale.view(-1, *[1] * (value.ndim - 1))
    return tensors


def load_model(path: Path, **config_overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the checkpoint's metadata and load its weights (eval mode)."""
    meta = read_metadata(path)
    model = build(meta["arch"], {**meta["config"], **config_overrides})
    weights = {k: v for k, v in load_tensors(path).items() if not k.startswith("optimizer.")}
    model.load_state_dict(weights)
    return model.eval(), meta
