"""Suite files: YAML -> a list of validated trial specs.

    name: quickstart            # optional; the file's stem by default
    description: ...
    defaults:                   # merged into every experiment (experiment wins)
      hidden: [500, 500]
      optimizer: {name: adam, lr: 0.001}
    experiments:
      - name: ff                # experiment-level labels: name, tags, reference_error, reference_source,
        resources: {gpus: 0.25}   #   resources (per trial, for Ray: gpus, cpus; not part of the trial_id)
        algorithm: ff
        backend: [torch, jax]   # a list where the field takes one value is a grid axis
        seed: [0, 1, 2]
        ff: {threshold: [1.0, 2.0]}
        hidden: [[500], [500, 500]]   # list-typed fields take a list of lists as an axis

Merging: nested blocks merge key by key, except an `optimizer` block whose `name` differs
from the default's, which replaces it; `ff:`/`bp:` defaults apply to the experiments of
that algorithm only. `backend: installed` means every installed backend.
Errors name the file, line, field and what was expected, in one line. The YAML itself is read by
`ffbench.safe_yaml`, which refuses hostile files.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ffbench import registry
from ffbench.errors import ConfigError
from ffbench.safe_yaml import Path_, load_yaml, parse_yaml
from ffbench.spec import MODELS, BPTrial, FFTrial, parse_trial
from ffbench.spec_paths import leaf_fields, model_at, unwrap

EXPERIMENT_LABELS = {"name": "experiment", "tags": "tags", "reference_error": "reference_error",
                     "reference_source": "reference_source", "resources": "resources", "method": "method"}
ALGORITHM_BLOCKS = {"ff": "ff", "bp": "bp"}


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = None
    description: str | None = None
    defaults: dict[str, Any] = {}
    experiments: list[dict[str, Any]]

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str | None) -> str | None:
        # it names the default results folder, results/<name>/: no path, no hidden name
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", v):
            raise ValueError(f"expected a folder name of letters, digits, '.', '_' and '-' (it names results/<name>/); got {v!r}")
        return v


# ---------------------------------------------------------------- merging and expansion

def _merge(base: dict[str, Any], over: dict[str, Any], origin: dict[Path_, Path_], where: Path_,
           path: Path_ = ()) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        b = out.get(k)
        replace = (k == "optimizer" and isinstance(b, dict) and isinstance(v, dict) and "name" in v
                   and v.get("name") != b.get("name", "adam"))
        if isinstance(b, dict) and isinstance(v, dict) and not replace:
            out[k] = _merge(b, v, origin, where, path + (k,))
        else:
            out[k] = v
            _mark(v, path + (k,), where + path + (k,), origin)
    return out


def _mark(value: Any, path: Path_, src: Path_, origin: dict[Path_, Path_]) -> None:
    origin[path] = src
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(v, path + (k,), src + (k,), origin)


def _list_depth(ann: Any) -> int:
    """How deeply a field's values nest lists: 0 for a value, 1 for list[int], 2 for list[list[int]]."""
    ann = unwrap(ann)
    return 1 + _list_depth(get_args(ann)[0]) if get_origin(ann) is list else 0


def _value_depth(v: Any) -> int:
    return 1 + min((_value_depth(x) for x in v), default=0) if isinstance(v, list) and v else int(isinstance(v, list))


def _axes(d: dict[str, Any], fields: dict[str, Any], path: Path_ = ()) -> list[Path_]:
    """Paths of leaves that are grid axes: a list where the field takes one value (or a list of lists)."""
    axes = []
    for k, v in d.items():
        p = path + (k,)
        if isinstance(v, dict):
            axes += _axes(v, fields, p)
        elif isinstance(v, list):
            ann = fields.get(".".join(map(str, p)))
            if ann is None:
                continue  # unknown field: validation reports it
            if _value_depth(v) > _list_depth(ann):  # one more level of lists than the field takes: an axis
                axes.append(p)
    return axes


def _set(d: dict[str, Any], path: Path_, value: Any) -> None:
    for i, k in enumerate(path[:-1]):
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"{'.'.join(map(str, path[:i + 1]))} is a value, not a block of fields",
                              field=".".join(map(str, path)))
    d[path[-1]] = value


def _get(d: Any, path: Path_) -> Any:
    for k in path:
        d = d[k]
    return d


def _copy(d: Any) -> Any:
    return {k: _copy(v) for k, v in d.items()} if isinstance(d, dict) else (list(d) if isinstance(d, list) else d)


