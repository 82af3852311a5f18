"""Evaluating a classifier: logits over an image array, loss and accuracy, per-class accuracy, robustness."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Split
from .geometry import random_rotation_zoom, similarity_warp


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray | Tensor, device: torch.device, bf16: bool = False,
                   batch_size: int = 500) -> Tensor:
    """The model's float32 logits (on the CPU) for uint8 NHWC `images`, in eval mode."""
    model.eval()
    outs = []
    for start in range(0, len(images), batch_size):
        batch = torch.as_tensor(np.asarray(images[start:start + batch_size])).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outs.append(model(batch).float().cpu())
    return torch.cat(outs)


def loss_and_accuracy(logits: Tensor, labels: Tensor) -> dict[str, float]:
    return {"loss": float(F.cross_entropy(logits, labels)),
            "accuracy": float((logits.argmax(1) == labels).float().mean())}


def evaluate_split(model: nn.Module, split: Split, device: torch.device, bf16: bool = False) -> dict[str, float]:
    """Loss and accuracy of `model` on `split`."""
    return loss_and_accuracy(predict_logits(model, split.images, device, bf16), torch.as_tensor(split.labels))


def per_class_accuracy(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Recall of each class from a confusion matrix (rows: truth)."""
    return {label: float(matrix[i, i] / max(1, matrix[i].sum())) for i, label in enumerate(labels)}


def classifier_metrics(test_logits: Tensor, test_labels: Tensor, train_logits: Tensor, train_labels: Tensor,
                       labels: Sequence[str], train_note: str) -> dict[str, Any]:
    """The figures a classifier's card reports, from its test and (unaugmented) train logits."""
    from sklearn.metrics import confusion_matrix

    test, train = loss_and_accuracy(test_logits, test_labels), loss_and_accuracy(train_logits, train_labels)
    matrix = confusion_matrix(test_labels.numpy(), test_logits.argmax(1).numpy(), labels=range(len(labels)))
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_accuracy": train["accuracy"],
        "train_loss": train["loss"],
        "train_accuracy_note": train_note,
        "test_images": len(test_labels),
        "per_class_accuracy": per_class_accuracy(matrix, labels),
        "confusion_matrix": matrix.tolist(),
    }


def perturbed_accuracy(model: nn.Module, split: Split, device: torch.device, kind: str, seed: int = 0) -> float:
    """Test accuracy after a random rotation (15-30°, either sign), zoom (1.2-1.6, in or out), or both."""
    generator = torch.Generator().manual_seed(seed)
    angle, zoom = random_rotation_zoom(len(split), generator)
    if kind == "rotation":
        zoom = torch.ones_like(zoom)
    elif kind == "zoom":
        angle = torch.zeros_like(angle)
    images = torch.as_tensor(np.asarray(split.images)).permute(0, 3, 1, 2).float()
    warped = similarity_warp(images, angle, zoom).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    logits = predict_logits(model, warped, device)
    return float((logits.argmax(1) == torch.as_tensor(split.labels)).float().mean())
