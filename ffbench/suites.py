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
Errors name the file, line, field and what was expected, in one line.
"""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ffbench import registry
from ffbench.errors import ConfigError
from ffbench.spec import MODELS, BPTrial, FFTrial, leaf_fields, model_at, parse_trial, unwrap

Path_ = tuple[Any, ...]
EXPERIMENT_LABELS = {"name": "experiment", "tags": "tags", "reference_error": "reference_error",
                     "reference_source": "reference_source", "resources": "resources"}
ALGORITHM_BLOCKS = {"ff": "ff", "bp": "bp"}


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = None
    description: str | None = None
    defaults: dict[str, Any] = {}
    experiments: list[dict[str, Any]]


# ---------------------------------------------------------------- YAML with line numbers

def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out, merged = {}, {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: explicit keys win
                for src in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                    if not isinstance(src, yaml.MappingNode):
                        raise ConfigError("`<<` merges a mapping (an &anchor of one)", file=file, line=k.start_mark.line + 1)
                    merged = {**_construct(src, path, lines, file), **merged}
                continue
            if not isinstance(k, yaml.ScalarNode):
                raise ConfigError("keys must be plain names", file=file, line=k.start_mark.line + 1)
            if k.value in out:
                raise ConfigError(f"duplicate key {k.value!r}", file=file, line=k.start_mark.line + 1)
            out[k.value] = _construct(v, path + (k.value,), lines, file)
            lines[path + (k.value,)] = k.start_mark.line + 1  # a field's line is its key's line
        return {**merged, **out}
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, file) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> tuple[Any, dict[Path_, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                          line=mark.line + 1 if mark else None) from None
    lines: dict[Path_, int] = {}
    return (_construct(node, (), lines, str(path)) if node is not None else None), lines


# ---------------------------------------------------------------- merging and expansion

def _merge(base: dict[str, Any], over: dict[str, Any], origin: dict[Path_, Path_], where: Path_, path: Path_ = ()) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        b = out.get(k)
        replace = k == "optimizer" and isinstance(b, dict) and isinstance(v, dict) and "name" in v and v.get("name") != b.get("name", "adam")
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


def _is_list_type(ann: Any) -> bool:
    return get_origin(unwrap(ann)) is list


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
            if not _is_list_type(ann) or (v and all(isinstance(x, list) for x in v)):
                axes.append(p)
    return axes


def _set(d: dict[str, Any], path: Path_, value: Any) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
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
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: cannot read the value {raw!r}") from None
    return tuple(key.strip().split(".")), value


# ---------------------------------------------------------------- errors

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

def load_suite(path: str | Path, overrides: list[str] | None = None) -> tuple[str, list[FFTrial | BPTrial]]:
    """(suite name, expanded and validated trials). Raises ConfigError."""
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
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]  # a typo explains a "missing"
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[0]), list(SuiteFile.model_fields), n=1)
            raise fail(f"unknown top-level key{f' (did you mean {close[0]!r}?)' if close else ''}; expected: "
                       f"{', '.join(SuiteFile.model_fields)}", loc, str(loc[0])) from None
        raise fail(err["msg"], loc, ".".join(map(str, loc))) from None
    if not suite.experiments:
        raise fail("no experiments", ("experiments",), "experiments")
    name = suite.name or path.stem
    sets = [parse_override(o) for o in overrides or []]
    trials: list[FFTrial | BPTrial] = []
    for i, exp in enumerate(suite.experiments):
        trials += _expand(name, i, suite.defaults, exp, sets, fail)
    return name, trials


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
        loc, msg = _explain(exc.errors()[0], data.get("algorithm", "ff"))
        src = loc
        while src and src not in lines:
            src = src[:-1]
        raise ConfigError(msg, file=str(path), line=lines.get(src), field=".".join(map(str, loc)) or None) from None
    return data


def _expand(suite: str, i: int, defaults: dict[str, Any], exp: dict[str, Any], sets, fail) -> list[FFTrial | BPTrial]:
    where = ("experiments", i)
    origin: dict[Path_, Path_] = {}
    labels = {k: v for k, v in {**defaults, **exp}.items() if k in EXPERIMENT_LABELS}
    body = {k: v for k, v in exp.items() if k not in EXPERIMENT_LABELS}
    algos = body.get("algorithm", defaults.get("algorithm"))
    if algos is None:
        raise fail("required: ff or bp", where, f"experiments[{i}].algorithm")
    out = []
    for algo in algos if isinstance(algos, list) else [algos]:
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
        axes = _axes(merged, fields)
        for values in itertools.product(*[_get(merged, a) for a in axes]):
            concrete = _copy(merged)
            for a, v in zip(axes, values):
                _set(concrete, a, v)
            try:
                out.append(parse_trial(concrete))
            except ValidationError as exc:
                loc, msg = _explain(exc.errors()[0], algo if isinstance(algo, str) else "ff")
                src = (origin.get(loc) or where + loc) if loc else where  # a whole-trial check: the experiment
                if src[0] == "--set":
                    raise ConfigError(msg, field="--set " + ".".join(map(str, loc))) from None
                label = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in src).replace(".[", "[")
                raise fail(msg, src, label) from None
    return out
