"""The strict pydantic base of every config model (the trial spec's and every variant's
parameters), and the bounds they share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Whole numbers stay far inside the int64 columns of the results (`ffbench.results`); the
# sizes that allocate (widths, depth) and the counts that loop (epochs) have bounds of their
# own, generous for any published net but refusing a typo that would exhaust memory or time.
MAX_COUNT = 10**12
MAX_WIDTH = 100_000
MAX_DEPTH = 1_000
MAX_EPOCHS = 1_000_000
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Strict(BaseModel):
    """No unknown fields, no silent type coercion ("0.1" is not a number), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class NoParams(Strict):
    """A variant without parameters of its own."""
