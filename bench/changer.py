"""python -m bench.changer --data DIR [--pairs N] [--large N] [--json FILE] [--split test|val] [--seed N]
[--source cifar10|caltech101] [--min-texture T]: the changer's network alone against its estimate refined by
aligning the views (`zoo.align`), on the same held-out test pairs, in one run.

The pairs are the project's test pairs: training/pairs.py's generator (all 8 classes, brightness/contrast
jitter, noise and JPEG re-encoding on B) over CIFAR-10's test split and the Caltech-101 subset's test
bucket, half from each, seeded as training/train_changer.py seeds its test pairs. Reported for both: median
and p90 of the angle error (degrees), the shift error (fraction of the side) and |log scale| error (over the pairs
where that change is present, as the card's test metrics; also over all pairs), label accuracy overall, per class
and where the alignment held or not, on the pairs where both views show something and on those where one is blank
(`blank_views`), and the cost per pair (64×64 pairs, and 12-megapixel JPEG pairs, whose median
errors against their known change are reported too). `--split val` (with its own `--seed`) runs on pairs from the
validation sources instead, for choosing settings such as `--min-texture` without the test pairs.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image

import zoo
from zoo import align
from zoo.geometry import pair_from_photo

from .data import LARGE_JPEG_QUALITY, TWELVE_MEGAPIXELS, add_data_option, caltech_test_bucket, data_folder

#: training/train_changer.py makes its test pairs with seed [recipe seed + 2, source index]; the seed is 0.
TEST_SEED = 2
#: The source images of each split's pairs (training/changer_data.py).
SPLITS = {"test": "CIFAR-10 test + Caltech-101 subset test bucket",
          "val": "CIFAR-10 train (1 of every 20) + Caltech-101 subset val bucket"}
#: A view is blank where its grey levels (0-255, as `zoo.align` reads them) vary by less than this standard deviation,
#: the largest noise σ the pairs add to B: a uniform patch (a white background, say) shows no change whatever it is.
BLANK_STD = 2.0


def errors(params: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair: angle error (degrees, wrapped), shift error (fraction of the side), |log scale| error."""
    angle = np.abs((params[:, 2] - truth[:, 2] + 180) % 360 - 180)
    shift = np.hypot(params[:, 0] - truth[:, 0], params[:, 1] - truth[:, 1])
    log_scale = np.abs(np.log(params[:, 3]) - np.log(truth[:, 3]))
    return {"angle_deg": angle, "shift": shift, "log_scale": log_scale}


def summary(predictions: list[zoo.Prediction], truth: np.ndarray, labels: np.ndarray,
            names: tuple[str, ...]) -> dict[str, object]:
    """Errors over the pairs where that change is present (as the card's test metrics), and over all pairs."""
    params = np.array([[p.params[k] for k in ("shift_x", "shift_y", "angle", "scale")] for p in predictions])
    present = np.stack([np.hypot(truth[:, 0], truth[:, 1]) > 0, truth[:, 2] != 0, truth[:, 3] != 1], axis=1)
    out: dict[str, object] = {}
    column = {"shift": 0, "angle_deg": 1, "log_scale": 2}
    per_pair = errors(params, truth)
    for key, values in per_pair.items():
        out[f"median_{key}_error"] = float(np.median(values[present[:, column[key]]]))
        out[f"p90_{key}_error"] = float(np.percentile(values[present[:, column[key]]], 90))
    for key, values in per_pair.items():
        out[f"median_{key}_error_all_pairs"] = float(np.median(values))
        out[f"p90_{key}_error_all_pairs"] = float(np.percentile(values, 90))
    out.update(label_figures(correct_labels(predictions, labels, names), labels, names))
    return out


