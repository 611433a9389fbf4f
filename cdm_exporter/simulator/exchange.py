"""The two halves of an HTTP exchange as the simulator's logic sees them.

The application layer turns a :class:`Request` into a :class:`Plan` (no sockets involved);
the HTTP layer (``server``) carries the plan out, including the misbehaving ones: wait,
hang, trickle, reset, close.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JSON_TYPE = "application/json;charset=UTF-8"

Action = Literal["respond", "hang", "reset", "trickle", "close", "stream"]


@dataclass(frozen=True)
class Request:
    """A received request: raw target (still percent-encoded), lower-case header names."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass
class Plan:
    """How to answer.

    ``respond``: send ``status``/``body``.  ``stream``: send ``stream_prefix``, ``stream_fill``
    bytes of ``x`` and ``stream_suffix`` (a huge body without holding it in memory).
    ``trickle``: send the body ``chunk_size`` bytes every ``interval`` seconds.  ``reset``: send
    headers and ``reset_after`` bytes, then abort the connection (RST).  ``hang``: say nothing
    until the server stops.  ``close``: close the connection without a response.  Every action
    first waits ``delay`` seconds.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: Action = "respond"
    stream_prefix: bytes = b""
    stream_fill: int = 0
    stream_suffix: bytes = b""
    chunk_size: int = 1
    interval: float = 0.25
    reset_after: int = 0

    @property
    def content_length(self) -> int:
        if self.action == "stream":
            return len(self.stream_prefix) + self.stream_fill + len(self.stream_suffix)
        return len(self.body)


def json_bytes(data: Any) -> bytes:
    # Non-ASCII stays raw UTF-8, as CDM sends it; clients must decode the body as UTF-8.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_plan(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Plan:
    return Plan(status=status, body=json_bytes(data), headers=dict(headers or {}))
