"""The strict pydantic base of every config model: the trial spec's and every variant's parameters."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """No unknown fields, no silent type coercion ("0.1" is not a number), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, allow_inf_nan=False)


class NoParams(Strict):
    """A variant without parameters of its own."""
