"""A recording played back: ``cdm-exporter simulate --replay FILE``.

The file is what ``cdm-exporter check --record`` writes (JSON lines, described in
``docs/recording.md``), read here by the simulator's own code: line 1 a header
``{"format": "cdm-exporter-recording", "version": 1, ...}``, every further line one exchange
``{"method", "path", "query", "status", "headers", "body": {"json"|"text"|"base64": ...}}`` or,
for a call that got no usable answer, ``{"method", "path", "query", "error"}``.

How requests are answered:

* by method, path and query: the query's order does not matter, path segments are compared
  decoded, and the project segment of ``/v1.1/{project_id}/...`` matches any project, so a
  recording can be served to a configuration with another project id;
* the answers recorded for one request are served in their order, the last one again once they
  are used up (list pages and statuses as recorded, then the final state for ever);
* an exchange with an ``error`` is replayed as a connection closed without an answer;
* IAM token requests get the recorded answer with a usable token in ``X-Subject-Token`` (the
  recorded one was removed), or, when none was recorded, a plain 201 with a token: any
  credential is accepted, the recording already holds what the account answered;
* anything else gets 404 ``{"error_code": "REPLAY.0404", "error_msg": ...}``.

``GET /_sim/replay`` shows what was served and what was asked but not recorded;
``POST /_sim/replay/rewind`` starts every sequence again.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from cdm_exporter.simulator.exchange import JSON_TYPE, Plan, Request, json_bytes, json_plan
from cdm_exporter.simulator.routing import split_target
from cdm_exporter.simulator.service import HttpService

FORMAT = "cdm-exporter-recording"
VERSIONS = frozenset({1})
#: the token handed out in place of the recorded (removed) one
REPLAY_TOKEN = "replayed-token"  # noqa: S105 - not a credential: it guards nothing
TOKEN_LIFETIME_SECONDS = 24 * 3600.0
#: unmatched requests remembered for ``GET /_sim/replay``
MAX_UNMATCHED = 100

Key = tuple[str, str, tuple[tuple[str, str], ...]]


class RecordingError(ValueError):
    """The file is not a recording this simulator can replay; the message names the line."""


def request_key(method: str, raw_path: str, raw_query: str) -> Key:
    """How a request is matched: method, decoded path with any project id, sorted query."""
    segments = [unquote(segment, errors="replace") for segment in raw_path.split("/")]
    if len(segments) > 2 and segments[1] == "v1.1":
        segments[2] = "{project_id}"
    query = tuple(sorted(parse_qsl(raw_query, keep_blank_values=True, errors="replace")))
    return method.upper(), "/".join(segments), query


@dataclass(frozen=True)
class Answer:
    """One recorded answer; ``status`` None means the call got none (its ``error`` says why)."""

    seq: int
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: str | None


def _string(value: Any, what: str, line: int) -> str:
    if not isinstance(value, str):
        raise RecordingError(f"line {line}: {what} must be a string")
    return value


def _body(value: Any, line: int) -> bytes:
    if not isinstance(value, dict) or len(value) != 1:
        raise RecordingError(f'line {line}: body must be one of {{"json"|"text"|"base64": ...}}')
    ((kind, content),) = value.items()
    if kind == "json":
        return json_bytes(content)
    if kind == "text":
        return _string(content, "body.text", line).encode("utf-8")
    if kind == "base64":
        try:
            return base64.b64decode(_string(content, "body.base64", line), validate=True)
        except binascii.Error:
            raise RecordingError(f"line {line}: body.base64 is not base64") from None
    raise RecordingError(f"line {line}: unknown body kind {kind!r}")


def _exchange(record: Any, line: int) -> tuple[Key, Answer]:
    if not isinstance(record, dict):
        raise RecordingError(f"line {line}: an exchange must be a JSON object")
    method = _string(record.get("method"), "method", line)
    path = _string(record.get("path"), "path", line)
    if not path.startswith("/"):
        raise RecordingError(f"line {line}: path must start with '/'")
    query = record.get("query", [])
    if not isinstance(query, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)
        for pair in query
    ):
        raise RecordingError(f"line {line}: query must be a list of [name, value] strings")
    status, error = record.get("status"), record.get("error")
    if error is not None:
        error = _string(error, "error", line)
    if status is None and error is None:
        raise RecordingError(f"line {line}: an exchange needs a status or an error")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise RecordingError(f"line {line}: status must be an HTTP status code")
    headers = record.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise RecordingError(f"line {line}: headers must map names to strings")
    body = _body(record["body"], line) if "body" in record else b""
    seq = record.get("seq")
    key = (method.upper(), _decoded_path(path), tuple(sorted((k, v) for k, v in query)))
    answer = Answer(
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else line - 1,
        status=None if error is not None else status,
        headers=tuple(headers.items()),
        body=body,
        error=error,
    )
    return key, answer


def _decoded_path(path: str) -> str:
    return request_key("GET", path, "")[1]


class Replay:
    """The answers of a recording by request, and which were served (thread-safe)."""

    def __init__(self, header: dict[str, Any], exchanges: Iterable[tuple[Key, Answer]]) -> None:
        self.header = header
        self._answers: dict[Key, list[Answer]] = {}
        for key, answer in exchanges:
            self._answers.setdefault(key, []).append(answer)
        self._lock = threading.Lock()
        self._next: dict[Key, int] = {}
        self._served: dict[int, int] = {}
        self._unmatched: list[str] = []
        self.requests = 0

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Replay:
        header: dict[str, Any] | None = None
        exchanges = []
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                raise RecordingError(f"line {number}: not JSON ({exc})") from None
            if header is None:
                if not isinstance(record, dict) or record.get("format") != FORMAT:
                    raise RecordingError(f"line {number}: not a cdm-exporter recording (no {FORMAT} header)")
                if record.get("version") not in VERSIONS:
                    raise RecordingError(
                        f"line {number}: recording version {record.get('version')!r} is not supported"
                    )
                header = record
                continue
            exchanges.append(_exchange(record, number))
        if header is None:
            raise RecordingError("the recording is empty")
        return cls(header, exchanges)

    @classmethod
    def load(cls, path: str | Path) -> Replay:
        with open(path, encoding="utf-8") as handle:
            return cls.parse(handle)

    @property
    def exchange_count(self) -> int:
        return sum(len(answers) for answers in self._answers.values())

    def answer(self, method: str, raw_path: str, raw_query: str) -> Answer | None:
        """The next recorded answer to this request, or None when none was recorded."""
        key = request_key(method, raw_path, raw_query)
        with self._lock:
            self.requests += 1
            answers = self._answers.get(key)
            if not answers:
                if len(self._unmatched) < MAX_UNMATCHED:
                    self._unmatched.append(f"{method} {raw_path}{'?' + raw_query if raw_query else ''}")
                return None
            index = self._next.get(key, 0)
            self._next[key] = index + 1
            answer = answers[min(index, len(answers) - 1)]
            self._served[answer.seq] = self._served.get(answer.seq, 0) + 1
            return answer

    def served(self, seq: int) -> int:
        """How often the exchange numbered ``seq`` was served."""
        with self._lock:
            return self._served.get(seq, 0)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "exchanges": self.exchange_count,
                "requests": self.requests,
                "served": {str(seq): count for seq, count in sorted(self._served.items())},
                "unmatched": list(self._unmatched),
            }

    def rewind(self) -> None:
        with self._lock:
            self._next.clear()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplayApp:
    """Answers requests from a :class:`Replay` (see the module docstring)."""

    def __init__(self, replay: Replay, clock: Any = time.time) -> None:
        self.replay = replay
        self._clock = clock

    def handle(self, req: Request) -> Plan:
        raw_path, raw_query = split_target(req.target)
        if raw_path == "/_sim/replay":
            return json_plan(200, self.replay.stats())
        if raw_path == "/_sim/replay/rewind" and req.method == "POST":
            self.replay.rewind()
            return json_plan(200, {"rewound": True})
        answer = self.replay.answer(req.method, raw_path, raw_query)
        iam = raw_path.rstrip("/") == "/v3/auth/tokens" and req.method == "POST"
        if answer is None:
            if iam:
                return self._token()
            target = raw_path + ("?" + raw_query if raw_query else "")
            body = {"error_code": "REPLAY.0404", "error_msg": f"no recorded answer for {req.method} {target}"}
            return json_plan(404, body)
        if answer.status is None:
            return Plan(action="close")
        headers = {name: value for name, value in answer.headers if name.lower() != "content-type"}
        if "x-subject-token" in {name.lower() for name in headers}:
            headers = {n: (REPLAY_TOKEN if n.lower() == "x-subject-token" else v) for n, v in headers.items()}
        content_type = next((v for n, v in answer.headers if n.lower() == "content-type"), JSON_TYPE)
        return Plan(status=answer.status, body=answer.body, content_type=content_type, headers=headers)

    def _token(self) -> Plan:
        now = self._clock()
        body = {
            "token": {
                "issued_at": _iso(now),
                "expires_at": _iso(now + TOKEN_LIFETIME_SECONDS),
                "methods": ["password"],
            }
        }
        return json_plan(201, body, {"X-Subject-Token": REPLAY_TOKEN})


class ReplayServer(HttpService):
    """A recording served on a local port: ``with ReplayServer(Replay.load(path)) as server``."""

    def __init__(self, replay: Replay, certfile: str | None = None, keyfile: str | None = None) -> None:
        self.replay = replay
        super().__init__(ReplayApp(replay), certfile, keyfile)