def parse_override(text: str) -> tuple[Path_, Any]:
    """'ff.threshold=2' -> (("ff", "threshold"), 2.0); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE (e.g. epochs=1)")
    key, _, raw = text.partition("=")
    path = tuple(key.strip().split("."))
    if not all(path):
        raise ConfigError(f"--set {text!r}: expected a dotted field name before '=' (e.g. ff.threshold=2)")
    try:
        value, _ = parse_yaml(raw)
    except ConfigError as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ConfigError(f"--set {shown!r}: cannot read the value: {exc.message}") from None
    return path, value


# ---------------------------------------------------------------- errors

def first_error(exc: ValidationError) -> dict[str, Any]:
    """The error to report: an unknown field first, since a typo (`epohcs`) explains the
    "required field missing" it causes."""
    return sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]


def _allowed(algorithm: str, loc: tuple[str, ...]) -> list[str]:
    model = model_at(MODELS.get(algorithm, FFTrial), loc)
    return sorted(model.model_fields) if model else []


def _explain(err: dict[str, Any], algorithm: str) -> tuple[tuple[Any, ...], str]:
    loc = tuple(err["loc"])
    if loc and loc[0] in MODELS and err["type"] != "union_tag_invalid":
        loc = loc[1:]  # the discriminated union's tag
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed(algorithm, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where = f"{algorithm} trials" if not loc[:-1] else ".".join(map(str, loc[:-1]))
        return loc, f"unknown field{hint}; {where} take: {', '.join(allowed)}"
    if kind == "union_tag_invalid":
        return ("algorithm",), f"expected one of: {', '.join(MODELS)}; got {err['ctx']['tag']!r}"
    if kind == "missing":
        return loc, "required field missing"
    if kind == "literal_error":
        return loc, f"expected one of: {err['ctx']['expected'].replace(' or ', ', ')}; got {value!r}"
    msg = err["msg"].removeprefix("Value error, ")
    got = f"; got {value!r}" if kind not in ("value_error", "assertion_error") and not isinstance(value, dict) else ""
    return loc, f"{msg[0].lower()}{msg[1:]}{got}"


# ---------------------------------------------------------------- the suite

MAX_TRIALS = 10_000  # a suite expanding to more is refused unless the caller raises the limit (--max-trials)


def load_suite(path: str | Path, overrides: list[str] | None = None,
               max_trials: int = MAX_TRIALS) -> tuple[str, list[FFTrial | BPTrial]]:
    """(suite name, expanded and validated trials). Raises ConfigError. The trials are counted
    before any is built: a grid of more than `max_trials` is refused with its count."""
    path = Path(path)
    data, lines = load_yaml(path)
    file = str(path)

    def fail(msg: str, src: Path_, field: str | None = None) -> ConfigError:
        while src and src not in lines:
            src = src[:-1]
        return ConfigError(msg, file=file, line=lines.get(src), field=field)

    if not isinstance(data, dict):
        raise fail("a suite is a mapping with `experiments:` (and optionally name, description, defaults)", ())
    try:
        suite = SuiteFile.model_validate(data)
    except ValidationError as exc:
        err = first_error(exc)
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[0]), list(SuiteFile.model_fields), n=1)
            raise fail(f"unknown top-level key{f' (did you mean {close[0]!r}?)' if close else ''}; expected: "
                       f"{', '.join(SuiteFile.model_fields)}", loc, str(loc[0])) from None
        raise fail(err["msg"].removeprefix("Value error, "), loc, ".".join(map(str, loc))) from None
    if not suite.experiments:
        raise fail("no experiments", ("experiments",), "experiments")
    names: dict[str, int] = {}
    for i, exp in enumerate(suite.experiments):
        label = exp.get("name")
        if label is not None and not isinstance(label, str):
            raise fail(f"expected a text name; got {label!r}", ("experiments", i, "name"), f"experiments[{i}].name")
        if label in names:
            raise fail(f"experiment name {label!r} is already used by experiments[{names[label]}]; reports group rows "
                       "by experiment, so each name must be unique", ("experiments", i, "name"), f"experiments[{i}].name")
        if label is not None:
            names[label] = i
    name = suite.name or path.stem
    sets = [parse_override(o) for o in overrides or []]
    grids = [g for i, exp in enumerate(suite.experiments) for g in _grids(name, i, suite.defaults, exp, sets, fail)]
    total = sum(g.size for g in grids)
    if total > max_trials:
        raise ConfigError(f"expands to {total:,} trials, more than the limit of {max_trials:,}; "
                          "check the grid's lists, or raise the limit with --max-trials N", file=file)
    return name, [t for g in grids for t in g.trials(fail)]


def select(trials: list[FFTrial | BPTrial], only: list[str] = (), skip: list[str] = (),
           backends: list[str] = ()) -> list[FFTrial | BPTrial]:
    """Trials with any tag in `only` (if given), none in `skip`, on `backends` (if given)."""
    tags = sorted({tag for t in trials for tag in t.meta.tags})
    for tag in [*only, *skip]:
        if tag not in tags:
            raise ConfigError(f"no trial has tag {tag!r}; tags in this suite: {', '.join(tags) or '(none)'}",
                              field="--only" if tag in only else "--skip")
    present = sorted({t.backend for t in trials})
    for b in backends:
        if b not in present:
            raise ConfigError(f"no trial runs on {b!r}; backends in this suite: {', '.join(present)}", field="--backend")
    return [t for t in trials
            if (not only or set(only) & set(t.meta.tags)) and not set(skip) & set(t.meta.tags)
            and (not backends or t.backend in backends)]


def load_trial_spec(path: str | Path) -> dict[str, Any]:
    """One trial from a YAML mapping (as a suite experiment, `backend` optional), validated."""
    path = Path(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of trial fields", file=str(path), line=1)
    data = {"backend": registry.names()[0], "seed": 0, **data}
    try:
        parse_trial(data)
    except ValidationError as exc:
        loc, msg = _explain(first_error(exc), data.get("algorithm", "ff"))
        src = loc
        while src and src not in lines:
            src = src[:-1]
        raise ConfigError(msg, file=str(path), line=lines.get(src), field=".".join(map(str, loc)) or None) from None
    return data


@dataclass
class _Grid:
    """One experiment's trials for one algorithm, not yet built: the merged fields and the
    paths of its axes. `size` is known without building any trial."""

    algo: Any
    merged: dict[str, Any]
    axes: list[Path_]
    origin: dict[Path_, Path_]
    where: Path_

    @property
    def size(self) -> int:
        return math.prod(len(_get(self.merged, a)) for a in self.axes)

    def _source(self, loc: Path_) -> Path_:
        """Where in the file (or --set) the field at `loc` was written: its own entry, or the
        entry of the block or list it is inside (hidden.0 of `defaults: {hidden: [...]}`)."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origin:
                return self.origin[loc[:n]] + loc[n:]
        return self.where + loc

    def trials(self, fail) -> list[FFTrial | BPTrial]:
        out = []
        for values in itertools.product(*[_get(self.merged, a) for a in self.axes]):
            concrete = _copy(self.merged)
            for a, v in zip(self.axes, values):
                _set(concrete, a, v)
            try:
                out.append(parse_trial(concrete))
            except ValidationError as exc:
                algo = self.algo if isinstance(self.algo, str) else "ff"
                loc, msg = _explain(first_error(exc), algo)
                src = self._source(loc) if loc else self.where  # a whole-trial check: the experiment
                if src[0] == "--set":
                    raise ConfigError(msg, field="--set " + ".".join(map(str, loc))) from None
                label = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in src).replace(".[", "[")
                raise fail(msg, src, label) from None
        return out


