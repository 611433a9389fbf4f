"""One HTTP exchange with CDM or IAM: send, time, observe, read a capped body, classify failures.

Shared by :mod:`cdm_exporter.api.client` and :mod:`cdm_exporter.api.auth` (the IAM token call), so that
every HTTP call, IAM included, is observed the same way and fails with the same typed errors.
Nothing here knows about Prometheus; the observer is a plain callable. A
:class:`RecordingObserver` also hands each whole exchange (request, answer or failure) to a sink:
that is how ``check --record`` sees everything the exporter asked and was told.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from cdm_exporter.api.endpoints import Endpoint
from cdm_exporter.api.errors import (
    CdmError,
    MalformedResponse,
    NameNotResolved,
    TimeoutError_,
    TransportError,
)

log = logging.getLogger(__name__)

#: ``(endpoint, code, seconds)`` for every HTTP call; code is the status as a string or ``"error"``.
Observer = Callable[[Endpoint, str, float], None]

#: Largest response body read into memory; a bigger one is refused, not truncated.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A complete HTTP answer, body already read."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-Id") or None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").lower()


class ExchangeSink(Protocol):
    """Receives every complete exchange: the request as sent, and the answer or the failure."""

    def record(
        self,
        endpoint: str,
        request: requests.PreparedRequest,
        response: RawResponse | None,
        failure: CdmError | None,
        seconds: float,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordingObserver:
    """An :data:`Observer` (telemetry goes on to ``inner``) that :func:`send` also hands each
    exchange to ``sink``. The sink gets the request with its credentials: it must scrub them."""

    inner: Observer | None
    sink: ExchangeSink

    def __call__(self, endpoint: Endpoint, code: str, seconds: float) -> None:
        if self.inner is not None:
            self.inner(endpoint, code, seconds)


class _NoAuth(AuthBase):
    """Set as ``Session.auth`` so that requests never consults ``~/.netrc`` (it does when
    ``trust_env`` is on and no auth is set) and never adds a Basic ``Authorization`` of its own."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def new_session(*, pool_size: int, verify: bool | str, user_agent: str) -> requests.Session:
    """A session with no hidden retries and a connection pool sized to the caller's concurrency.

    ``trust_env`` keeps its default (True): ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE``
    apply as for any requests program; only netrc is switched off (see :class:`_NoAuth`).
    """
    if pool_size < 1:
        raise ValueError("pool_size must be at least 1")
    session = requests.Session()
    # max_retries=0: a retry would spend rate-limit budget behind the poller's back, and a 429
    # must never be retried. pool_connections: CDM and IAM hosts, with room to spare.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    session.headers["User-Agent"] = user_agent
    session.auth = _NoAuth()
    return session


class Deadline:
    """A time budget shared by every HTTP call of one client method (pages, token, retry).

    ``None`` seconds means no overall budget: each call then only has its connect/read timeouts.
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = None if seconds is None else clock() + max(0.0, seconds)

    def remaining(self) -> float | None:
        return None if self._end is None else self._end - self._clock()

    def check(self, endpoint: Endpoint) -> None:
        """Raise :class:`TimeoutError_` when the budget is used up."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise TimeoutError_(endpoint, "call deadline exceeded")

    def timeouts(self, endpoint: Endpoint, connect: float, read: float) -> tuple[float, float]:
        """The (connect, read) timeouts for the next HTTP call, cut to what is left."""
        self.check(endpoint)
        remaining = self.remaining()
        if remaining is None:
            return connect, read
        return min(connect, remaining), min(read, remaining)


def notify(observer: Observer | None, endpoint: Endpoint, code: str, seconds: float) -> None:
    """Call the observer; a failing observer must not turn a good API call into a failure."""
    if observer is None:
        return
    try:
        observer(endpoint, code, seconds)
    except Exception:  # the observer is metrics code; log it, never let it break a call
        log.exception("request observer failed for endpoint %s", endpoint)


