"""Training the changer on pairs generated on the fly from CIFAR-10 and Caltech-101 photographs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .changer_data import PairStream, mixed_pairs, source_images, source_sets
from .evaluate import per_class_accuracy
from .loop import make_optimizer, optimizer_step, start_run
from .nets import build
from .nets.changer import normalise
from .pairs import CHANGE_LABELS, CLASS_CHANGES, CHANGES, PARAM_NAMES, Pairs, make_pairs
from .recipes import Recipe
from .run import Run

VAL_PAIRS = 2000
TEST_PAIRS_PER_SOURCE = 4000


#: Weight of the parameter term against the change BCE, and smooth L1's beta (in normalised units).
PARAM_WEIGHT, PARAM_BETA = 4.0, 0.02


def changer_loss(raw: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], a: Tensor, b: Tensor, labels: Tensor,
                 params: Tensor) -> tuple[Tensor, Tensor]:
    """BCE on the three changes + smooth L1 on the normalised parameters; returns (loss, predicted class).

    `raw`: the network's `raw` method (change logits, normalised parameters), possibly data-parallel.
    """
    logits, regressed = raw(a, b)
    targets = torch.as_tensor(CLASS_CHANGES, device=a.device)[labels].float()
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    loss = loss + PARAM_WEIGHT * F.smooth_l1_loss(regressed, normalise(params), beta=PARAM_BETA)
    return loss, classes_from_changes(logits > 0)


def classes_from_changes(present: Tensor) -> Tensor:
    table = torch.as_tensor(CLASS_CHANGES, device=present.device)
    return (present.unsqueeze(1) == table.unsqueeze(0)).all(dim=2).float().argmax(dim=1)


@torch.no_grad()
def predict_pairs(model: nn.Module, pairs: Pairs, device: torch.device, bf16: bool = False,
                  batch: int = 250) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class probs, change probs, params) for every pair."""
    model.eval()
    outs: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, len(pairs), batch):
        a = torch.from_numpy(pairs.a[start:start + batch]).to(device)
        b = torch.from_numpy(pairs.b[start:start + batch]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for out, value in zip(outs, model(a, b)):
                out.append(value.float().cpu().numpy())
    return tuple(np.concatenate(o) for o in outs)  # type: ignore[return-value]


def pair_metrics(pairs: Pairs, outputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Accuracy, loss and parameter errors of `outputs` (from predict_pairs) against the pairs' truth."""
    from sklearn.metrics import confusion_matrix

    probs, changes, params = outputs
    predicted = probs.argmax(1)
    truth = pairs.labels
    matrix = confusion_matrix(truth, predicted, labels=range(len(CHANGE_LABELS)))
    present = CLASS_CHANGES[truth]
    shift_error = np.hypot(*(params[:, :2] - pairs.params[:, :2]).T)
    angle_error = np.abs(params[:, 2] - pairs.params[:, 2])
    log_scale_error = np.abs(np.log(params[:, 3]) - np.log(pairs.params[:, 3]))
    median = lambda values, mask: float(np.median(values[mask])) if mask.any() else float("nan")  # noqa: E731
    # The training loss, from the exported outputs: change BCE + weighted smooth L1 on the parameters.
    bce = F.binary_cross_entropy(torch.from_numpy(changes).double().clamp(1e-7, 1 - 1e-7),
                                 torch.from_numpy(present).double())
    regression = F.smooth_l1_loss(normalise(torch.from_numpy(params).double()),
                                  normalise(torch.from_numpy(pairs.params).double()), beta=PARAM_BETA)
    return {
        "pairs": len(truth),
        "accuracy": float((predicted == truth).mean()),
        "loss": float(bce + PARAM_WEIGHT * regression),
        "loss_bce": float(bce),
        "per_class_accuracy": per_class_accuracy(matrix, CHANGE_LABELS),
        "change_accuracy": {c: float(((changes[:, i] > 0.5) == present[:, i]).mean()) for i, c in enumerate(CHANGES)},
        "median_shift_error": median(shift_error, present[:, 0]),
        "median_angle_error_deg": median(angle_error, present[:, 1]),
        "median_abs_log_scale_error": median(log_scale_error, present[:, 2]),
        "mean_shift_error": float(shift_error[present[:, 0]].mean()),
        "mean_angle_error_deg": float(angle_error[present[:, 1]].mean()),
        "mean_abs_log_scale_error": float(log_scale_error[present[:, 2]].mean()),
        "confusion_matrix": matrix.tolist(),
    }


def train_changer(recipe: Recipe, out: Path = Path("runs"), resume: bool = True, limit: int | None = None,
                  device: str = "auto", seed: int = 0, progress: bool = True) -> Path:
    """Train the changer; returns the run folder (model.safetensors, metrics.json, plots).

    Training pairs are generated afresh at every step; the validation pairs (scored after every epoch)
    and the test pairs (scored at the end) are fixed by the seed.
    """
    dev, bf16, run_dir = start_run(recipe, out, device, seed)
    world = distributed.init(dev)
    size = recipe.input_size
    sets = {split: source_sets(recipe.data, split) for split in ("train", "val", "test")}
    train_sources = source_images(sets["train"])
    val_pairs = mixed_pairs(source_images(sets["val"]), min(VAL_PAIRS, limit or VAL_PAIRS), size, seed + 1)
    per_epoch = recipe.steps_per_epoch if not limit else max(1, limit // recipe.batch_size)

    model = build(recipe.arch, dict(recipe.config, input_size=size)).to(dev).to(memory_format=torch.channels_last)
    raw = distributed.wrap(model, world, "raw")
    optimizer, schedule = make_optimizer(model, recipe, recipe.epochs * per_epoch)
    fingerprints = {f"{origin}_{split}": source.fingerprint for split, group in sets.items()
                    for origin, source in group.items()}
    data_meta = {"source": str(Path(recipe.data)), "fingerprints": fingerprints,
                 "sources": {"train": "CIFAR-10 train (19 of every 20) + Caltech-101 subset train hash bucket (80%)",
                             "val": "CIFAR-10 train (1 of every 20) + Caltech-101 subset val bucket (5%)",
                             "test": "CIFAR-10 test + Caltech-101 subset test bucket (15%)"}}
    run = Run(recipe, run_dir, model, list(CHANGE_LABELS), dev, bf16, seed, data_meta,
              {"changes": list(CHANGES), "param_names": list(PARAM_NAMES)})

    def train_epoch(epoch: int) -> list[float]:
        """`per_epoch` steps on freshly generated pairs; returns (pairs seen, correct, loss sum) over all ranks."""
        stream = PairStream(train_sources, recipe.batch_size, size, seed, epoch, per_epoch, world)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=1 if not limit else 0)
        seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(loader, total=per_epoch, desc=f"{recipe.name} epoch {epoch + 1}/{recipe.epochs}",
                   disable=not (progress and world.is_main), mininterval=10)
        for a, b, labels, params in bar:
            a, b, labels, params = a.to(dev), b.to(dev), labels.to(dev), params.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                loss, predicted = changer_loss(raw, a, b, labels, params)
            optimizer_step(loss, optimizer, schedule)
            seen += len(labels)
            correct += int((predicted == labels).sum())
            loss_sum += float(loss.detach()) * len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        return world.sum(seen, correct, loss_sum)

    def record_epoch(epoch: int, sums: list[float], seconds: float) -> dict[str, Any]:
        seen, correct, loss_sum = sums
        val = pair_metrics(val_pairs, predict_pairs(model, val_pairs, dev, bf16))
        print(f"{recipe.name} epoch {epoch + 1}: train loss {loss_sum / seen:.4f} acc {correct / seen:.4f} | val acc "
              f"{val['accuracy']:.4f} angle {val['median_angle_error_deg']:.2f}° shift {val['median_shift_error']:.4f} "
              f"log-scale {val['median_abs_log_scale_error']:.4f} | {seconds:.0f}s", flush=True)
        return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                "val_loss": val["loss"], "val_accuracy": val["accuracy"], "seconds": seconds,
                "val_median_angle_error_deg": val["median_angle_error_deg"],
                "val_median_shift_error": val["median_shift_error"],
                "val_median_abs_log_scale_error": val["median_abs_log_scale_error"]}

    seconds, history = run.epochs(optimizer, schedule, per_epoch, resume, train_epoch, record_epoch, world)
    if not world.is_main:
        return run_dir
    from .plots import write_pair_grid, write_plots

    metrics: dict[str, Any] = {"history": history, "train_seconds": seconds}
    test_sources = source_images(sets["test"])
    n_test = min(TEST_PAIRS_PER_SOURCE, limit or TEST_PAIRS_PER_SOURCE)
    test_pairs = {name: make_pairs(images, n_test, size, [seed + 2, k])
                  for k, (name, images) in enumerate(test_sources.items())}
    test_outputs = {name: predict_pairs(model, pairs, dev) for name, pairs in test_pairs.items()}
    by_source = {name: pair_metrics(test_pairs[name], test_outputs[name]) for name in test_pairs}
    combined = pair_metrics(Pairs.concat(list(test_pairs.values())),
                            tuple(np.concatenate(parts) for parts in zip(*test_outputs.values())))
    metrics.update({"test_accuracy": combined["accuracy"], "test": combined, "test_by_source": by_source,
                    "val": pair_metrics(val_pairs, predict_pairs(model, val_pairs, dev)),
                    "confusion_matrix": combined["confusion_matrix"],
                    "train_accuracy": history[-1]["train_accuracy"] if history else None,
                    "train_accuracy_note": "running accuracy over the last epoch's generated training pairs"})

    def plots(final: dict[str, Any]) -> None:
        write_plots(run_dir, final, list(CHANGE_LABELS))
        write_pair_grid(run_dir / "pairs.png", mixed_pairs(test_sources, 64, size, seed + 3))

    return run.end(metrics, plots)
