"""Layer objectives as registered variants (`ffbench list`: "layer objectives").

A layer objective turns one layer's activities on a step's positives and negatives into that
layer's loss, and scores an input's activities for prediction. `h` holds the 2N rows of a
step, the N positives first; `fan_in` is the layer's input width. The NumPy methods here
are the reference; each backend's implementation (`backends`) has `loss`, `goodness` and
`score` with the same arguments in its framework. Gradients come from the framework's
autodiff (Keras: of `loss` with respect to `h`, `ffbench_backends.keras.ops.grad_h`); nobody
derives one by hand. `ffbench check` compares every backend's gradients with central finite
differences of the reference `loss`.

    loss(h, n_pos, ff, params, fan_in) -> scalar   the mean loss of the step's rows
    goodness(h, ff, params) -> (rows,)             what the layer reports per row (check, curves)
    score(h, ff, params) -> (rows,)                higher means "more positive"; summed over
                                                   the prediction layers, it ranks the labels

An objective that learns from the labels themselves rather than from negatives (`labelled`:
CwComp's `cwc`) takes them as `loss(..., labels=y)`: the positives' classes, one per row. One
that scores every class from a single label-free pass (`scores_classes`) has
`class_scores(h, ff, params) -> (rows, 10)`, which `ff.prediction: goodness` sums over the
prediction layers instead of overlaying each label. One whose parameters differ from layer to
layer (`per_layer`: SCFF's thresholds) takes the layer's index as `loss(..., layer=i)`.
`requires` are the FF fields it needs (`ffbench check` sets them on its trial).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ffbench.reference.finite_diff import central_difference
from ffbench.variants.registry import Registry, Variant

# The FF spec fields that belong to layer objectives: an objective lists those it reads
# (`reads`), and a trial that sets another of them is refused.
OBJECTIVE_FIELDS = ("goodness", "threshold", "threshold_scale", "sign")


class LayerObjective(Variant):
    kind: ClassVar[str] = "layer objective"
    reads: ClassVar[tuple[str, ...]] = ("goodness",)
    labelled: ClassVar[bool] = False  # loss takes labels=
    scores_classes: ClassVar[bool] = False  # class_scores ranks the classes from a label-free pass
    per_layer: ClassVar[bool] = False  # loss takes layer= (the layer's index)
    requires: ClassVar[dict[str, Any]] = {}  # FF fields this objective needs
    check_trial: ClassVar[dict[str, Any]] = {}  # trial fields `ffbench check` sets for it (e.g. its widths)

    def validate(self, trial) -> None:
        """Refuse a trial this objective cannot define (raise ValueError with a one-line reason)."""
        defaults = type(trial.ff).model_fields
        for field in OBJECTIVE_FIELDS:
            if field not in self.reads and getattr(trial.ff, field) != defaults[field].default:
                raise ValueError(f"ff.{field} does not apply to ff.objective: {self.name} "
                                 f"(it reads: {', '.join(self.reads) or 'none of them'})")
        for field, value in self.requires.items():
            if getattr(trial.ff, field) != value:
                raise ValueError(f"ff.objective: {self.name} needs ff.{field}: {value} (got {getattr(trial.ff, field)})")

    # ---------------------------------------------------------------- the NumPy reference
    def loss(self, h: np.ndarray, n_pos: int, ff, params, fan_in: int) -> float:
        raise NotImplementedError

    def goodness(self, h: np.ndarray, ff, params) -> np.ndarray:
        raise NotImplementedError

    def score(self, h: np.ndarray, ff, params) -> np.ndarray:
        raise NotImplementedError

    def class_scores(self, h: np.ndarray, ff, params) -> np.ndarray:
        raise NotImplementedError

    def grad_h(self, h: np.ndarray, n_pos: int, ff, params, fan_in: int, **labels) -> np.ndarray:
        """d loss / d h for the reference trainer: central finite differences in float64 (an
        objective may give the exact form instead; `ffbench check` holds both to the same tolerance)."""
        return central_difference(lambda v: self.loss(v, n_pos, ff, params, fan_in, **labels), h)


OBJECTIVES: Registry[LayerObjective] = Registry("layer objective", "ffbench.objectives", LayerObjective, {
    "logistic": "ffbench.variants.builtin_objectives:Logistic", "symba": "ffbench.variants.builtin_objectives:SymBa",
    "cwc": "ffbench.variants.builtin_objectives:CwC", "scff": "ffbench.variants.builtin_objectives:SCFF"})


def scores_classes(ff) -> bool:
    """Whether the spec's objective ranks the classes from one label-free pass (`class_scores`)."""
    return OBJECTIVES.get(ff.objective).scores_classes


def objective_args(ff, labels, layer: int | None) -> dict[str, Any]:
    """The keyword arguments of a `loss` call beyond the original interface: the step's labels
    (`label_args`) and, for a `per_layer` objective, the layer's index."""
    return label_args(ff, labels) | ({"layer": layer} if OBJECTIVES.get(ff.objective).per_layer else {})


def label_args(ff, labels) -> dict[str, Any]:
    """The keyword arguments of a `loss` call that carry the step's labels: {"labels": labels}
    for a `labelled` objective (one label per positive row), else none (so that an objective of
    the original interface needs no `labels` parameter)."""
    return {"labels": labels} if OBJECTIVES.get(ff.objective).labelled else {}


def objective(ff) -> LayerObjective:
    """The layer objective of an FF spec."""
    return OBJECTIVES.get(ff.objective)
