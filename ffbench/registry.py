"""The backend registry: names -> modules, imported only when a trial needs them.

Importing ffbench imports no framework. `status(name)` answers "installed?" by looking for
the framework's modules without importing them; `traits(name)` says what the backend runs
and packs, also without its framework (what the driver of `ffbench run` uses); `load(name)`
imports the backend module and returns its `Backend` instance, or raises
BackendUnavailable with the reason (what a trial's worker uses).

Third-party backends register through the `ffbench.backends` entry-point group: the entry
point's value is `module:Class` (a `ffbench.backend.Backend` subclass), or a bare module path
whose `Backend` attribute is one. The group is scanned once per process (`_entry_points`):
spec validation asks for the backend names on every trial parse.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ffbench.errors import BackendUnavailable

if TYPE_CHECKING:
    from ffbench.backend import Backend, Traits


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str
    requires: tuple[str, ...]  # top-level modules that must be importable
    install_hint: str
    description: str
    attr: str = "Backend"  # the class in `module` that is instantiated
    traits: str | None = None  # a framework-free module (`ffbench.backend.Traits`); None: see `traits()`


_BUILTIN = (
    BackendEntry("torch", "ffbench_backends.torch", ("torch",), "pip install 'ffbench[torch]'",
                 "PyTorch: data and negatives on the device, no per-step host syncs", traits="ffbench_backends.torch.traits"),
    BackendEntry("jax", "ffbench_backends.jax", ("jax", "optax"), "pip install 'ffbench[jax]'",
                 "JAX + optax: each epoch is one jitted lax.scan, data and negatives on the device",
                 traits="ffbench_backends.jax.traits"),
    BackendEntry("keras", "ffbench_backends.keras", ("keras", "$KERAS_BACKEND"), "pip install 'ffbench[keras]'",
                 "Keras 3 (KERAS_BACKEND=tensorflow or jax): FF step in keras.ops, BP with compile/fit",
                 traits="ffbench_backends.keras.traits"),
)
_REGISTRY: dict[str, BackendEntry] = {e.name: e for e in _BUILTIN}
BUILTIN_NAMES = frozenset(_REGISTRY)


def register_backend(entry: BackendEntry) -> None:
    """Add a backend (by module path; nothing is imported now)."""
    _REGISTRY[entry.name] = entry
    _loaded.cache_clear()


@cache
def _entry_points() -> dict[str, BackendEntry]:
    """The `ffbench.backends` entry points, scanned once (a scan costs about 5 ms)."""
    found = {}
    for ep in importlib.metadata.entry_points(group="ffbench.backends"):
        found[ep.name] = BackendEntry(ep.name, ep.module, (ep.module.split(".")[0],),
                                      f"install the package providing {ep.value}", "third-party backend", ep.attr or "Backend")
    return found


def entries() -> dict[str, BackendEntry]:
    """Every backend: the entry points', then the built-in and registered ones (which win)."""
    return {**_entry_points(), **_REGISTRY}


def names() -> list[str]:
    return sorted(entries())


def get_entry(name: str) -> BackendEntry:
    all_entries = entries()
    if name not in all_entries:
        raise BackendUnavailable(f"unknown backend {name!r}; expected one of: {', '.join(sorted(all_entries))}")
    return all_entries[name]


def _requires(entry: BackendEntry) -> list[str]:
    """The modules a backend needs, with "$KERAS_BACKEND" as the framework Keras will run on."""
    return [os.environ.get("KERAS_BACKEND", "tensorflow") if mod == "$KERAS_BACKEND" else mod for mod in entry.requires]


def status(name: str) -> tuple[bool, str | None]:
    """(installed, reason if not) without importing the framework."""
    entry = get_entry(name)
    for mod, asked in zip(_requires(entry), entry.requires):
        if asked == "$KERAS_BACKEND" and mod not in ("tensorflow", "jax"):
            return False, f"KERAS_BACKEND={mod} is not supported; ffbench runs Keras on tensorflow or jax"
        if importlib.util.find_spec(mod) is None:
            return False, f"module {mod!r} is not installed ({entry.install_hint})"
    if importlib.util.find_spec(entry.module) is None:
        return False, f"backend module {entry.module!r} not found"
    return True, None


def installed() -> list[str]:
    return [n for n in names() if status(n)[0]]


def load(name: str) -> Backend:
    """Import a backend and return its (cached) instance."""
    ok, reason = status(name)
    if not ok:
        raise BackendUnavailable(f"backend {name!r} is not installed: {reason}")
    return _loaded(name)


class _NoTraits:
    """A backend that declares no framework-free traits: its trials are checked by the backend
    itself in its worker (a refusal is that trial's failed row), and never packed."""

    @staticmethod
    def skip(trial) -> str | None:
        return None

    @staticmethod
    def pack_skip(trial, on_gpu: bool | None) -> str | None:
        return "the backend declares no framework-free traits (BackendEntry.traits)"


def traits(name: str) -> Traits:
    """What backend `name` runs and packs, without importing its framework (its package and
    its traits module import none)."""
    entry = get_entry(name)
    return importlib.import_module(entry.traits) if entry.traits else _NoTraits()


def load_triton_first() -> None:
    """Load triton now if it is installed and TensorFlow is not loaded yet.

    triton (PyTorch's GPU compiler, installed with CUDA builds of torch) and TensorFlow each
    link their own LLVM, and loading triton after TensorFlow segfaults inside dlopen. torch
    loads triton lazily, when torch.compile (`FFBENCH_TORCH_COMPILE=1`), torch.func.grad or a
    torch.optim constructor first runs; in a process that has run Keras on TensorFlow (`ffbench
    check`, `bench`, the local executor, the tests) that would crash. Loaded first, both work.
    Costs about 0.4 s where triton exists; a triton that fails to import is left to torch.
    """
    if "tensorflow" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - best effort: torch reports a broken triton itself, if it ever needs it
        pass


@cache
def _loaded(name: str) -> Backend:
    entry = get_entry(name)
    if "tensorflow" in _requires(entry):
        load_triton_first()
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:  # a framework that is present but broken
        raise BackendUnavailable(f"backend {name!r} failed to import: {exc}") from exc
    try:
        cls = getattr(module, entry.attr)
    except AttributeError:
        raise BackendUnavailable(f"backend {name!r}: module {entry.module!r} has no {entry.attr!r}") from None
    return cls()
