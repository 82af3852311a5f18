"""The car/plane classifiers (the report's Q1): a pretrained ResNet-50 and a one-logit head, three ways.

- linear: the backbone frozen; its embeddings (of every training image and of augmented views of it)
  are computed once and the head trains on that cache.
- triplet: the backbone fine-tuned with a triplet loss on (anchor, positive, negative) triplets,
  then frozen, and the head trained on the cached embeddings as above.
- joint: triplet loss and binary cross-entropy minimised together in every labelled batch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .checkpoint import load_tensors, read_metadata
from .data import Split, random_pick
from .evaluate import classifier_metrics
from .labelled import classifier_split
from .loop import FINAL, make_optimizer, optimizer_step, splits_meta, start_run, steps_per_epoch
from .nets import build
from .nets.resnet import ResNet50
from .recipes import Recipe
from .run import Run
from .train import augment
from .triplet import TripletDataset, batch_hard_triplet_loss, embeddings, separation

KINDS = ("linear", "triplet", "joint")


def load_backbone(model: ResNet50, source: str, runs: Path) -> dict[str, Any]:
    """Put pretrained weights into `model.backbone`; returns where they came from, for the card.

    `source`: "imagenet" (torchvision's ResNet50_Weights, downloaded or from TORCH_HOME), a
    safetensors file (a zoo model's model.safetensors: with the tensors it keeps in a shared weight file beside
    it, `training.checkpoint.weight_files`), or the name of a run under `runs` (e.g. resnet50-cifar8).
    """
    if source == "imagenet":
        from torchvision.models import ResNet50_Weights

        weights = ResNet50_Weights.IMAGENET1K_V2
        state = {k: v for k, v in weights.get_state_dict(progress=False).items() if not k.startswith("fc.")}
        model.backbone.load_state_dict(state)
        return {"source": "imagenet", "weights": str(weights)}
    path = Path(source) if Path(source).suffix == ".safetensors" else Path(runs) / source / FINAL
    if not path.is_file():
        raise FileNotFoundError(f"backbone {source!r}: {path} does not exist; train it first "
                                f"(python -m training {source}) or pass --backbone imagenet|FILE.safetensors")
    # A project checkpoint names the backbone's tensors backbone.*; a torchvision state dict has them bare.
    state = load_tensors(path, "backbone.") or {k: v for k, v in load_tensors(path).items() if not k.startswith("fc.")}
    model.backbone.load_state_dict(state)
    meta = read_metadata(path)
    return {"source": str(path), "name": meta.get("name"), "test_accuracy": meta.get("metrics", {}).get("test_accuracy"),
            "trained_on": meta.get("data", {}).get("source"), "classes": meta.get("labels")}


@torch.no_grad()
def augmented_embeddings(model: ResNet50, images: np.ndarray, views: int, augmentation: dict[str, Any],
                         device: torch.device, seed: int) -> Tensor:
    """Embeddings of `views` extra views of every image, view after view: the mirror first, then random
    crops and flips drawn per image with the fine-tuning's own augmentation.

    A frozen backbone's head would otherwise see each training image in one pose only. Each view is
    embedded as soon as it is drawn, so only one augmented copy of the images is held at a time.
    """
    if views < 1:
        raise ValueError(f"the head's cache needs at least one extra view (the mirror), got views={views}")
    generator = torch.Generator().manual_seed(seed)
    cached = [embeddings(model, np.ascontiguousarray(images[:, :, ::-1]), device)]
    for _ in range(views - 1):
        cached.append(embeddings(model, augment(torch.as_tensor(images), generator, **augmentation).numpy(), device))
    return torch.cat(cached)


def fine_tune(model: ResNet50, recipe: Recipe, kind: str, train_split: Split, test_split: Split, run: Run,
              resume: bool, progress: bool) -> tuple[float, list[dict[str, Any]]]:
    """Train the whole network (triplet: backbone only, on triplets; joint: backbone and head, on labelled batches)."""
    margin = recipe.method["margin"]
    triplet_weight = recipe.method.get("triplet_weight", 1.0)
    dev, bf16 = run.device, run.bf16
    # A triplet batch holds three images per item: batch_size // 3 triplets keep the step cost the same.
    items = recipe.batch_size // 3 if kind == "triplet" else recipe.batch_size
    per_epoch = steps_per_epoch(len(train_split), items)
    optimizer, schedule = make_optimizer(model, recipe, recipe.epochs * per_epoch)
    test_images, test_labels = torch.as_tensor(test_split.images), torch.as_tensor(test_split.labels)

    def train_epoch(epoch: int) -> dict[str, float]:
        """One pass over the training images; returns the mean of each loss term and count per image."""
        generator = torch.Generator().manual_seed(run.seed * 1000 + epoch)
        if kind == "triplet":
            loader = torch.utils.data.DataLoader(TripletDataset(train_split, run.seed, epoch), batch_size=items,
                                                 shuffle=True, generator=generator)
        else:
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.as_tensor(train_split.images), torch.as_tensor(train_split.labels)),
                batch_size=items, shuffle=True, generator=generator)
        # Running sums stay on the device: reading them every step would stall a GPU once per batch.
        sums = {key: torch.zeros((), device=dev) for key in ("triplet", "bce", "violating", "correct")}
        seen = 0
        for batch in tqdm(loader, desc=f"{recipe.name} epoch {epoch + 1}/{recipe.epochs}", disable=not progress,
                          mininterval=5):
            if kind == "triplet":
                images, labels = torch.cat(batch[:3]), torch.cat(batch[3:])
            else:
                images, labels = batch
            images = augment(images.to(dev), generator, **recipe.augment)
            labels = labels.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                embedding = model.embed(images)
                triplet, violating = batch_hard_triplet_loss(embedding, labels, margin)
                loss = triplet_weight * triplet
                if kind == "joint":
                    logits = model.classify(embedding).float()
                    bce = F.cross_entropy(logits, labels)  # on [0, z]: exactly BCE-with-logits on z
                    loss = loss + bce
                    sums["bce"] += bce.detach() * len(labels)
                    sums["correct"] += (logits.argmax(1) == labels).sum()
            optimizer_step(loss, optimizer, schedule)
            sums["triplet"] += triplet.detach() * len(labels)
            sums["violating"] += violating * len(labels)
            seen += len(labels)
        return {key: float(total) / seen for key, total in sums.items()}

    def record_epoch(epoch: int, means: dict[str, float], seconds: float) -> dict[str, Any]:
        entry = {"epoch": epoch + 1, "stage": kind, "train_triplet": means["triplet"],
                 "train_violating": means["violating"], "seconds": seconds,
                 **held_out_losses(model, test_images, test_labels, margin, dev, bf16)}
        if kind == "joint":
            entry.update(train_bce=means["bce"], train_accuracy=means["correct"])
        else:  # the head is trained afterwards: its test BCE would describe an untrained layer
            del entry["test_bce"], entry["test_accuracy"]
        print(f"{recipe.name} epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                            if isinstance(v, float)), flush=True)
        return entry

    return run.epochs(optimizer, schedule, per_epoch, resume, train_epoch, record_epoch)


def held_out_losses(model: ResNet50, images: Tensor, labels: Tensor, margin: float, dev: torch.device,
                    bf16: bool, batch_size: int = 250) -> dict[str, float]:
    """Test triplet loss (batch-hard within fixed, shuffled batches of the test split), BCE and accuracy."""
    model.eval()
    # The split is ordered by class: unshuffled batches would hold one class and no negatives.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order], labels[order]
    triplet_sum, embedded = 0.0, []
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(labels), batch_size):
            embedding = model.embed(images[start:start + batch_size].to(dev)).float()
            part = labels[start:start + batch_size].to(dev)
            triplet_sum += float(batch_hard_triplet_loss(embedding, part, margin)[0]) * len(part)
            embedded.append(embedding.cpu())
        logits = model.classify(torch.cat(embedded).to(dev)).float().cpu()
    return {"test_triplet": triplet_sum / len(labels), "test_bce": float(F.cross_entropy(logits, labels)),
            "test_accuracy": float((logits.argmax(1) == labels).float().mean())}


def train_head(model: ResNet50, recipe: Recipe, train_features: Tensor, train_labels: Tensor, extra_views: Tensor,
               test_features: Tensor, test_labels: Tensor, seed: int, first_epoch: int) -> list[dict[str, Any]]:
    """The head alone on cached embeddings: no backbone forward per epoch.

    It trains on the training images and their `extra_views` (augmented_embeddings); the per-epoch
    train figures are on the plain training images, as the card's train accuracy is.
    """
    head_recipe = recipe.method["head"]
    generator = torch.Generator().manual_seed(seed)
    batch = head_recipe["batch_size"]
    cache = torch.cat([train_features, extra_views])
    cache_labels = train_labels.repeat(len(cache) // len(train_labels))
    per_epoch = steps_per_epoch(len(cache_labels), batch)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=head_recipe["lr"], weight_decay=head_recipe["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, head_recipe["epochs"] * per_epoch)
    history = []
    for epoch in range(head_recipe["epochs"]):
        model.head.train()
        order = torch.randperm(len(cache_labels), generator=generator)
        for step in range(per_epoch):
            index = order[step * batch:(step + 1) * batch]
            optimizer_step(F.cross_entropy(model.classify(cache[index]), cache_labels[index]), optimizer, schedule)
        with torch.no_grad():
            train_logits, test_logits = model.classify(train_features), model.classify(test_features)
        history.append({"epoch": first_epoch + epoch + 1, "stage": "head",
                        "train_bce": float(F.cross_entropy(train_logits, train_labels)),
                        "train_accuracy": float((train_logits.argmax(1) == train_labels).float().mean()),
                        "test_bce": float(F.cross_entropy(test_logits, test_labels)),
                        "test_accuracy": float((test_logits.argmax(1) == test_labels).float().mean())})
    last = history[-1]
    print(f"{recipe.name} head ({head_recipe['epochs']} epochs on cached embeddings): train acc "
          f"{last['train_accuracy']:.4f} test acc {last['test_accuracy']:.4f}", flush=True)
    return history


def train_carplane(recipe: Recipe, out: Path = Path("runs"), resume: bool = True, limit: int | None = None,
                   device: str = "auto", seed: int = 0, progress: bool = True, backbone: str | None = None) -> Path:
    """Train one car/plane variant (recipe.method["kind"]); returns its run folder."""
    from .plots import write_carplane_plots

    kind = recipe.method["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown car/plane variant {kind!r}; expected one of {KINDS}")
    dev, bf16, run_dir = start_run(recipe, out, device, seed)
    train_split, test_split = classifier_split(recipe, "train"), classifier_split(recipe, "test")
    if limit:
        train_split = train_split.subset(random_pick(len(train_split), limit, seed))
        # The test split is ordered by class: an even spread keeps both.
        test_split = test_split.subset(np.linspace(0, len(test_split) - 1, min(limit, len(test_split))).astype(int))
    labels = list(recipe.method["labels"])
    model = build(recipe.arch, dict(recipe.config, num_classes=len(labels), input_size=recipe.input_size))
    model = model.to(dev).to(memory_format=torch.channels_last)
    backbone_info = load_backbone(model, backbone or recipe.backbone, out)
    run = Run(recipe, run_dir, model, labels, dev, bf16, seed, splits_meta(train_split, test_split),
              {"backbone": backbone_info})
    test_labels, train_labels = torch.as_tensor(test_split.labels), torch.as_tensor(train_split.labels)
    before = embeddings(model, test_split.images, dev)

    seconds, history = 0.0, []
    if kind in ("triplet", "joint"):
        seconds, history = fine_tune(model, recipe, kind, train_split, test_split, run, resume, progress)
    began = time.time()
    model.requires_grad_(False).head.requires_grad_(True)
    train_features = embeddings(model, train_split.images, dev)
    test_features = before if kind == "linear" else embeddings(model, test_split.images, dev)  # frozen: unchanged
    extra = augmented_embeddings(model, train_split.images, recipe.method["head"]["views"], recipe.augment, dev, seed) \
        if kind in ("linear", "triplet") else None  # joint trained its head with the backbone
    model.cpu()  # from here on only the head runs, on the cached embeddings (CPU tensors)
    if extra is not None:
        history += train_head(model, recipe, train_features, train_labels, extra, test_features, test_labels, seed,
                              len(history))
    seconds += time.time() - began

    with torch.no_grad():
        train_logits, test_logits = model.classify(train_features), model.classify(test_features)
    metrics: dict[str, Any] = {
        **classifier_metrics(test_logits, test_labels, train_logits, train_labels, labels,
                             f"all {len(train_split)} train images, no augmentation"),
        "embedding_separation": {"before": separation(before, test_labels),
                                 "after": separation(test_features, test_labels)},
        "triplet": {"margin": recipe.method.get("margin"), "distance": "euclidean on L2-normalised embeddings",
                    "mining": "batch-hard within each batch"} if kind != "linear" else None,
        "history": history,
        "train_seconds": seconds,
    }
    return run.end(metrics, lambda final: write_carplane_plots(run_dir, final, labels, before, test_features,
                                                               test_labels, frozen=kind == "linear"))
