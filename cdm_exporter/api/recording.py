"""``check --record``: every API exchange of a collection written to one file, with no secret.

The file is JSON lines (UTF-8), described in ``docs/recording.md``; the simulator's replay reads
it with its own code. Line 1 is a header, every further line one exchange::

    {"format": "cdm-exporter-recording", "version": 1, "exporter_version": "0.1.0",
     "recorded_at": "2025-01-01T00:00:00Z", "names_redacted": false}
    {"seq": 1, "endpoint": "list_clusters", "method": "GET", "path": "/v1.1/<project>/clusters",
     "query": [], "status": 200, "headers": {"Content-Type": "application/json"},
     "body": {"json": {"clusters": [...]}}, "seconds": 0.042}
    {"seq": 2, "endpoint": "job_status", "method": "GET", "path": "...", "query": [],
     "error": "timeout: read timed out", "seconds": 10.0}

What is kept: method, path and query as sent, status, the answer headers that matter
(:data:`KEPT_HEADERS`), the body (``{"json": ...}``, ``{"text": ...}`` when it is not JSON, or
``{"base64": ...}`` when it is not even UTF-8), how long it took, and the failure of a call that
got no usable answer. What is not: request headers and bodies (they carry the credentials and
the IAM password), and every secret value anywhere, in raw, percent-encoded, base64 and
JSON-escaped form (:class:`SecretScrubber`): the configured ones, and those seen on the wire
(``X-Auth-Token``, ``X-Security-Token``, the AK and signature of ``Authorization``, the token in
``X-Subject-Token``).

With ``redact_names``, cluster, job, link, user and account names become stable pseudonyms
(``cluster-1``, ``job-3``, ...): the same name the same pseudonym everywhere, in paths, queries,
bodies and error texts (:class:`Pseudonyms`). IDs, statuses, counters, dates and error codes stay.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import requests

from cdm_exporter import __version__
from cdm_exporter.api.errors import CdmError
from cdm_exporter.api.transport import RawResponse

FORMAT = "cdm-exporter-recording"
VERSION = 1
REDACTED = "<redacted>"

#: Answer headers worth keeping; everything else (cookies, server banners) is dropped.
KEPT_HEADERS = ("Content-Type", "X-Request-Id", "Retry-After", "X-Subject-Token")
#: Kept answer headers whose value is a credential: the name stays, the value does not.
SECRET_HEADERS = frozenset({"x-subject-token"})
#: Request headers whose value is a credential, learnt as secrets (the headers are never written).
_CREDENTIAL_HEADERS = ("X-Auth-Token", "X-Security-Token")
_AUTHORIZATION_PARTS = re.compile(r"(?:Access|Signature)=([^,\s]+)")

KINDS = ("cluster", "job", "link", "user", "account")
#: Keys whose values the exporter reads as enumerations or codes: never rewritten by name.
_PROTECTED_KEYS = frozenset(
    {
        "status",
        "job_type",
        "type",
        "jobType",
        "from-connector-name",
        "to-connector-name",
        "errCode",
        "code",
        "error_code",
        "errorCode",
        "isFrozen",
        "statusDetail",
    }
)


# --- secrets -----------------------------------------------------------------------------------


def encoded_forms(secret: str) -> set[str]:
    """``secret`` as it may appear in a text: raw, percent-encoded, base64, JSON-escaped."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote(secret, safe="~"),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(raw).decode("ascii")
        forms |= {text, text.rstrip("=")}
    return {form for form in forms if form}


