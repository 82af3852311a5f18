"""safetensors checkpoints whose metadata rebuilds the model: no pickle anywhere."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from zoo.card import ModelCard
from zoo.files import CARD_FILE, SHARED_WEIGHTS_FILE, WEIGHTS_FILE

from .errors import TrainingError, TrainingFileError
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
    """The checkpoint's metadata (a zoo model's: from model.safetensors, not from a shared weight file)."""
    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return {k: json.loads(v) for k, v in raw.items()}


def weight_files(path: Path) -> list[Path]:
    """The files that together hold the tensors of checkpoint `path`: `path` first.

    A zoo model's model.safetensors may keep only the tensors that are its own, the rest being in a shared
    weight file beside it (`python -m export share`): the ones its card lists, or without a card beside it,
    SHARED_WEIGHTS_FILE if it is there. Any other checkpoint (last.safetensors, a file of another name) is one
    file.
    """
    path = Path(path)
    folder = path.parent
    if path.name != WEIGHTS_FILE:
        shared = []
    elif (folder / CARD_FILE).is_file():
        shared = list(ModelCard.read(folder).weight_files[1:])
    else:
        shared = [SHARED_WEIGHTS_FILE] if (folder / SHARED_WEIGHTS_FILE).is_file() else []
    missing = [name for name in shared if not (folder / name).is_file()]
    if missing:
        raise TrainingFileError(f"{path} keeps some of its tensors in {', '.join(missing)} beside it (its card lists "
                                "it), which is missing: restore the model folder or re-export the model")
    return [path, *(folder / name for name in shared)]


def load_tensors(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors whose names start with `prefix` (removed), int8-stored weights multiplied back to float.

    Reads every file of `weight_files(path)`: a zoo model's tensors shared with other models included.
    """
    raw: dict[str, torch.Tensor] = {}
    files = weight_files(path)
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(prefix):
                    if key[len(prefix):] in raw:
                        raise TrainingError(f"{key} is stored twice among {[f.name for f in files]} "
                                         f"in {file.parent}: re-export the model")
                    raw[key[len(prefix):]] = handle.get_tensor(key)
    tensors = {}
    for name, value in raw.items():
        scale = raw.get(name + SCALE_SUFFIX)
        if name.endswith(SCALE_SUFFIX) and name.removesuffix(SCALE_SUFFIX) in raw:
            continue
        tensors[name] = value if scale is None else value.float() * scale.view(-1, *[1] * (value.ndim - 1))
    return tensors


#: The prefix of the optimizer's state in a training checkpoint (last.safetensors), beside the model's weights.
OPTIMIZER_PREFIX = "optimizer."


def model_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors without the optimizer's state: the model's state dict."""
    return {key: value for key, value in tensors.items() if not key.startswith(OPTIMIZER_PREFIX)}


def load_model(path: Path, **config_overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the checkpoint's metadata and load its weights (eval mode)."""
    meta = read_metadata(path)
    model = build(meta["arch"], {**meta["config"], **config_overrides})
    model.load_state_dict(model_weights(load_tensors(path)))
    return model.eval(), meta
