"""Plain data <-> frozen dataclasses: ``build`` (parsed YAML -> a config, every key and type checked),
``to_dict`` (a config -> plain dicts and lists, for YAML and JSON) and ``config_hash`` (a stable short name).

Generic: it knows dataclasses, ``Literal``, unions, tuples and the scalar types, not the sweep file; the
config classes themselves are ``sweeps/config.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Literal

from sweeps.errors import ConfigError


def config_hash(obj: Any, *, length: int = 10) -> str:
    """A stable short hash of a (nested) config, for run and record names."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def to_dict(obj: Any) -> Any:
    """Dataclasses -> plain dicts/lists, for YAML/JSON output."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def build(cls: type, data: Any, *, where: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from parsed YAML ``data``, checking keys and types.

    Args:
        where: the file name, for messages.
        prefix: the dotted path of ``data`` inside the file, for messages.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", where=where, field=prefix or "(top level)")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}",
            where=where,
            field=prefix or "(top level)",
            fix=f"allowed keys here: {', '.join(fields)}",
        )
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], where=where, path=path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("is required", where=where, field=path)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # raised by __post_init__ with its field: add the file
        if exc.where is None:
            raise ConfigError(exc.problem, where=where, field=exc.field, fix=exc.fix) from None
        raise
    except ValueError as exc:  # __post_init__ range checks
        raise ConfigError(str(exc), where=where, field=prefix or "(top level)") from None


def _coerce(tp: Any, value: Any, *, where: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where=where, path=path)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError("; ".join(errors) or f"invalid value {value!r}", where=where, field=path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{value!r} is not allowed", where=where, field=path, fix=f"use one of {', '.join(map(str, args))}"
            )
        return value
    if origin is tuple:
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected a list, got {value!r}", where=where, field=path)
        item_type = args[0] if args else Any
        return tuple(_coerce(item_type, v, where=where, path=f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where=where, prefix=path)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", where=where, field=path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", where=where, field=path)
        return value
    if tp is float:
        number = value
        if isinstance(value, str):  # YAML reads 2e-5 (no dot) as a string; accept it when it parses as a number.
            try:
                number = float(value)
            except ValueError:
                pass
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", where=where, field=path)
        if not math.isfinite(number):  # .nan / .inf pass every `x < 0` check and would reach the trainer
            raise ConfigError(
                f"expected a finite number, got {value!r}", where=where, field=path, fix=f"give {path} a number"
            )
        return float(number)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"expected a string, got {value!r}", where=where, field=path)
        return str(value)
    raise TypeError(f"unsupported config type {tp!r} at {path}")