class SecretScrubber:
    """Replaces every known secret, in each of its :func:`encoded_forms`, by ``<redacted>``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if not secret:
            return
        with self._lock:
            forms = encoded_forms(secret) - self._forms
            if not forms:
                return
            self._forms |= forms
            # longest first: a secret containing another is replaced whole
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)

    def scrub_json(self, value: Any) -> Any:
        return _map_strings(value, lambda _key, text: self.scrub(text), keys=self.scrub)


def _map_strings(
    value: Any,
    change: Callable[[str | None, str], str],
    key: str | None = None,
    keys: Callable[[str], str] | None = None,
) -> Any:
    """``value`` with ``change(key, text)`` applied to every string in it (``key`` is the object
    key the string sits under, inherited through lists), and ``keys`` to object keys."""
    if isinstance(value, str):
        return change(key, value)
    if isinstance(value, list):
        return [_map_strings(item, change, key, keys) for item in value]
    if isinstance(value, dict):
        return {(keys(k) if keys else k): _map_strings(v, change, k, keys) for k, v in value.items()}
    return value


# --- one exchange ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One recorded request and its answer (or failure), already scrubbed of secrets."""

    endpoint: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: dict[str, Any] | None
    error: str | None
    seconds: float

    def as_json(self, seq: int) -> dict[str, Any]:
        line: dict[str, Any] = {
            "seq": seq,
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "query": [list(pair) for pair in self.query],
        }
        if self.status is not None:
            line["status"] = self.status
            line["headers"] = dict(self.headers)
            line["body"] = self.body if self.body is not None else {"text": ""}
        if self.error is not None:
            line["error"] = self.error
        line["seconds"] = round(self.seconds, 3)
        return line

    def scrubbed(self, scrubber: SecretScrubber) -> Exchange:
        return replace(
            self,
            path=scrubber.scrub(self.path),
            query=tuple((scrubber.scrub(k), scrubber.scrub(v)) for k, v in self.query),
            headers=tuple((name, scrubber.scrub(value)) for name, value in self.headers),
            body=None if self.body is None else scrubber.scrub_json(self.body),
            error=None if self.error is None else scrubber.scrub(self.error),
        )


