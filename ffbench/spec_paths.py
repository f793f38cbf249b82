"""Dotted field paths of the spec's models: the leaf fields and their types (what `--set`, the
suites' grids and the results' columns are built from), and flattening plain spec data."""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def unwrap(annotation: Any) -> Any:
    """int for Annotated[int, ...] and for int | None; other annotations unchanged."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType) and type(None) in get_args(annotation):
            inner = [a for a in get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


def leaf_fields(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted path -> annotation of every leaf field ("ff.threshold": float, ...)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = unwrap(info.annotation)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(leaf_fields(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = ann
    return out


def model_at(model: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The sub-model at a field path (("ff",) -> FFSpec), or None if it is not a model."""
    for name in path:
        info = model.model_fields.get(name)
        ann = unwrap(info.annotation) if info else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model




def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"ff": {"threshold": 2}} -> {"ff.threshold": 2}; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out
