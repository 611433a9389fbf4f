"""Logging setup: logfmt-like text or JSON lines on stderr, and a filter that redacts secrets.

Text lines look like Prometheus exporters' own::

    ts=2024-05-01T12:00:00.123Z level=info logger=cdm_exporter.polling.poller msg="collection done"

JSON lines carry the same fields. ``extra={...}`` fields of a record (``target``, ``endpoint``,
``kind``, ``status``, ``request_id``) follow the fixed ones; a field whose value is ``None`` is
left out. Every value is escaped so that a record is exactly one line whatever its message holds
(quotes, newlines, U+2028, tracebacks): a log shipper splitting on lines never sees half a
record, and nobody can forge one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
FORMATS: tuple[str, ...] = ("text", "json")

_HANDLER_NAME = "cdm_exporter"
# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_FIXED_FIELDS = ("ts", "level", "logger", "msg")


def setup_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in format ``fmt``.

    Calling it again replaces the handler it installed before (keeping its filters, such as
    the redacting one); handlers installed by others (pytest's, for one) are left alone.
    """
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"invalid log level {level!r}; choose one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"invalid log format {fmt!r}; choose one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(LogfmtFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        for kept in old.filters:
            handler.addFilter(kept)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(name.upper())
    logging.captureWarnings(True)


def redact_secrets(secrets: Iterable[str]) -> RedactingFilter:
    """Install a :class:`RedactingFilter` for ``secrets`` on every handler of the root logger.

    Filters go on handlers, not loggers, because a logger's filters do not see records that
    propagate up from child loggers. A filter installed before is replaced, so reloading the
    configuration can update the set.
    """
    redacting = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(redacting)
    return redacting


class RedactingFilter(logging.Filter):
    """Replace every configured secret value in a record's message, extras and traceback by ``***``.

    A belt-and-braces guard: secrets are :class:`~cdm_exporter.config.Secret` objects that do
    not print themselves, but an exception text from a library could still quote one.
    """

    _state: tuple[tuple[str, ...], re.Pattern[str] | None]

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = secrets

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values redacted; assign a new set after a configuration reload."""
        return self._state[0]

    @secrets.setter
    def secrets(self, secrets: Iterable[str]) -> None:
        values = tuple(secrets)
        # Longest first, so a secret that contains another is replaced whole; empty ones would
        # match everywhere. One attribute holds both, so a reload swaps them atomically.
        ordered = sorted({s for s in values if s}, key=len, reverse=True)
        self._state = (values, re.compile("|".join(map(re.escape, ordered))) if ordered else None)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        pattern = self._state[1]
        return text if pattern is None else pattern.sub("***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = self._state[1]
        if pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the formatter's to report, not ours to raise
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Render the traceback now, so the redacted text is what every formatter reuses.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in extra_fields(record).items():
            text = value if isinstance(value, str) else str(value)
            if pattern.search(text):
                setattr(record, key, self.redact(text))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got through ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class _LineFormatter(logging.Formatter):
    """Collects the fields of one record; subclasses render them as one line."""

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        for key, value in extra_fields(record).items():
            if value is None:  # a field with no value says nothing ("status=None")
                continue
            # An extra may not shadow a fixed field: a "level" extra would make the line lie.
            items.append((f"extra_{key}" if key in _FIXED_FIELDS else key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            items.append(("exc", record.exc_text))
        if record.stack_info:
            items.append(("stack", self.formatStack(record.stack_info)))
        return items

    @staticmethod
    def _encodable(line: str) -> str:
        # Lone surrogates (from undecodable file names, say) cannot be written as UTF-8.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


# Characters that need a logfmt value quoted: whitespace (including every Unicode line break
# str.splitlines knows), "=", quotes, backslashes and control characters.
_NEEDS_QUOTES = re.compile(r'[\s="\\\x00-\x1f\x7f-\x9f]')
_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def _logfmt_key(key: str) -> str:
    return _BAD_KEY_CHARS.sub("_", key) or "_"


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), text)
    return f'"{escaped}"'


class LogfmtFormatter(_LineFormatter):
    """``key=value`` pairs, quoting and escaping values as logfmt parsers expect."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = (f"{_logfmt_key(key)}={_logfmt_value(value)}" for key, value in self.fields(record))
        return self._encodable(" ".join(pairs))


def _json_safe(value: object) -> object:
    # NaN and Infinity are not JSON; strict parsers would reject the whole line.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class JsonFormatter(_LineFormatter):
    """One JSON object per line; values that are not JSON types are written as strings."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _json_safe(value) for key, value in self.fields(record)}
        try:
            line = json.dumps(fields, ensure_ascii=False, default=str, allow_nan=False)
        except (TypeError, ValueError):  # an extra nesting NaN or non-string keys: keep the record
            line = json.dumps({key: str(value) for key, value in fields.items()}, ensure_ascii=False)
        # JSON leaves these unescaped, but str.splitlines and some shippers break lines on them.
        line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
        return self._encodable(line)
