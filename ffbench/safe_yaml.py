"""Reading YAML that may be hostile, with the line of every field.

Suites (and `--set` values, and the suites `ffbench list` shows) are read with yaml.SafeLoader
semantics: plain mappings, lists and scalars; no Python objects, no custom tags on a mapping
or list. Hostile files are refused in well under a second with one line (ConfigError): over
MAX_SUITE_BYTES, not UTF-8, nested deeper than MAX_DEPTH (checked on the parser's events,
before the recursive composer), or expanding through aliases to more than MAX_VALUES values
(the "billion laughs" pattern). `<<: *anchor` merges a mapping; explicit keys win.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ffbench.errors import ConfigError

Path_ = tuple[Any, ...]

MAX_SUITE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 50_000
_PLAIN_TAGS = {yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG}


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str | None, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(f"expands to more than {MAX_VALUES:,} values (aliases that repeat large blocks?); refused",
                          file=file, line=node.start_mark.line + 1)
    lines[path] = node.start_mark.line + 1
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise ConfigError(f"tag {node.tag!r} is not allowed: a suite holds plain mappings, lists and values",
                          file=file, line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out, merged = {}, {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: explicit keys win
                for src in v.value if isinstance(v, yaml.SequenceNode) else [v]:
                    if not isinstance(src, yaml.MappingNode):
                        raise ConfigError("`<<` merges a mapping (an &anchor of one)", file=file, line=k.start_mark.line + 1)
                    merged = {**_construct(src, path, lines, file, budget), **merged}
                continue
            if not isinstance(k, yaml.ScalarNode):
                raise ConfigError("keys must be plain names", file=file, line=k.start_mark.line + 1)
            if k.value in out:
                raise ConfigError(f"duplicate key {k.value!r}", file=file, line=k.start_mark.line + 1)
            out[k.value] = _construct(v, path + (k.value,), lines, file, budget)
            lines[path + (k.value,)] = k.start_mark.line + 1  # a field's line is its key's line
        return {**merged, **out}
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), lines, file, budget) for i, v in enumerate(node.value)]
    return _scalar(node)


_SAFE = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.ScalarNode) -> Any:
    try:
        return _SAFE.construct_object(node, deep=True)
    finally:
        _SAFE.constructed_objects.clear()
        _SAFE.recursive_objects.clear()


def _yaml_error(exc: yaml.YAMLError, file: str | None) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return ConfigError(f"invalid YAML: {what}", file=file, line=mark.line + 1 if mark else None)


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, dict[Path_, int]]:
    """YAML text -> (plain data, line of every field path). Raises ConfigError."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # the parser is iterative; the composer recurses
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"nested deeper than {MAX_DEPTH} levels; refused", file=file,
                                      line=event.start_mark.line + 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[Path_, int] = {}
        return (_construct(node, (), lines, file, [MAX_VALUES]) if node is not None else None), lines
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file) from None


def load_yaml(path: Path) -> tuple[Any, dict[Path_, int]]:
    file = str(path)
    try:
        if path.is_dir():
            raise ConfigError("is a folder; expected a YAML file", file=file)
        size = path.stat().st_size
        if size > MAX_SUITE_BYTES:
            raise ConfigError(f"{size:,} bytes, more than the {MAX_SUITE_BYTES:,} a suite file may have", file=file)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); expected a YAML file",
                          file=file) from None
    return parse_yaml(text, file)
