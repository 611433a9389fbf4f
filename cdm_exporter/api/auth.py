"""Credentials for CDM: a static IAM token, an IAM password (token fetched and cached), or AK/SK.

Each mode is a ``requests`` auth object (:class:`CdmAuth`) that the client applies to every
prepared request. Besides applying credentials, each mode has:

* ``identity``: a non-secret string naming the credential, used to group API budgets
  (``token:<12 hex of sha256(token)>``, ``password:<domain>/<user>``, ``aksk:<12 hex of sha256(AK)>``);
* ``invalidate(request)``: forget a cached token after a 401 (only :class:`PasswordAuth` has one);
* ``redact(text)``: replace any secret value in a text by ``***`` (defence in depth for messages).

Secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value, so neither
``repr(auth)`` nor an accidental ``vars()`` dump in a log line can leak one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from requests.auth import AuthBase

from cdm_exporter import __version__
from cdm_exporter.api.errors import CdmError, MalformedResponse, TimeoutError_, TransportError
from cdm_exporter.api.responses import error_for, success_json
from cdm_exporter.api.secret import Secret
from cdm_exporter.api.signer import sign
from cdm_exporter.api.transport import Deadline, Observer, new_session, send
from cdm_exporter.singleflight import FlightTimeout, SingleFlight

log = logging.getLogger(__name__)

#: Headers an intermediary may rewrite or drop (RFC 9110 section 7.6.1): never signed.
_UNSIGNED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Lifetime assumed when IAM does not say when a token expires (IAM tokens live 24 h).
_DEFAULT_TOKEN_LIFETIME = 3600.0


def _secret(value: str, what: str) -> Secret:
    """Check a credential before holding it; the message never echoes the value."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if any(ch in value for ch in "\r\n\0"):  # would allow header injection
        raise ValueError(f"{what} must not contain line breaks or NUL characters")
    return Secret(value)


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


def _plain(value: str, what: str) -> str:
    """A non-secret header value: must not break a header line."""
    if not isinstance(value, str) or not value.strip() or any(ch in value for ch in "\r\n\0"):
        raise ValueError(f"{what} must be a non-empty single-line string")
    return value.strip()


class CdmAuth(AuthBase):
    """Base of the auth modes: what the client needs from a credential."""

    #: whether ``invalidate`` + retry can cure a 401 (only a fetched token can be renewed)
    refreshable: ClassVar[bool] = False

    @property
    def identity(self) -> str:
        raise NotImplementedError

    def apply(
        self, request: requests.PreparedRequest, deadline: Deadline | None = None
    ) -> requests.PreparedRequest:
        """Add credentials to ``request`` (its URL must be final: AK/SK signs it)."""
        raise NotImplementedError

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return self.apply(r)

    def invalidate(self, request: requests.PreparedRequest | None = None) -> None:
        """Forget a cached token (after a 401). No-op for static credentials."""

    def bind(
        self, session: requests.Session, observer: Observer | None, timeouts: tuple[float, float]
    ) -> None:
        """Let the client share its session, observer and timeouts (used for IAM calls)."""

    def _secrets(self) -> tuple[str, ...]:
        return ()

    def redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identity={self.identity!r})"


class TokenAuth(CdmAuth):
    """A fixed IAM token sent as ``X-Auth-Token``."""

    def __init__(self, token: str) -> None:
        self._token = _secret(token.strip() if isinstance(token, str) else token, "token")
        self._identity = f"token:{_fingerprint(self._token.reveal())}"

    @property
    def identity(self) -> str:
        return self._identity

    def apply(
        self, request: requests.PreparedRequest, deadline: Deadline | None = None
    ) -> requests.PreparedRequest:
        request.headers["X-Auth-Token"] = self._token.reveal()
        return request

    def _secrets(self) -> tuple[str, ...]:
        return (self._token.reveal(),)


