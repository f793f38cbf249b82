"""The recurrent net's part of the FF spec (`ffbench.reference.recurrent` defines it): its
fields, and what an FF trial using it may not combine it with. Re-exported by `ffbench.spec`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ffbench.strict import Fraction, Strict


class RecurrentSpec(Strict):
    """The paper's recurrent net (sec. 3.4, fig. 3; definitions: `ffbench.reference.recurrent`).
    Defaults are the paper's where it gives a number; the rest are marked "not in the paper"."""

    iterations: Annotated[int, Field(ge=1, le=32)] = 8  # synchronous updates per image (paper: 8)
    damping: Fraction = 0.3  # h <- d h + (1 - d) relu(z) (paper: 0.3 of the old state plus 0.7 of the new)
    score_from: Annotated[int, Field(ge=0, le=32)] = 3  # prediction: goodness summed over iterations
    score_to: Annotated[int, Field(ge=0, le=32)] = 5  # score_from..score_to (paper: 3 to 5)
    loss_from: Annotated[int, Field(ge=1, le=32)] = 1  # training: the layer losses of iterations
    loss_to: Annotated[int, Field(ge=1, le=32)] | None = None  # loss_from..loss_to (None: the last); not in the paper
    init: Literal["bottom_up", "zeros"] = "bottom_up"  # the state before iteration 1; not in the paper

    @model_validator(mode="after")
    def _ranges(self) -> RecurrentSpec:
        if not self.score_from <= self.score_to <= self.iterations:
            raise ValueError(f"expected score_from <= score_to <= iterations ({self.iterations}); "
                             f"got {self.score_from}..{self.score_to}")
        if not self.loss_from <= self.last_loss_iteration <= self.iterations:
            raise ValueError(f"expected loss_from <= loss_to <= iterations ({self.iterations}); "
                             f"got {self.loss_from}..{self.loss_to}")
        return self

    @property
    def last_loss_iteration(self) -> int:
        return self.iterations if self.loss_to is None else self.loss_to


def check_recurrent(trial) -> None:
    """What the recurrent net does not combine with (each would need its own definition)."""
    ff = trial.ff
    if not ff.embeds_labels:
        raise ValueError(f"ff.recurrent clamps the label at the top: ff.negatives: {ff.negatives} has no labels")
    if ff.schedule != "simultaneous" or ff.episodes > 1 or ff.grow_patience is not None:
        raise ValueError("ff.recurrent trains every layer at once: it needs ff.schedule: simultaneous (one episode)")
    if ff.peer_weight > 0:
        raise ValueError("ff.recurrent has no peer normalisation: set ff.peer_weight: 0")
    if ff.prediction == "softmax" and ff.recurrent.init != "bottom_up":
        raise ValueError("the one-pass softmax reads the bottom-up start: ff.recurrent.init must be bottom_up")
    if ff.label_channels != "first" or ff.label_on != 1.0 or ff.label_on_mode != "constant":
        raise ValueError("ff.recurrent clamps a one-hot label at the top; ff.label_* (the image overlay) do not apply")