def _grids(suite: str, i: int, defaults: dict[str, Any], exp: dict[str, Any], sets, fail) -> list[_Grid]:
    where = ("experiments", i)
    labels = {k: v for k, v in {**defaults, **exp}.items() if k in EXPERIMENT_LABELS}
    body = {k: v for k, v in exp.items() if k not in EXPERIMENT_LABELS}
    algos = body.get("algorithm", defaults.get("algorithm"))
    if algos is None:
        raise fail("required: ff or bp", where, f"experiments[{i}].algorithm")
    out = []
    for algo in algos if isinstance(algos, list) else [algos]:
        origin: dict[Path_, Path_] = {}
        base = {k: v for k, v in defaults.items() if k not in EXPERIMENT_LABELS
                and not (k in ALGORITHM_BLOCKS.values() and k != ALGORITHM_BLOCKS.get(algo))}
        _mark(base, (), ("defaults",), origin)
        merged = _merge(base, body, origin, where)
        merged["algorithm"] = algo
        merged["meta"] = {"suite": suite, **{EXPERIMENT_LABELS[k]: v for k, v in labels.items()}}
        for p, v in sets:
            _set(merged, p, v)
            _mark(v, p, ("--set",), origin)
        fields = leaf_fields(MODELS.get(algo, FFTrial)) if isinstance(algo, str) else {}
        if merged.get("backend") == "installed":
            merged["backend"] = registry.installed()
            if not merged["backend"]:
                raise fail("`installed` names every installed backend, and none is: pip install 'ffbench[torch]' (or jax, keras)",
                           origin.get(("backend",), where), "backend")
        out.append(_Grid(algo, merged, _axes(merged, fields), origin, where))
    return out
