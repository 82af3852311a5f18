"""The model card: everything the runtime, CLI, app and tests know about a shipped model.

Written by `export` as ``card.json`` after validation passes; read here, with no torch involved.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .files import CARD_FILE, WEIGHTS_FILE, WEIGHTS_SUFFIX



@dataclass(frozen=True)
class InputSpec:
    """One image input of a model: uint8 RGB, NHWC, at (height, width), resized by `resize`."""

    name: str
    height: int
    width: int
    resize: str = "center-crop"


@dataclass(frozen=True)
class License:
    """Under which terms a model's parts come, in words: its code, its weights, and the data it was trained and
    tested on (each data set cited, with the terms its publishers state). The model's README shows the same."""

    code: str
    weights: str
    data: str


#: The keys of a card's "extra" object that zoo reads, and the type each must have.
EXTRA_FIELDS: dict[str, type] = {
    "demo": str,  # the demo tab the model appears in ("cifar10", "carplane", "changer")
    "session_config": dict,  # onnxruntime session config entries, str -> str
    "quantized_from": str,  # an int8 variant's float model
    "changes": list,  # change-detection: the names of the change probabilities, in output order
    "param_names": list,  # change-detection: the names of the regressed parameters, in output order
}


@dataclass(frozen=True)
class ModelCard:
    """A model's card.json, typed.

    `metrics` by task: an image classifier records `test_accuracy`, `test_images`, `train_accuracy`,
    `test_loss`, `train_loss`, `per_class_accuracy`, `confusion_matrix` and `history` (an int8 variant:
    `test_accuracy`, `test_images`, `float32_test_accuracy`); the changer records `test_accuracy`,
    `train_accuracy`, `test` (with `pairs` and `per_class_accuracy`), `test_by_source`, `val`,
    `confusion_matrix` and `history`. Any model may record `bf16`: its test accuracy with its float layers
    computed in bf16 beside onnxruntime's of the same graph (`reference_test_accuracy`), on the same split.
    What zoo itself reads is declared below as properties.

    `license` names the licence of the model's code, weights and data (`License`); None only in cards written
    before cards carried it (`python -m export restamp NAME --license` fills it in from the provenance).
    """

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
    license: License | None = None

    @property
    def demo(self) -> str | None:
        """The demo tab the model appears in; None: a tab of its own."""
        return self.extra.get("demo")

    @property
    def session_config(self) -> dict[str, str]:
        """onnxruntime session config entries the model asks for (e.g. folding int8-stored weights at load)."""
        return dict(self.extra.get("session_config", {}))

    @property
    def quantized_from(self) -> str | None:
        """The float model an int8 variant was quantized from; None for a float model."""
        return self.extra.get("quantized_from")

    @property
    def changes(self) -> tuple[str, ...]:
        """change-detection: the names of the change probabilities, in output order."""
        return tuple(self.extra.get("changes", ()))

    @property
    def param_names(self) -> tuple[str, ...]:
        """change-detection: the names of the regressed geometric parameters, in output order."""
        return tuple(self.extra.get("param_names", ()))

    @property
    def bf16_accuracy_loss(self) -> float | None:
        """Test accuracy lost when a runtime computes in bf16 (`metrics["bf16"]`, written by `python -m export
        precision`); None where it was not measured."""
        bf16 = self.metrics.get("bf16")
        if not isinstance(bf16, dict) or "test_accuracy" not in bf16:
            return None
        return float(bf16["reference_test_accuracy"]) - float(bf16["test_accuracy"])

    @property
    def test_images(self) -> int | None:
        """How many held-out inputs `test_accuracy` was measured on (the changer's: test pairs)."""
        value = self.metrics.get("test_images", self.metrics.get("test", {}).get("pairs"))
        return int(value) if value is not None else None

    @property
    def headline_accuracy(self) -> float | None:
        """Test accuracy (fraction) that the card reports first, if any."""
        value = self.metrics.get("test_accuracy")
        return float(value) if value is not None else None

    @property
    def weight_files(self) -> tuple[str, ...]:
        """The files holding the model's tensors: model.safetensors, then the shared weight files the card lists
        (tensors that other models hold alike, e.g. backbone.safetensors), in name order."""
        shared = sorted(name for name in self.files
                        if name.endswith(WEIGHTS_SUFFIX) and "/" not in name and name != WEIGHTS_FILE)
        return (WEIGHTS_FILE, *shared)

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
            **({"license": vars(self.license)} if self.license is not None else {}),
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
            extra=_checked_extra(data.get("extra", {})),
            license=_checked_license(data.get("license")),
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


def _checked_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` as it is, once every key zoo reads has its declared type (a TypeError names the first that does not)."""
    for key, expected in EXTRA_FIELDS.items():
        if key in extra and not isinstance(extra[key], expected):
            raise TypeError(f"extra.{key} is a {type(extra[key]).__name__}, not a {expected.__name__}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.get("session_config", {}).items()):
        raise TypeError("extra.session_config must map strings to strings")
    return dict(extra)


def _checked_license(value: Any) -> License | None:
    """The card's `license` as a License (None where the card has none); a TypeError names what is wrong."""
    if value is None:
        return None
    keys = {f.name for f in fields(License)}
    if not isinstance(value, dict) or set(value) != keys:
        raise TypeError(f"license must be an object with exactly {sorted(keys)}")
    wrong = sorted(key for key, text in value.items() if not isinstance(text, str) or not text.strip())
    if wrong:
        raise TypeError(f"license.{wrong[0]} must be a non-empty string")
    return License(**value)


def render_card(content: dict[str, Any]) -> str:
    """card.json's exact text: what `ModelCard.write` writes and the runtime checks a card against."""
    return json.dumps(content, indent=2) + "\n"