def _waiter_error(error: BaseException) -> CdmError:
    """What a caller that waited for another's token request raises when that request failed:
    its own copy of the error (one instance raised in several threads would have its
    ``__traceback__`` rewritten concurrently), and a transport error for anything not typed."""
    if isinstance(error, CdmError):
        return type(error)(
            error.endpoint, error.message, status=error.status, code=error.code, request_id=error.request_id
        )
    return TransportError("iam_token", "token request failed")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class PasswordAuth(CdmAuth):
    """IAM user password: a project-scoped token from ``POST /v3/auth/tokens``, cached and renewed.

    With ``project_id=None`` the token is scoped to the user's domain (account) instead: such a
    token lists the projects the user may use (``GET /v3/auth/projects``), but CDM refuses it.

    The token is renewed ``min(refresh_margin, refresh_fraction * lifetime)`` before it expires,
    the lifetime being ``expires_at - issued_at`` as IAM reports them (so a skewed local clock
    does not matter), counted from the local time of the fetch. Concurrent callers that find
    no valid token share one IAM request (and its failure, if it fails); while one caller
    renews a token early, the others keep using the old one, which has not expired yet.
    A caller that waits for another's request waits at most until its own deadline.
    """

    refreshable = True

    def __init__(
        self,
        iam_endpoint: str,
        domain: str,
        user: str,
        password: str,
        project_id: str | None,
        *,
        session: requests.Session | None = None,
        observer: Observer | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        refresh_fraction: float = 0.1,
    ) -> None:
        base = _plain(iam_endpoint, "iam_endpoint").rstrip("/")
        if base.endswith("/v3"):  # tolerate the Keystone-style "https://iam.../v3"
            base = base[: -len("/v3")]
        self._url = f"{base}/v3/auth/tokens?nocatalog=true"
        self._domain = _plain(domain, "domain")
        self._user = _plain(user, "user")
        self._password = _secret(password, "password")
        self._project_id = None if project_id is None else _plain(project_id, "project_id")
        self._session = session
        self._observer = observer
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._refresh_fraction = refresh_fraction
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._renewal: SingleFlight[Secret] = SingleFlight(waiter_error=_waiter_error)

    @property
    def identity(self) -> str:
        return f"password:{self._domain}/{self._user}"

    def bind(
        self, session: requests.Session, observer: Observer | None, timeouts: tuple[float, float]
    ) -> None:
        # Only what the constructor left open: an explicit session/observer/timeout wins.
        with self._lock:
            if self._session is None:
                self._session = session
            if self._observer is None:
                self._observer = observer
            if self._connect_timeout is None:
                self._connect_timeout = timeouts[0]
            if self._read_timeout is None:
                self._read_timeout = timeouts[1]

    def _secrets(self) -> tuple[str, ...]:
        token = self._token
        return (self._password.reveal(),) + ((token.reveal(),) if token is not None else ())

    def apply(
        self, request: requests.PreparedRequest, deadline: Deadline | None = None
    ) -> requests.PreparedRequest:
        request.headers["X-Auth-Token"] = self.token(deadline)
        return request

    def invalidate(self, request: requests.PreparedRequest | None = None) -> None:
        """Forget the cached token; with ``request``, only if it is the token that request used
        (so N threads that all got a 401 for the same old token cause one renewal, not N)."""
        with self._lock:
            if self._token is None:
                return
            if request is None or request.headers.get("X-Auth-Token") == self._token.reveal():
                log.info("IAM token for %s invalidated", self.identity)
                self._token = None
                self._expires_at = 0.0

    def token(self, deadline: Deadline | None = None) -> str:
        """A valid token, from the cache or from IAM."""
        with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._token.reveal()
            if self._renewal.in_flight and self._token is not None and now < self._expires_at:
                # Another thread is renewing early; the current token is still good meanwhile.
                return self._token.reveal()
        remaining = deadline.remaining() if deadline is not None else None
        try:
            return self._renewal.do(lambda: self._renew(deadline), remaining).reveal()
        except FlightTimeout:
            raise TimeoutError_(
                "iam_token", "call deadline exceeded while waiting for a token request"
            ) from None

    def _renew(self, deadline: Deadline | None) -> Secret:
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token  # renewed by a request that ended since token() looked
        token, refresh_at, expires_at = self._fetch(deadline or Deadline(None))
        with self._lock:
            self._token, self._refresh_at, self._expires_at = token, refresh_at, expires_at
        return token

    def _body(self) -> bytes:
        return json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": self._user,
                                "password": self._password.reveal(),
                                "domain": {"name": self._domain},
                            }
                        },
                    },
                    "scope": {"project": {"id": self._project_id}}
                    if self._project_id is not None
                    else {"domain": {"name": self._domain}},
                }
            }
        ).encode("utf-8")

    def _fetch(self, deadline: Deadline) -> tuple[Secret, float, float]:
        """One IAM token request: ``(token, renew at, expires at)`` in this auth's clock."""
        if self._session is None:  # used without a client: own a session
            self._session = new_session(pool_size=1, verify=True, user_agent=f"cdm-exporter/{__version__}")
        session = self._session
        timeout = deadline.timeouts("iam_token", self._connect_timeout or 3.05, self._read_timeout or 10.0)
        prepared = session.prepare_request(
            requests.Request(
                "POST",
                self._url,
                data=self._body(),
                headers={"Content-Type": "application/json;charset=utf8", "Accept": "application/json"},
            )
        )
        started = self._clock()
        raw = send(
            session,
            prepared,
            endpoint="iam_token",
            timeout=timeout,
            deadline=deadline,
            observer=self._observer,
        )
        if raw.status not in (200, 201):
            raise error_for("iam_token", raw, self.redact)
        value = raw.headers.get("X-Subject-Token", "").strip()
        if not value or any(ch in value for ch in "\r\n\0"):
            raise MalformedResponse(
                "iam_token",
                "no X-Subject-Token in the token response",
                status=raw.status,
                request_id=raw.request_id,
            )
        token = _secret(value, "token")
        payload = success_json("iam_token", raw)
        body = payload.get("token") if isinstance(payload, dict) else None
        body = body if isinstance(body, dict) else {}
        expires, issued = _parse_time(body.get("expires_at")), _parse_time(body.get("issued_at"))
        if expires is None:
            log.warning(
                "IAM token response for %s has no readable expires_at; assuming %.0f s",
                self.identity,
                _DEFAULT_TOKEN_LIFETIME,
            )
            lifetime = _DEFAULT_TOKEN_LIFETIME
        elif issued is not None and expires > issued:
            lifetime = (expires - issued).total_seconds()
        else:
            lifetime = expires.timestamp() - started
        margin = min(self._refresh_margin, self._refresh_fraction * max(lifetime, 0.0))
        refresh_at = started + lifetime - margin
        log.info(
            "IAM token for %s obtained, valid %.0f s, renewing in %.0f s",
            self.identity,
            lifetime,
            refresh_at - started,
        )
        return token, refresh_at, started + lifetime


