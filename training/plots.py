"""The card's pictures: learning curves and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def write_plots(run_dir: Path, metrics: dict[str, Any], labels: list[str]) -> dict[str, str]:
    history = metrics["history"]
    epochs = [h["epoch"] for h in history]
    held_out = "val" if history and "val_loss" in history[0] else "test"
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h[f"{held_out}_loss"] for h in history], label=held_out)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], label="train (running)")
    ax_acc.plot(epochs, [h[f"{held_out}_accuracy"] for h in history], label=held_out)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 6))
    ConfusionMatrixDisplay(np.array(metrics["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, xticks_rotation=45, colorbar=False, cmap="Blues")
    ax.set_title(f"Test confusion matrix (accuracy {metrics['test_accuracy']:.2%})")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=100)
    plt.close(fig)
    return {"curves": "curves.png", "confusion": "confusion.png"}


def write_pair_grid(path: Path, pairs, per_class: int = 3) -> None:
    """A and B side by side, `per_class` pairs for each change class (one row per class)."""
    from .pairs import CHANGE_LABELS

    fig, axes = plt.subplots(len(CHANGE_LABELS), 2 * per_class, figsize=(2 * per_class * 1.3, len(CHANGE_LABELS) * 1.4))
    for row, label in enumerate(CHANGE_LABELS):
        picks = np.flatnonzero(pairs.labels == row)[:per_class]
        for k in range(per_class):
            for side, images in enumerate((pairs.a, pairs.b)):
                ax = axes[row, 2 * k + side]
                ax.axis("off")
                if k < len(picks):
                    ax.imshow(images[picks[k]])
                    if row == 0:
                        ax.set_title("A" if side == 0 else "B", fontsize=8)
        axes[row, 0].text(-0.1, 0.5, label, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
