"""Typed configs: dataclasses whose fields become CLI flags and ``config.toml`` entries.

Precedence, later wins: the dataclass defaults → the benchmark's recipe → ``-c FILE.toml`` →
``--<section>.<field>`` flags. Every value is checked against its field's type here, so a typo
or a wrong type ends in one error that names the field and the type it expects.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from clbench.errors import UsageError

Layer = Mapping[str, Any]


def fields_of(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in fields_of(cls)}


def type_name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(section: str, name: str, tp: Any, value: Any) -> Any:
    """Return ``value`` converted to ``tp`` (strings from the CLI are parsed), or raise UsageError."""
    where = f"{section}.{name}"
    try:
        return _coerce(tp, value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: expected {type_name(tp)}, got {value!r}{_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc)
    return f" ({text})" if text else ""


def _coerce(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in options:
                return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value)
            except (TypeError, ValueError):
                continue
        raise ValueError("")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise ValueError(f"one of {', '.join(map(repr, allowed))}")
    if origin in (tuple, list):
        (item, *rest) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise TypeError("")
        items = [_coerce(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise TypeError("")
    if tp is int:
        if isinstance(value, bool):
            raise TypeError("")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value)
        raise TypeError("")
    if tp is float:
        if isinstance(value, bool):
            raise TypeError("")
        if isinstance(value, (int, float)):
            result = float(value)
        elif isinstance(value, str):
            result = float(value)
        else:
            raise TypeError("")
        if math.isnan(result):
            raise ValueError("not a number")
        return result
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError("")
    if tp is Any:
        return value
    raise TypeError(f"unsupported field type {type_name(tp)}")


def resolve(cls: type, section: str, layers: list[Layer]) -> Any:
    """Build ``cls`` from its defaults overridden by each layer in turn (later wins)."""
    types_ = field_types(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            name = key.replace("-", "_")
            if name not in types_:
                valid = ", ".join(sorted(types_)) or "(none)"
                raise UsageError(f"unknown {section} option {key!r}; valid options: {valid}")
            values[name] = coerce(section, name, types_[name], value)
    try:
        return cls(**values)
    except UsageError:
        raise
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{section}: {exc}") from None


def as_dict(config: Any) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def check(condition: bool, section: str, name: str, requirement: str, value: Any) -> None:
    """Validation helper for ``__post_init__``: raise a UsageError naming the field."""
    if not condition:
        raise UsageError(f"{section}.{name} must be {requirement}, got {value!r}")


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Serialise flat tables of scalars and lists (all our configs hold) as TOML."""
    lines: list[str] = []
    for section, table in sections.items():
        lines.append(f"[{_key(section)}]")
        for key, value in table.items():
            if value is None:
                lines.append(f"# {key} is unset (none)")
                continue
            lines.append(f"{_key(key)} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; DEL must be escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
