"""Reading a YAML configuration file strictly, and checking the type of each value in it.

Shared by the main configuration and the web configuration, so both report problems the same
way: a :class:`ConfigError` naming the dotted key to fix, an unknown key with a "did you mean",
a type error naming the kind of value found but never the value (it may be a secret put in the
wrong place), and a YAML error with its line and column but never the line's text.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from typing import Any

import yaml

from cdm_exporter.config.errors import ConfigError, did_you_mean

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (as Go's UnmarshalStrict does).

    Plain PyYAML keeps the last one silently; a second ``targets:`` would drop targets unseen.
    Keys merged in with ``<<`` may be overridden, as YAML's merge keys intend.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # unhashable keys are reported by SafeLoader itself
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: bytes, source: str, key: str = "") -> object:
    """Parse one YAML document; an error is reported under ``key`` with ``source``'s line and
    column, never with the line's text."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # str(exc) would quote the offending line, which may hold a secret: build from parts.
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        detail = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(key, f"{where}: invalid YAML: {detail}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(key, f"{source}: invalid YAML: {exc.reason} at byte {exc.position}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"{source}: invalid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise ConfigError(key, f"{source}: invalid YAML: nested too deeply") from None


# --------------------------------------------------------------------------- keys


def join(path: str, key: str) -> str:
    """The dotted path of ``key`` under ``path``: ``targets[0]`` + ``auth`` = ``targets[0].auth``."""
    if not path:
        return key
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def user_key(path: str, key: object) -> str:
    """The path of a key as the user wrote it; an odd one (empty, spaces, dots) is shown quoted."""
    text = str(key)
    return join(path, text) if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f"{path}[{text!r}]"


def mapping_of(value: object, path: str, allowed: tuple[str, ...]) -> dict[str, object]:
    """Check ``value`` is a mapping of known string keys; report the first unknown one."""
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping with keys {', '.join(allowed)}, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(user_key(path, key), f"keys must be strings, got {describe(key)}")
        if key not in allowed:
            hint = did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
            raise ConfigError(user_key(path, key), f"unknown key{hint}")
    return value


# --------------------------------------------------------------------------- values


def describe(value: object) -> str:
    """The kind of a YAML value, for type errors; never the value itself (it may be a secret)."""
    if value is None:
        return "nothing (null)"
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "a boolean (YAML reads true/false/yes/no/on/off unquoted as booleans)"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (list, "a list"),
        (dict, "a mapping"),
        (datetime.date, "a date"),
        (bytes, "binary data"),
    )
    for kind, text in kinds:
        if isinstance(value, kind):
            return text
    return f"a {type(value).__name__}"


def string(value: object, key: str, *, empty: bool = False) -> str:
    """A string; an empty one only with ``empty``."""
    if isinstance(value, str):
        if not value and not empty:
            raise ConfigError(key, "must not be empty")
        return value
    hint = "; put it in quotes" if isinstance(value, bool | int | float | datetime.date) else ""
    raise ConfigError(key, f"expected a string, got {describe(value)}{hint}")


def integer(value: object, key: str) -> int:
    # bool is a subclass of int, and YAML 1.1 turns "yes"/"no" into booleans: reject them here.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(key, f"expected a whole number, got {describe(value)}")


def boolean(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(key, f"expected true or false, got {describe(value)}")


def strings(value: object, key: str) -> tuple[str, ...]:
    """A list of non-empty strings."""
    if isinstance(value, str):
        raise ConfigError(key, "expected a list of strings, got a single string; write it as a list: [...]")
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of strings, got {describe(value)}")
    return tuple(string(item, f"{key}[{index}]") for index, item in enumerate(value))