def correct_labels(predictions: list[zoo.Prediction], labels: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Per pair: whether the predicted label is the true one."""
    return np.array([names.index(p.label) for p in predictions]) == labels


def label_figures(correct: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict[str, object]:
    """Label accuracy overall, per class (those present) and of the worst class, from per-pair `correct`."""
    per_class = {name: float(correct[labels == k].mean()) for k, name in enumerate(names) if (labels == k).any()}
    return {"label_accuracy": float(correct.mean()), "per_class_accuracy": per_class,
            "worst_class_accuracy": min(per_class.values())}


def by_outcome(predictions: list[zoo.Prediction], labels: np.ndarray, names: tuple[str, ...]) -> dict[str, object]:
    """Label accuracy over the pairs where the alignment held (refined) and over those where the network's
    estimate stands (fallback), with their counts."""
    held = np.array([bool(p.refined) for p in predictions])
    correct = correct_labels(predictions, labels, names)
    return {name: {"pairs": int(mask.sum()), "label_accuracy": float(correct[mask].mean()) if mask.any() else None}
            for name, mask in (("refined", held), ("fallback", ~held))}


def test_pairs(data: Path, pairs: int, split: str = "test", seed: int = TEST_SEED, source: str | None = None):
    """`pairs` generated pairs, an equal share from each source's `split` (or all from `source`), seeded
    [seed, source index]."""
    from training.changer_data import source_images, source_sets  # noqa: PLC0415 - torch, only here
    from training.pairs import Pairs, make_pairs  # noqa: PLC0415

    sources = source_images(source_sets(str(data), split))
    chosen = [(k, images) for k, (name, images) in enumerate(sources.items()) if source in (None, name)]
    return Pairs.concat([make_pairs(images, pairs // len(chosen), 64, [seed, k]) for k, images in chosen])


def twelve_megapixel_pairs(data: Path, count: int, rng: np.random.Generator
                           ) -> tuple[list[tuple[bytes, bytes]], np.ndarray]:
    """`count` pairs of 4000×3000 JPEGs (quality 90) and their true parameters (N, 4): the views of a
    test-bucket photo, each cut 4000×4000 and kept whole in its middle 4000×3000 (no stretching), so that
    B is a similarity of A. The network's view is the centre 3000×3000, 3/4 of the cut view's side: a
    shift of t of the cut view is 4t/3 of that view's side; angle and scale are the same."""
    width, height = TWELVE_MEGAPIXELS
    out, truth = [], []
    for path in caltech_test_bucket(data / "caltech101-subset", count):
        photo = Image.open(path).convert("RGB").resize((1200, 900), Image.Resampling.BICUBIC)
        change = {"shift_x": float(rng.uniform(-0.15, 0.15)), "shift_y": float(rng.uniform(-0.15, 0.15)),
                  "angle": float(rng.uniform(-25, 25)), "scale": float(rng.uniform(0.8, 1.25))}
        a, b = pair_from_photo(photo, width, view_fraction=0.6, **change)
        top = (width - height) // 2
        encoded = []
        for view in (a, b):
            buffer = io.BytesIO()
            Image.fromarray(view[top:top + height]).save(buffer, "JPEG", quality=LARGE_JPEG_QUALITY)
            encoded.append(buffer.getvalue())
        out.append((encoded[0], encoded[1]))
        ratio = width / min(width, height)
        truth.append([change["shift_x"] * ratio, change["shift_y"] * ratio, change["angle"], change["scale"]])
    return out, np.array(truth)


def medians(predictions: list[zoo.Prediction], truth: np.ndarray) -> dict[str, float]:
    """Median angle, shift and |log scale| errors over all the pairs."""
    params = np.array([[p.params[k] for k in ("shift_x", "shift_y", "angle", "scale")] for p in predictions])
    return {f"median_{key}_error": float(np.median(values)) for key, values in errors(params, truth).items()}


def blank_views(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pair of uint8 views (N, H, W, 3): whether either view is blank (BLANK_STD), read as `zoo.align` reads it."""
    return np.array([min(float(view.std()) for view in align.working_views(Image.fromarray(x), Image.fromarray(y)))
                     < BLANK_STD for x, y in zip(a, b)])


def by_content(network: list[zoo.Prediction], refined: list[zoo.Prediction], labels: np.ndarray,
               names: tuple[str, ...], blank: np.ndarray) -> dict[str, object]:
    """Label figures of the network alone and refined, over the pairs where both views show something and over
    those where one is blank (`blank_views`: no pixels can tell the change there)."""
    correct = {key: correct_labels(predictions, labels, names)
               for key, predictions in (("network", network), ("refined", refined))}
    out: dict[str, object] = {"blank_std": BLANK_STD}
    for name, mask in (("both_views_show_content", ~blank), ("a_view_blank", blank)):
        entry: dict[str, object] = {"pairs": int(mask.sum())}
        if mask.any():
            entry.update({key: label_figures(right[mask], labels[mask], names) for key, right in correct.items()})
        out[name] = entry
    return out


def seconds_per_pair(model: zoo.Model, items: list, refine: bool, repeat: int = 1) -> float:
    best = math.inf
    for _ in range(repeat):
        began = time.perf_counter()
        model.predict_batch(items, refine=refine)
        best = min(best, time.perf_counter() - began)
    return best / len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.changer", description=__doc__.split("\n\n")[0])
    add_data_option(parser)
    parser.add_argument("--pairs", type=int,
                        help="test pairs, half per source (default: the card's test pairs, 4,000 per source)")
    parser.add_argument("--large", type=int, default=8, help="12-megapixel pairs timed and scored (default 8)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="source images of the pairs (default test; val: for choosing settings)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help=f"pairs seeded [SEED, source] (default {TEST_SEED})")
    parser.add_argument("--source", choices=("cifar10", "caltech101"),
                        help="all pairs from this source set (default: half from each)")
    parser.add_argument("--min-texture", type=float, default=align.MIN_TEXTURE,
                        help=f"zoo.align.MIN_TEXTURE for this run (default {align.MIN_TEXTURE})")
    args = parser.parse_args(argv)
    align.MIN_TEXTURE = args.min_texture
    data = data_folder(parser, args)
    model = zoo.load("changer", device="cpu", runtime="onnxruntime")  # the figures are onnxruntime's
    if args.pairs is None:
        from training.train_changer import TEST_PAIRS_PER_SOURCE  # noqa: PLC0415 - torch, only here

        args.pairs = 2 * TEST_PAIRS_PER_SOURCE
    pairs = test_pairs(data, args.pairs, args.split, args.seed, args.source)
    items = list(zip(pairs.a, pairs.b))
    names = model.labels
    network = model.predict_batch(items, refine=False)
    refined = model.predict_batch(items, refine=True)
    result: dict[str, object] = {
        "pairs": len(items),
        "data": f"training/pairs.py {args.split} pairs (seed [{args.seed}, source]) from {SPLITS[args.split]}, "
                + (f"{args.source} only" if args.source else "half each")
                + "; B with brightness/contrast ±10%, noise σ ≤ 2/255, JPEG quality 70-95",
        "command": " ".join(["python -m bench.changer", *(sys.argv[1:] if argv is None else argv)]),
        "align_size": align.ALIGN_SIZE,
        "network": summary(network, pairs.params, pairs.labels, names),
        "refined": summary(refined, pairs.params, pairs.labels, names),
        "refined_fraction": float(np.mean([bool(p.refined) for p in refined])),
        "labels_by_outcome": by_outcome(refined, pairs.labels, names),
        "labels_by_content": by_content(network, refined, pairs.labels, names, blank_views(pairs.a, pairs.b)),
    }
    rng = np.random.default_rng(0)
    small = items[:200]
    network_s = seconds_per_pair(model, small, refine=False, repeat=2)
    refined_s = seconds_per_pair(model, small, refine=True, repeat=2)
    cost: dict[str, object] = {"pairs_64": {"network_ms": 1000 * network_s, "refined_ms": 1000 * refined_s,
                                            "alignment_ms": 1000 * (refined_s - network_s)}}
    if args.large:
        large, large_truth = twelve_megapixel_pairs(data, args.large, rng)
        network_l = seconds_per_pair(model, large, refine=False, repeat=2)
        refined_l = seconds_per_pair(model, large, refine=True, repeat=2)
        check = model.predict_batch(large, refine=True)
        cost["pairs_12mp"] = {"pairs": len(large), "network_ms": 1000 * network_l, "refined_ms": 1000 * refined_l,
                              "alignment_ms": 1000 * (refined_l - network_l),
                              "refined_fraction": float(np.mean([bool(p.refined) for p in check])),
                              "network": medians(model.predict_batch(large, refine=False), large_truth),
                              "refined": medians(check, large_truth)}
    result["cost_per_pair"] = cost
    result["cpu"] = f"{os.cpu_count()} cores, onnxruntime {onnxruntime.__version__}"
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
