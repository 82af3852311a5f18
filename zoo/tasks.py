"""What each task is, in one place: its graph's inputs and outputs, how the outputs become `Prediction`s, which of
them are probabilities, the refinement it gets, how an HTTP request uploads its inputs and a Ray Data batch names
them, and what a model's README says about its outputs.

zoo's runtime, the server, Ray, the demo, export's reports and the benchmarks read it here: a new task is one
`Task` added to TASKS (and its networks and training loop in `training/`; see docs/extending.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from . import align
from .card import ModelCard


@dataclass(frozen=True)
class Prediction:
    """What a model says about one input: the top label, its probability, and every label's probability."""

    label: str
    score: float
    probs: dict[str, float]
    changes: dict[str, float] | None = None
    params: dict[str, float] | None = None
    #: The changer, refining (the default): whether `params` (and the label) come from aligning the views
    #: directly (`zoo.align`); False where the alignment failed and the network's estimate stands.
    #: None when no refinement was asked for.
    refined: bool | None = None
    #: The alignment's score of the `params` returned: the normalised cross-correlation of A and B aligned
    #: by them, over their overlap (1 is a perfect fit). None when no refinement was asked for.
    alignment_score: float | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"label": self.label, "score": self.score, "probs": self.probs}
        if self.changes is not None:
            out["changes"] = self.changes
        if self.params is not None:
            out["params"] = self.params
        if self.refined is not None:
            out["refined"] = self.refined
        if self.alignment_score is not None:
            out["alignment_score"] = self.alignment_score
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _from_probs(labels: Sequence[str], row: list[float], **details: dict[str, float]) -> Prediction:
    best = max(range(len(row)), key=row.__getitem__)  # the first of equal maxima, as numpy's argmax
    return Prediction(label=labels[best], score=row[best], probs=dict(zip(labels, row)), **details)


def _classification(card: ModelCard, outputs: dict[str, np.ndarray]) -> list[Prediction]:
    probs = softmax(outputs[card.outputs[0]].astype(np.float64))
    return [_from_probs(card.labels, row) for row in probs.tolist()]  # Python floats, converted at once


def _change_detection(card: ModelCard, outputs: dict[str, np.ndarray]) -> list[Prediction]:
    class_probs, change_probs, params = (outputs[name].astype(np.float64).tolist() for name in card.outputs)
    changes, names = card.changes, card.param_names
    return [_from_probs(card.labels, row, changes=dict(zip(changes, c)), params=dict(zip(names, p)))
            for row, c, p in zip(class_probs, change_probs, params)]


def _refined_change(card: ModelCard, prediction: Prediction, views: tuple[np.ndarray, np.ndarray]) -> Prediction:
    """`prediction` with its parameters refined by aligning the views; the label follows the refined
    parameters (`zoo.align.label_from_params`) and the score is the network's probability of that label.
    A fit that changes the network's label must score better than the fit held to the network's label's
    changes (`zoo.align.align`'s `changes`, LABEL_MARGIN). Where the alignment fails or scores worse than the
    network's estimate, the network's estimate and label stand (refined=False)."""
    assert prediction.params is not None
    named = prediction.label.split("+")
    changes = tuple(change in named for change in card.changes)
    fit = align.align(views[0], views[1], prediction.params, changes)
    if not fit.refined:
        return replace(prediction, refined=False, alignment_score=fit.score)
    label = align.label_from_params(fit.params, card.changes)
    return replace(prediction, label=label, score=prediction.probs[label], params=fit.params, refined=True,
                   alignment_score=fit.score)


Postprocess = Callable[[ModelCard, dict[str, np.ndarray]], list[Prediction]]
Refine = Callable[[ModelCard, Prediction, tuple[np.ndarray, np.ndarray]], Prediction]


@dataclass(frozen=True)
class Task:
    """One task: everything about it that is the same for every model of it."""

    name: str
    #: The graph's input and output names, in order (export writes them so; the card repeats them).
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    #: The graph's outputs (by name) -> one Prediction per input.
    postprocess: Postprocess
    #: The graph's outputs (in order) -> those that are probabilities, compared across runtimes.
    probabilities: Callable[[Sequence[np.ndarray]], list[np.ndarray]]
    #: The multipart fields of an HTTP request, one per input (repeated for several inputs a request).
    upload_fields: tuple[str, ...]
    #: The Ray Data columns each input may come from, in the order they are looked for.
    ray_columns: tuple[tuple[str, ...], ...]
    #: The README's words for the graph's outputs, and for their postprocessing and what zoo returns.
    outputs_note: str
    postprocessing_note: str
    #: The README's example of running the graph without zoo (plain onnxruntime, Pillow, numpy on the file
    #: `zoo export-onnx` writes): a format string of file, width, height, input, input_b, changes, params.
    onnx_example: str
    #: `zoo.align`'s refinement of a prediction from the two decoded views (None: not refined), and the README's
    #: words for it.
    refine: Refine | None = None
    refinement_note: str = ""


