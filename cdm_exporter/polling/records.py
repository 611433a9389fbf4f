"""Known state as versioned JSON records, for a state store (a file, or Redis shared by replicas).

One generic rule turns a dataclass into a record and back, so a field added to :class:`JobState`
(or to what it holds) is stored with no code here:

* a record is an object of the dataclass's fields by name (a field at its plain default left
  out); nested dataclasses are objects, tuples
  and sets are lists, dicts are objects with string keys, numbers, strings, booleans and null are
  themselves;
* a field marked :data:`MONOTONIC` holds monotonic seconds (its values, for a dict): it is
  written as wall-clock seconds and read back onto this process's monotonic clock, since a
  monotonic clock means nothing to another process or after a restart;
* a field marked :data:`TRANSIENT` is not stored (work in progress, stored elsewhere) and comes
  back as its default;
* reading, a field the record lacks takes its default (a record written before the field
  existed), a field the class no longer has is ignored; a value of the wrong type makes the whole
  record unreadable (:class:`RecordError`), which costs that record alone.

Each record carries :data:`RECORD_VERSION` under ``"v"``; one of another version is not read
(what it held is fetched from the API again).
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

#: the version of the record format; bump it when a field changes meaning (not when one is added)
RECORD_VERSION = 1
#: field metadata: the value (or a dict's values) is monotonic seconds
MONOTONIC: Mapping[str, str] = types.MappingProxyType({"clock": "monotonic"})
#: field metadata: not stored, read back as the default
TRANSIENT: Mapping[str, bool] = types.MappingProxyType({"transient": True})

#: a record: JSON-able data
Record = dict[str, Any]

T = TypeVar("T")


class RecordError(ValueError):
    """A record that does not fit its class (other version, wrong types, not an object)."""


@dataclass(frozen=True)
class Clocks:
    """The two clocks of this process, to move monotonic times to wall-clock times and back."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic

    def to_wall(self, mono: float) -> float:
        return mono - self.mono() + self.wall()

    def to_mono(self, wall: float) -> float:
        return wall - self.wall() + self.mono()


def to_record(obj: object, clocks: Clocks) -> Record:
    """``obj`` (a dataclass instance) as a versioned record."""
    encoded = _encode(obj, clocks)
    if not isinstance(encoded, dict):
        raise TypeError(f"{type(obj).__name__} is not a dataclass")
    return {"v": RECORD_VERSION, **encoded}


def from_record(cls: type[T], record: object, clocks: Clocks) -> T:
    """The ``cls`` instance ``record`` holds; :class:`RecordError` when it cannot be read."""
    if not isinstance(record, dict):
        raise RecordError(f"a {cls.__name__} record must be an object")
    if record.get("v") != RECORD_VERSION:
        raise RecordError(f"a {cls.__name__} record of version {record.get('v')!r}, not {RECORD_VERSION}")
    value: T = _decode_dataclass(cls, record, clocks)
    return value


# --- writing -----------------------------------------------------------------------------------


def _encode(value: object, clocks: Clocks) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            if field.metadata.get("transient"):
                continue
            item = getattr(value, field.name)
            if field.default is not dataclasses.MISSING and item is field.default:
                continue  # read back as the default: a smaller record
            if field.metadata.get("clock") == "monotonic":
                item = _shift(item, clocks.to_wall)
            out[field.name] = _encode(item, clocks)
        return out
    if isinstance(value, tuple | list):
        return [_encode(item, clocks) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(_encode(item, clocks) for item in value)
    if isinstance(value, dict):
        return {str(key): _encode(item, clocks) for key, item in value.items()}
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"cannot store a {type(value).__name__}")


def _shift(value: Any, move: Callable[[float], float]) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return move(float(value))
    if isinstance(value, dict):
        return {key: _shift(item, move) for key, item in value.items()}
    return value


# --- reading -----------------------------------------------------------------------------------


def _decode_dataclass(cls: type[Any], data: object, clocks: Clocks) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{cls.__name__}: expected an object")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("transient") or field.name not in data or not field.init:
            continue  # the default
        try:
            value = _decode(hints[field.name], data[field.name], clocks)
        except RecordError as error:
            raise RecordError(f"{cls.__name__}.{field.name}: {error}") from None
        if field.metadata.get("clock") == "monotonic":
            value = _shift(value, clocks.to_mono)
        values[field.name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise RecordError(f"{cls.__name__}: {error}") from None


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _decode(hint: Any, data: Any, clocks: Clocks) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        arms = typing.get_args(hint)
        if data is None and type(None) in arms:
            return None
        errors = []
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _decode(arm, data, clocks)
            except RecordError as error:
                errors.append(str(error))
        raise RecordError("; ".join(errors) or "no matching type")
    if hint is typing.Any or hint is object:
        return data
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _decode_dataclass(hint, data, clocks)
    if origin in (tuple, set, frozenset, list):
        if not isinstance(data, list):
            raise RecordError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: tuple[str, int]
            if len(args) != len(data):
                raise RecordError(f"expected {len(args)} items, got {len(data)}")
            return tuple(_decode(h, item, clocks) for h, item in zip(args, data, strict=True))
        item_hint = args[0] if args else typing.Any
        return origin(_decode(item_hint, item, clocks) for item in data)
    if origin is dict:
        if not isinstance(data, dict):
            raise RecordError(f"expected an object, got {type(data).__name__}")
        _, value_hint = typing.get_args(hint) or (str, typing.Any)
        return {key: _decode(value_hint, item, clocks) for key, item in data.items()}
    if origin is typing.Literal:
        if data not in typing.get_args(hint):
            raise RecordError(f"{data!r} is not one of {typing.get_args(hint)}")
        return data
    return _primitive(hint, data)


def _primitive(hint: Any, data: Any) -> Any:
    if hint is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif hint is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif hint is bool or hint is str:
        if isinstance(data, hint):
            return data
    else:
        raise RecordError(f"cannot read a {hint!r}")
    raise RecordError(f"expected {hint.__name__}, got {type(data).__name__}")
