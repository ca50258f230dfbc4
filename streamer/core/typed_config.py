"""Typed settings from YAML mappings: dataclasses built from plain data, with every key and
value checked against the annotations (``from_dict``), and a guard against input nested too
deeply to be a setting (``check_nesting``). Shared by the config (``streamer.core.config``) and
the alert rules (``streamer.supervise.alerts``), which the config validates: its own module so that
neither imports the other for it."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from streamer.core.errors import ConfigError

T = TypeVar("T")


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = get_origin(tp)
    if tp is Any:  # checked by the section's own validation (alerts.rules)
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of {_describe(tp)} settings")
        return from_dict(tp, value, prefix=key + ".")  # type: ignore[arg-type]
    if origin is Literal:
        if value in get_args(tp):
            return value
    elif origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
    elif origin is tuple and get_args(tp)[1:] == (Ellipsis,):
        if isinstance(value, list | tuple):
            return tuple(_convert(v, get_args(tp)[0], f"{key}[{i}]")
                         for i, v in enumerate(value))
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"config key '{key}' = {value!r} is invalid: expected a "
                                  "finite number (not .inf or .nan)")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"config key '{key}' has an unsupported type {tp!r}")
    raise ConfigError(f"config key '{key}' = {value!r} is invalid: expected {_describe(tp)}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and bad values."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; allowed keys"
            f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
        )
    missing = [f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config key '{prefix}{missing[0]}' is missing; "
                          f"{prefix.rstrip('.') or 'the config'} needs {', '.join(missing)}")
    kwargs = {name: _convert(data[name], hints[name], prefix + name) for name in data}
    return cls(**kwargs)



# No setting nests deeper than a few levels (alert rules: 4); deeper input is a mistake or
# an attack, and would end in a RecursionError somewhere past the loader.
MAX_CONFIG_DEPTH = 32


def check_nesting(data: Any, where: str) -> None:
    """Refuse lists and mappings nested more than MAX_CONFIG_DEPTH levels (iteratively:
    the check itself must not recurse)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list | tuple):
            continue
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where} is nested more than {MAX_CONFIG_DEPTH} levels deep; "
                              "no setting needs that: check the file's indentation and "
                              "brackets")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
