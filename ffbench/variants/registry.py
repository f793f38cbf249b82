"""Lazy registries of variants, in the spirit of lm-evaluation-harness's task registry.

A registry maps names to variants of one kind (negative-data strategies, layer objectives,
datasets). It is filled by the built-ins, by `register()` calls, and by an entry-point group
(`ffbench.negatives`, `ffbench.objectives`, `ffbench.datasets`) whose values are
`module:attr`. Nothing is imported to list the names; a variant's module is imported the first
time the variant itself is asked for, and its per-backend implementations only in the
worker that trains with them (`Variant.implementation`).

A variant is one object (`Variant`): its name, a one-line description, its own typed
parameters (a pydantic model), its NumPy reference (methods of the variant) and, keyed by
backend name, where each backend's implementation lives.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ffbench.errors import BackendUnavailable
from ffbench.strict import NoParams


class VariantError(ValueError):
    """An unknown variant, one that fails to load, or parameters it refuses (a one-line message)."""


class Variant:
    """A registered variant. Subclasses set the class attributes; the registry holds one instance.

    `backends`: backend name -> its implementation, an object or a lazy "module:attr" string
    (imported only by `implementation`, in the worker). A backend missing here cannot run the
    variant: `skip` says so, and the trial is refused before it starts.
    """

    kind: ClassVar[str] = "variant"
    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    backends: ClassVar[dict[str, Any]] = {}
    # Whether a backend may train trials using this variant as one stacked pack (its
    # implementations vectorise over a leading member axis). Plugins train one by one.
    packs: ClassVar[bool] = False
    # The parameters `ffbench check` runs this variant with (None: its defaults).
    check_params: ClassVar[dict[str, Any] | None] = None

    def parse_params(self, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """Validate `raw` against `Params`; the normal form keeps only non-default values (None
        when there are none), so adding a parameter with a default keeps trial ids."""
        try:
            model = self.Params.model_validate(raw or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"]))
            got = f"; got {err['input']!r}" if err["type"] != "missing" else ""
            raise VariantError(f"{self.kind} {self.name!r}: {where}: {err['msg']}{got}") from None
        return model.model_dump(mode="json", exclude_defaults=True) or None

    def params(self, raw: dict[str, Any] | None) -> BaseModel:
        """The typed parameters of a trial (raw: its normal form, already validated)."""
        return self.Params.model_validate(raw or {})

    def skip(self, backend: str) -> str | None:
        """Why `backend` cannot run this variant, or None."""
        if backend not in self.backends:
            have = ", ".join(sorted(self.backends)) or "none"
            return f"{self.kind} {self.name!r} has no {backend} implementation (implemented for: {have})"
        return None

    def implementation(self, backend: str) -> Any:
        """This variant's implementation for `backend` (imported now if it is a "module:attr" string)."""
        reason = self.skip(backend)
        if reason:
            raise BackendUnavailable(reason)
        impl = self.backends[backend]
        if isinstance(impl, str):
            impl = _import(impl)
        return impl() if isinstance(impl, type) else impl


V = TypeVar("V", bound=Variant)


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise VariantError(f"cannot load {target!r}: {type(exc).__name__}: {exc}") from None
    return obj


class Registry(Generic[V]):
    """name -> variant of one kind, loaded on first use."""

    def __init__(self, kind: str, group: str, base: type[V], builtins: dict[str, str]):
        self.kind, self.group, self.base = kind, group, base
        self._targets: dict[str, Any] = dict(builtins)  # name -> "module:attr" or a Variant
        self._builtin = frozenset(builtins)
        self._loaded: dict[str, V] = {}

    @cache  # noqa: B019 - one registry object per kind, for the life of the process
    def _entry_points(self) -> dict[str, str]:
        """The entry-point group, scanned once per process."""
        return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=self.group)}

    def _all(self) -> dict[str, Any]:
        return {**self._entry_points(), **self._targets}  # built-ins and register() win over entry points

    def names(self) -> list[str]:
        """Every name, without importing any variant."""
        return sorted(self._all())

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __len__(self) -> int:
        return len(self._all())

    def origin(self, name: str) -> str:
        """"built-in", or where a plugin variant comes from."""
        if name in self._builtin:
            return "built-in"
        target = self._all()[name]
        return f"plugin {target}" if isinstance(target, str) else f"registered {type(target).__module__}"

    def register(self, variant: V) -> V:
        """Add (or replace) a variant in this process."""
        if not isinstance(variant, self.base):
            raise TypeError(f"a {self.kind} must be a {self.base.__name__}, not {type(variant).__name__}")
        self._targets[variant.name] = variant
        self._loaded.pop(variant.name, None)
        return variant

    def unregister(self, name: str) -> None:
        """Remove a variant `register` added (tests; a plugin of a finished experiment)."""
        if name in self._builtin:
            raise ValueError(f"{name!r} is a built-in {self.kind}")
        self._targets.pop(name, None)
        self._loaded.pop(name, None)

    def get(self, name: str) -> V:
        """The variant called `name` (VariantError: unknown, or its module fails to load)."""
        if name in self._loaded:
            return self._loaded[name]
        targets = self._all()
        if name not in targets:
            raise VariantError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(sorted(targets))}")
        obj = targets[name]
        if isinstance(obj, str):
            obj = _import(obj)
        if isinstance(obj, type):
            obj = obj()
        if not isinstance(obj, self.base):
            raise VariantError(f"{self.kind} {name!r} ({targets[name]!r}) is not a {self.base.__name__}")
        if obj.name != name:
            raise VariantError(f"{self.kind} registered as {name!r} calls itself {obj.name!r}")
        self._loaded[name] = obj
        return obj

    def check_name(self, name: str) -> str:
        """A pydantic field validator's body: the name, if it is registered and loads
        (VariantError is a ValueError: pydantic reports it at the field)."""
        self.get(name)
        return name

    def check_params(self, name: str | None, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """A pydantic field validator's body: variant `name`'s parameters in normal form; nothing
        to check when the name itself did not validate (that error is reported instead)."""
        return raw if name is None else self.get(name).parse_params(raw)
