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
    write_confusion(run_dir, metrics, labels)
    return {"curves": "curves.png", "confusion": "confusion.png"}


def write_confusion(run_dir: Path, metrics: dict[str, Any], labels: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(7, 6) if len(labels) > 3 else (4.5, 4))
    ConfusionMatrixDisplay(np.array(metrics["confusion_matrix"]), display_labels=labels).plot(
        ax=ax, xticks_rotation=45, colorbar=False, cmap="Blues")
    ax.set_title(f"Test confusion matrix (accuracy {metrics['test_accuracy']:.2%})")
    fig.tight_layout()
    fig.savefig(run_dir / "confusion.png", dpi=100)
    plt.close(fig)


def write_carplane_plots(run_dir: Path, metrics: dict[str, Any], labels: list[str], before, after, test_labels,
                         frozen: bool) -> None:
    """Triplet and BCE losses per epoch, accuracy, the confusion matrix, and the test embeddings in 2-D (PCA)
    before and after the backbone's training."""
    from sklearn.decomposition import PCA

    history = metrics["history"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, quantity, title in zip(axes, ("triplet", "bce", "accuracy"),
                                   ("Triplet loss (batch-hard)", "Binary cross-entropy", "Accuracy")):
        for split in ("train", "test"):
            points = [(h["epoch"], h[f"{split}_{quantity}"]) for h in history if f"{split}_{quantity}" in h]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=split)
        ax.set(xlabel="epoch (backbone epochs, then head epochs)", title=title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not trained with this loss", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=100)
    plt.close(fig)
    write_confusion(run_dir, metrics, labels)

    panels = [("frozen backbone", after)] if frozen else [("before (pretrained backbone)", before),
                                                          ("after training", after)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    classes = np.asarray(test_labels)
    for ax, (title, features) in zip(axes[0], panels):
        unit = np.asarray(features) / np.linalg.norm(np.asarray(features), axis=1, keepdims=True).clip(1e-12)
        points = PCA(n_components=2, random_state=0).fit_transform(unit)
        for index, label in enumerate(labels):
            ax.scatter(*points[classes == index].T, s=4, alpha=0.5, label=label)
        separation = metrics["embedding_separation"]["after" if features is after else "before"]
        ax.set_title(f"Test embeddings, {title}\nsilhouette {separation['silhouette_cosine']:.2f}, "
                     f"nearest centroid {separation['nearest_centroid_accuracy']:.1%}", fontsize=10)
        ax.legend(markerscale=3)
        ax.set(xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(run_dir / "projection.png", dpi=100)
    plt.close(fig)


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