def _body(raw: bytes) -> dict[str, Any]:
    """A body as the file keeps it: parsed JSON when it round-trips as JSON, else text or base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}
    try:
        value = json.loads(text)
        json.dumps(value, allow_nan=False)  # 1e400 parses as inf, which JSON cannot write back
    except (ValueError, RecursionError):
        return {"text": text}
    return {"json": value}


def _headers(response: RawResponse) -> tuple[tuple[str, str], ...]:
    kept = []
    for name in KEPT_HEADERS:
        value = response.headers.get(name)
        if value is not None:
            kept.append((name, REDACTED if name.lower() in SECRET_HEADERS else value))
    return tuple(kept)


# --- names -------------------------------------------------------------------------------------


def _job_segment_index(segments: list[str]) -> int | None:
    """Where a job name sits in a CDM path: ``.../cdm/job/{name}[/status]`` (not ``all``)."""
    for i in range(len(segments) - 2):
        if segments[i] == "cdm" and segments[i + 1] == "job" and unquote(segments[i + 2]) != "all":
            return i + 2
    return None


def _names_in(exchange: Exchange) -> Iterator[tuple[str, str]]:
    """``(kind, name)`` of every name at a known position of an exchange, in order."""
    segments = exchange.path.split("/")
    index = _job_segment_index(segments)
    if index is not None:
        yield "job", unquote(segments[index])
    for key, value in exchange.query:
        if key == "jname":
            yield "job", value
    payload = (exchange.body or {}).get("json")
    if not isinstance(payload, dict):
        return
    for cluster in _objects(payload.get("clusters")):
        yield from _named(cluster, {"name": "cluster"})
        yield from _named(cluster.get("customerConfig"), {"clusterName": "cluster"})
    for job in _objects(payload.get("jobs")):
        yield from _named(
            job,
            {
                "name": "job",
                "from-link-name": "link",
                "to-link-name": "link",
                "creation-user": "user",
                "update-user": "user",
            },
        )
    for run in _objects(payload.get("submissions")):
        yield from _named(
            run,
            {
                "job-name": "job",
                "creation-user": "user",
                "last-update-user": "user",
                "last-udpate-user": "user",
            },
        )
    token = payload.get("token")
    if isinstance(token, dict):
        user = token.get("user")
        yield from _named(user, {"name": "user"})
        if isinstance(user, dict):
            yield from _named(user.get("domain"), {"name": "account"})
        project = token.get("project")
        if isinstance(project, dict):
            yield from _named(project.get("domain"), {"name": "account"})


def _objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _named(value: Any, keys: dict[str, str]) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, kind in keys.items():
            name = value.get(key)
            if isinstance(name, str) and name:
                yield kind, name


class Pseudonyms:
    """Stable pseudonyms for names: ``<kind>-<n>`` in order of first appearance, never equal to
    a real name of the same recording. A name seen as two kinds keeps its first one."""

    def __init__(self, names: Iterable[tuple[str, str]]) -> None:
        seen: dict[str, str] = {}
        for kind, name in names:
            seen.setdefault(name, kind)
        counters = dict.fromkeys(KINDS, 0)
        self.mapping: dict[str, str] = {}
        for name, kind in seen.items():
            while True:
                counters[kind] += 1
                pseudonym = f"{kind}-{counters[kind]}"
                if pseudonym not in seen:
                    break
            self.mapping[name] = pseudonym
        # Inside longer texts, only names of 3+ characters with a letter are replaced, and only
        # where they stand alone (not inside a longer word): "a" or "01" would match everywhere.
        worded = sorted(
            (n for n in self.mapping if len(n) >= 3 and any(ch.isalpha() for ch in n)),
            key=len,
            reverse=True,
        )
        self._pattern = (
            re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, worded)) + r")(?![A-Za-z0-9_])")
            if worded
            else None
        )

    def text(self, value: str) -> str:
        """A string with every name in it replaced: whole, or word by word inside a text."""
        whole = self.mapping.get(value)
        if whole is not None:
            return whole
        if self._pattern is None:
            return value
        return self._pattern.sub(lambda m: self.mapping[m.group()], value)

    def _value(self, key: str | None, value: str) -> str:
        return value if key in _PROTECTED_KEYS else self.text(value)

    def exchange(self, exchange: Exchange) -> Exchange:
        segments = exchange.path.split("/")
        index = _job_segment_index(segments)
        if index is not None:
            segments[index] = quote(self.text(unquote(segments[index])), safe="")
        body = exchange.body
        if body is not None and "json" in body:
            body = {"json": _map_strings(body["json"], self._value)}
        elif body is not None and "text" in body:
            body = {"text": self.text(body["text"])}
        return replace(
            exchange,
            path="/".join(segments),
            query=tuple((key, self.text(value)) for key, value in exchange.query),
            body=body,
            error=None if exchange.error is None else self.text(exchange.error),
        )


# --- the recorder ------------------------------------------------------------------------------


@dataclass
class ExchangeRecorder:
    """The :class:`~cdm_exporter.api.transport.ExchangeSink` of ``check --record``: collects
    exchanges (thread-safe), learns the secrets it sees on the wire, writes the file."""

    secrets: Iterable[str] = ()
    clock: Callable[[], float] = time.time
    _scrubber: SecretScrubber = field(init=False)
    _exchanges: list[Exchange] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._scrubber = SecretScrubber(self.secrets)

    def __len__(self) -> int:
        with self._lock:
            return len(self._exchanges)

    def _learn_credentials(self, request: requests.PreparedRequest, response: RawResponse | None) -> None:
        for name in _CREDENTIAL_HEADERS:
            value = request.headers.get(name)
            if value:
                self._scrubber.add(str(value))
        authorization = request.headers.get("Authorization")
        if authorization:
            for part in _AUTHORIZATION_PARTS.findall(str(authorization)):
                self._scrubber.add(part)
        if response is not None:
            token = response.headers.get("X-Subject-Token")
            if token:
                self._scrubber.add(token.strip())

    def record(
        self,
        endpoint: str,
        request: requests.PreparedRequest,
        response: RawResponse | None,
        failure: CdmError | None,
        seconds: float,
    ) -> None:
        self._learn_credentials(request, response)
        url = urlsplit(request.url or "")
        error = None
        if failure is not None:
            error = f"{failure.kind}: {failure.message}"
        exchange = Exchange(
            endpoint=endpoint,
            method=request.method or "GET",
            path=url.path,
            query=tuple(parse_qsl(url.query, keep_blank_values=True)),
            status=response.status if response is not None else (failure.status if failure else None),
            headers=_headers(response) if response is not None else (),
            body=_body(response.body) if response is not None else None,
            error=error,
            seconds=seconds,
        ).scrubbed(self._scrubber)
        with self._lock:
            self._exchanges.append(exchange)

    def exchanges(self, *, redact_names: bool = False) -> list[Exchange]:
        """What would be written: scrubbed once more with every secret learnt by now (a token
        renewed late in the collection), names replaced when asked."""
        with self._lock:
            recorded = list(self._exchanges)
        scrubbed = [exchange.scrubbed(self._scrubber) for exchange in recorded]
        if not redact_names:
            return scrubbed
        names = Pseudonyms(name for exchange in scrubbed for name in _names_in(exchange))
        return [names.exchange(exchange) for exchange in scrubbed]

    def lines(self, *, redact_names: bool = False) -> list[str]:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "exporter_version": __version__,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
            "names_redacted": redact_names,
        }
        exchanges = self.exchanges(redact_names=redact_names)
        records = [header] + [exchange.as_json(seq) for seq, exchange in enumerate(exchanges, 1)]
        return [json.dumps(record, ensure_ascii=False, separators=(",", ":")) for record in records]

    def write(self, path: str | Path, *, redact_names: bool = False) -> int:
        """Write the file (readable by its owner only, replaced atomically); the exchange count."""
        lines = self.lines(redact_names=redact_names)
        target = Path(path)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return len(lines) - 1