class AkSkAuth(CdmAuth):
    """Access key / secret key: every request is signed (``SDK-HMAC-SHA256``) with a fresh date.

    ``security_token`` is set for temporary credentials (``X-Security-Token``). ``project_id`` is
    sent as ``X-Project-Id``, as the SDK's ``BasicCredentials`` do; ``None`` for a call that is
    not scoped to a project (listing the user's projects at IAM, as the SDK's IAM helper does).
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        project_id: str | None,
        security_token: str | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._access_key = _secret(
            access_key.strip() if isinstance(access_key, str) else access_key, "access_key"
        )
        self._secret_key = _secret(secret_key, "secret_key")
        self._project_id = None if project_id is None else _plain(project_id, "project_id")
        self._security_token = None if security_token is None else _secret(security_token, "security_token")
        self._clock = clock
        self._identity = f"aksk:{_fingerprint(self._access_key.reveal())}"

    @property
    def identity(self) -> str:
        return self._identity

    def _secrets(self) -> tuple[str, ...]:
        found = [self._secret_key.reveal(), self._access_key.reveal()]
        if self._security_token is not None:
            found.append(self._security_token.reveal())
        return tuple(found)

    def apply(
        self, request: requests.PreparedRequest, deadline: Deadline | None = None
    ) -> requests.PreparedRequest:
        assert request.method is not None and request.url is not None
        if self._project_id is not None:
            request.headers["X-Project-Id"] = self._project_id
        if self._security_token is not None:
            request.headers["X-Security-Token"] = self._security_token.reveal()
        to_sign = {k: v for k, v in request.headers.items() if k.lower() not in _UNSIGNED_HEADERS}
        signed = sign(
            request.method,
            request.url,
            headers=to_sign,
            body=request.body,
            access_key=self._access_key.reveal(),
            secret_key=self._secret_key.reveal(),
            now=self._clock(),
        )
        request.headers.update(signed.headers)
        return request