def _hand_over(
    observer: Observer | None,
    endpoint: str,
    request: requests.PreparedRequest,
    response: RawResponse | None,
    failure: CdmError | None,
    seconds: float,
) -> None:
    """Give an exchange to a recording observer's sink; like :func:`notify`, never fails a call."""
    if not isinstance(observer, RecordingObserver):
        return
    try:
        observer.sink.record(endpoint, request, response, failure, seconds)
    except Exception:
        log.exception("exchange recorder failed for endpoint %s", endpoint)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its wrapped arguments and causes: requests wraps urllib3 wraps OSError."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the default port written out: the server a connection
    went to, without the path and query (job names) or any user information."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # an unparsable port: the host alone still says where
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def classify(endpoint: Endpoint, exc: BaseException, url: str) -> TransportError:
    """Map a requests/urllib3/socket exception to a short, secret-free typed error.

    The message names the failure class and the server of ``url`` (:func:`origin`), e.g.
    "connection refused by https://cdm.example.com:443". The library's own text is not used:
    it is long (object reprs) and could one day hold more than a log line should.
    """
    chain = _chain(exc)
    server = origin(url)

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    def error(template: str, cls: type[TransportError] = TransportError, detail: str = "") -> TransportError:
        text = template.format(server)
        return cls(endpoint, f"{text}: {detail}" if detail else text)

    # Order matters: urllib3's NewConnectionError (refused, unreachable, DNS) subclasses its
    # ConnectTimeoutError, so socket-level causes are looked at before timeouts.
    if has(requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError):
        detail = next((str(e.reason) for e in chain if isinstance(e, ssl.SSLError) and e.reason), "")
        return error("TLS failure with {}", detail=detail)
    if has(ConnectionRefusedError):
        return error("connection refused by {}")
    if has(ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return error("connection reset by {}")
    if has(urllib3.exceptions.NameResolutionError):
        return error("name resolution failed for {}", NameNotResolved)
    timeout_types = (
        requests.exceptions.Timeout,
        urllib3.exceptions.ReadTimeoutError,
        urllib3.exceptions.ConnectTimeoutError,
        TimeoutError,
    )
    if any(
        isinstance(e, timeout_types) and not isinstance(e, urllib3.exceptions.NewConnectionError)
        for e in chain
    ):
        connect = has(requests.exceptions.ConnectTimeout) or any(
            type(e) is urllib3.exceptions.ConnectTimeoutError for e in chain
        )
        return error("connect to {} timed out" if connect else "read from {} timed out", TimeoutError_)
    if has(urllib3.exceptions.NewConnectionError):
        return error("could not connect to {}")
    if has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        return error("proxy failure on the way to {}")
    if has(requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError):
        return error("connection to {} broken mid-response")
    if has(requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError):
        return error("could not decode the compressed body from {}")
    return error(f"request to {{}} failed ({type(exc).__name__})")


def _read_body(resp: requests.Response, endpoint: Endpoint, max_bytes: int, deadline: Deadline) -> bytes:
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MalformedResponse(
            endpoint, f"body of {declared} bytes exceeds the {max_bytes} byte limit", status=resp.status_code
        )
    chunks: list[bytes] = []
    size = 0
    # read1, not iter_content: iter_content blocks until a whole chunk has arrived, so a body
    # that trickles in would never reach the deadline check. read1 returns whatever arrived.
    # It decompresses, so the cap also holds against a gzip bomb. At EOF urllib3 puts the
    # connection back into the pool, so keep-alive is preserved.
    while True:
        chunk = resp.raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise MalformedResponse(
                endpoint, f"body exceeds the {max_bytes} byte limit", status=resp.status_code
            )
        chunks.append(chunk)
        deadline.check(endpoint)  # a slow-drip body must not outlive the caller's deadline
    return b"".join(chunks)


def send(
    session: requests.Session,
    prepared: requests.PreparedRequest,
    *,
    endpoint: Endpoint,
    timeout: tuple[float, float],
    deadline: Deadline,
    observer: Observer | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> RawResponse:
    """Send one prepared request and read its body; exactly one observer call per request.

    Redirects are not followed: a redirect would carry ``X-Auth-Token`` to wherever it points
    (requests only strips ``Authorization`` on a host change). The caller treats 3xx as an error.
    """
    assert prepared.url is not None
    # Same environment handling as Session.request (trust_env: proxies, REQUESTS_CA_BUNDLE).
    # session.verify is passed explicitly: with None, REQUESTS_CA_BUNDLE would override even
    # verify=False; with it, the variable only replaces the default ``True``.
    settings = session.merge_environment_settings(prepared.url, {}, None, session.verify, None)
    started = time.monotonic()
    code = "error"
    raw: RawResponse | None = None
    failure: CdmError | None = None
    try:
        resp = session.send(
            prepared,
            stream=True,
            allow_redirects=False,
            timeout=timeout,
            verify=settings["verify"],
            proxies=settings["proxies"],
            cert=settings["cert"],
        )
        try:
            body = _read_body(resp, endpoint, max_body_bytes, deadline)
        except MalformedResponse:
            code = str(resp.status_code)  # a complete HTTP answer, just one we refuse
            raise
        finally:
            resp.close()
        code = str(resp.status_code)
        raw = RawResponse(status=resp.status_code, headers=resp.headers, body=body)
        return raw
    except CdmError as refused:  # body too big, or the deadline passed while it trickled in
        failure = refused
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        log.debug("%s transport failure: %r", endpoint, exc)
        # ``from None``: the library exception text is long (URL, object reprs) and adds
        # nothing the typed error does not already say.
        failure = classify(endpoint, exc, prepared.url)
        raise failure from None
    finally:
        elapsed = time.monotonic() - started
        notify(observer, endpoint, code, elapsed)
        _hand_over(observer, endpoint, prepared, raw, failure, elapsed)
        log.debug("%s %s -> %s in %.3fs", endpoint, prepared.method, code, elapsed)
