"""The model card: everything the runtime, CLI, app and tests know about a shipped model.

Written by `export` as ``card.json`` after validation passes; read here, with no torch involved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFileError

CARD_FILE = "card.json"


@dataclass(frozen=True)
class InputSpec:
    """One image input of a model: uint8 RGB, NHWC, at (height, width), resized by `resize`."""

    name: str
    height: int
    width: int
    resize: str = "center-crop"


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: str
    version: str
    description: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    labels: tuple[str, ...]
    files: dict[str, dict[str, Any]]
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    opset: int = 19
    tolerance: float = 1e-4
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headline_accuracy(self) -> float | None:
        """Test accuracy (fraction) that the card reports first, if any."""
        value = self.metrics.get("test_accuracy")
        return float(value) if value is not None else None

    @property
    def size_bytes(self) -> int:
        """Total size of the model's files, as the card records them."""
        return sum(int(meta["bytes"]) for meta in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "description": self.description,
            "inputs": [vars(spec) for spec in self.inputs],
            "outputs": list(self.outputs),
            "labels": list(self.labels),
            "files": self.files,
            "metrics": self.metrics,
            "provenance": self.provenance,
            "plots": self.plots,
            "opset": self.opset,
            "tolerance": self.tolerance,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        return cls(
            name=data["name"],
            task=data["task"],
            version=str(data["version"]),
            description=data.get("description", ""),
            inputs=tuple(InputSpec(**spec) for spec in data["inputs"]),
            outputs=tuple(data["outputs"]),
            labels=tuple(data["labels"]),
            files=dict(data["files"]),
            metrics=dict(data.get("metrics", {})),
            provenance=dict(data.get("provenance", {})),
            plots=dict(data.get("plots", {})),
            opset=int(data.get("opset", 19)),
            tolerance=float(data.get("tolerance", 1e-4)),
            extra=dict(data.get("extra", {})),
        )

    def write(self, folder: Path) -> Path:
        path = Path(folder) / CARD_FILE
        path.write_text(render_card(self.to_dict()))
        return path

    @classmethod
    def read(cls, folder: Path) -> "ModelCard":
        path = Path(folder) / CARD_FILE
        try:
            data = json.loads(path.read_text())
            return cls.from_dict(data)
        except FileNotFoundError:
            raise ModelFileError(f"{path} is missing; re-export the model with `python -m export NAME`.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(
                f"{path} is unreadable or damaged ({type(exc).__name__}: {exc}); "
                "restore it from the package or re-export the model."
            ) from None


def render_card(content: dict[str, Any]) -> str:
    """card.json's exact text: what `ModelCard.write` writes and the runtime checks a card against."""
    return json.dumps(content, indent=2) + "\n"
