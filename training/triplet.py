"""Metric learning on embeddings: batch-hard triplet loss, triplets drawn from a labelled split, the
embeddings of an image array, and how far apart the classes lie among them."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import Split


@torch.no_grad()
def embeddings(model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 250) -> Tensor:
    """The `model.embed` vectors of uint8 NHWC `images` in float32, batch norms in eval mode: what the exported
    graph computes."""
    model.eval()
    return torch.cat([model.embed(torch.as_tensor(images[i:i + batch_size]).to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)])


def batch_hard_triplet_loss(embedding: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Batch-hard triplet loss on L2-normalised embeddings (Hermans et al., 2017).

    Every image of the batch is an anchor, paired with its farthest same-class image and its nearest
    other-class image. Returns the loss and the share of anchors still violating the margin.
    """
    unit = F.normalize(embedding.float(), dim=1)
    distance = torch.cdist(unit, unit)
    same = labels.view(-1, 1) == labels.view(1, -1)
    hardest_positive = distance.masked_fill(~same, 0.0).amax(1)
    hardest_negative = distance.masked_fill(same, float("inf")).amin(1)
    violation = F.relu(hardest_positive - hardest_negative + margin)
    return violation.mean(), (violation > 0).float().mean()


class TripletDataset(torch.utils.data.Dataset):
    """(anchor, positive, negative) uint8 images from a labelled split; every image is an anchor once per epoch.

    Positives and negatives are drawn at random (seeded by epoch); the loss then mines the hardest
    pairs among all images of a batch, so each batch of T triplets yields 3T anchors.
    """

    def __init__(self, split: Split, seed: int, epoch: int) -> None:
        self.images, self.labels = split.images, split.labels
        rng = np.random.default_rng([seed, epoch])
        by_class = [np.flatnonzero(split.labels == c) for c in range(len(split.classes))]
        self.positive = np.array([rng.choice(by_class[label]) for label in split.labels])
        others = [np.concatenate([m for c, m in enumerate(by_class) if c != label]) for label in range(len(by_class))]
        self.negative = np.array([rng.choice(others[label]) for label in split.labels])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        picks = (index, self.positive[index], self.negative[index])
        return (*(self.images[i] for i in picks), *(self.labels[i] for i in picks))


def separation(features: Tensor, labels: Tensor) -> dict[str, float]:
    """How far apart the classes lie in embedding space: silhouette (cosine) and nearest-centroid accuracy."""
    from sklearn.metrics import silhouette_score

    unit = F.normalize(features, dim=1)
    centroids = torch.stack([unit[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
    nearest = (unit @ F.normalize(centroids, dim=1).T).argmax(1)
    return {"silhouette_cosine": float(silhouette_score(unit.numpy(), labels.numpy(), metric="cosine")),
            "nearest_centroid_accuracy": float((nearest == labels).float().mean())}