CLASSIFICATION = Task(
    name="image-classification",
    inputs=("image",),
    outputs=("logits",),
    postprocess=_classification,
    probabilities=lambda outputs: [softmax(np.asarray(outputs[0], np.float64))],
    upload_fields=("image",),
    ray_columns=(("image", "bytes"),),
    outputs_note="`logits` (N, classes), float32.",
    postprocessing_note="Postprocessing: softmax over classes; zoo returns the top label, its probability and "
                        "every label's probability.",
    onnx_example="""\
import json

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

session = ort.InferenceSession("{file}")
labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
image = ImageOps.exif_transpose(Image.open("photo.jpg")).convert("RGB")
image = ImageOps.fit(image, ({width}, {height}), method=Image.Resampling.BILINEAR)  # cover, then cut the centre
logits = session.run(None, {{"{input}": np.asarray(image, dtype=np.uint8)[None]}})[0]
probs = np.exp(logits - logits.max(axis=1, keepdims=True))
probs /= probs.sum(axis=1, keepdims=True)
print(labels[int(probs[0].argmax())], float(probs[0].max()))
""",
)

CHANGE_DETECTION = Task(
    name="change-detection",
    inputs=("image_a", "image_b"),
    outputs=("class_probs", "change_probs", "params"),
    postprocess=_change_detection,
    probabilities=lambda outputs: list(outputs[:2]),
    upload_fields=("a", "b"),
    ray_columns=(("a",), ("b",)),
    outputs_note="`class_probs` (N, 8): the probabilities of the eight change classes, the products of the three "
                 "change probabilities; `change_probs` (N, 3): displacement, rotation, scaling; `params` (N, 4): "
                 "shift_x, shift_y (fractions of the view's side), angle (degrees, counterclockwise on screen), "
                 "scale.",
    postprocessing_note="zoo returns them as `probs`, `changes` and `params`.",
    onnx_example="""\
import json

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps


def model_input(path):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image = ImageOps.fit(image, ({width}, {height}), method=Image.Resampling.BILINEAR)  # cover, then cut the centre
    return np.asarray(image, dtype=np.uint8)[None]


session = ort.InferenceSession("{file}")
labels = json.loads(session.get_modelmeta().custom_metadata_map["labels"])
class_probs, change_probs, params = session.run(None, {{"{input}": model_input("a.jpg"), "{input_b}": model_input("b.jpg")}})
print(labels[int(class_probs[0].argmax())], float(class_probs[0].max()))
print(dict(zip({changes}, change_probs[0].tolist())))
print(dict(zip({params}, params[0].tolist())))
""",
    refine=_refined_change,
    refinement_note=(
        "The graph gives the network's estimate. `zoo.load(\"changer\").predict` refines it by default, as "
        "post-processing outside the graph: `zoo.align.refine_pair(a, b, params)` (or `zoo.align.align` on the two "
        "views' grey levels) fits the four parameters again by aligning the two views directly (Gauss–Newton, coarse "
        "to fine, gain and offset fitted alongside) from the network's `params`, and returns the network's estimate "
        "where the fit fails or scores worse. `zoo/align.py` needs only numpy and Pillow: call it, or copy it. "
        "zoo's label then follows the refined parameters (`zoo.align.label_from_params`: a change is present when "
        "|t| > 0.05 of the side, |θ| > 7.5° or |log s| > log(1.2)/2, half the smallest change the pairs were made "
        "with), and `changes` stay the network's probabilities."),
)

#: Every task zoo can run, by the name cards give it.
TASKS: dict[str, Task] = {task.name: task for task in (CLASSIFICATION, CHANGE_DETECTION)}


def task_of(card: ModelCard) -> Task | None:
    """The card's task, or None where this version of zoo does not know it."""
    return TASKS.get(card.task)
