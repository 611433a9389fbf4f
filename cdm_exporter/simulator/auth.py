"""Gateway authentication: X-Auth-Token (static or IAM-issued) and AK/SK request signatures.

Tokens: the static ``settings.token`` never expires; tokens issued by the IAM endpoint expire
after ``token_ttl_seconds`` of the settings' clock and can all be revoked at once (a client
must then get a new one after its 401).

AK/SK: ``SDK-HMAC-SHA256`` re-implemented from docs/api-notes.md ("AK/SK signing"), independently
of any client code: the canonical request is rebuilt from the bytes on the wire and the signature
recomputed with the secret key.  The canonical URI of a path segment holding an encoded ``/``
is ambiguous (docs/api-notes.md, "Open questions"): a signature computed either way (the official
SDK's "decode the whole path, then split" or "split, then decode each segment") is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

from cdm_exporter.simulator import rng

ALGORITHM = "SDK-HMAC-SHA256"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
SIGNATURE_FAILED = "verify aksk signature fail"

_AUTHORIZATION = re.compile(
    r"^\s*(?P<alg>[A-Za-z0-9-]+)\s+Access=(?P<ak>[^,\s]+)\s*,\s*SignedHeaders=(?P<sh>[^,\s]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


def iso_z(t: float) -> str:
    """IAM's timestamp format: ``2020-01-04T09:05:22.701000Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class IssuedToken:
    value: str
    user: str
    project_id: str
    issued_at: float
    expires_at: float


class TokenStore:
    """Tokens issued by the simulated IAM endpoint. Thread-safe."""

    def __init__(self, seed: int, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self._seed = seed
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, IssuedToken] = {}
        self._issued = 0

    def issue(self, user: str, project_id: str) -> IssuedToken:
        with self._lock:
            self._issued += 1
            # Real tokens are long opaque strings (several KB); clients must not assume a size.
            value = "MIIsim" + rng.hex_string(1500, self._seed, "token", self._issued)
            now = self._clock()
            token = IssuedToken(value, user, project_id, now, now + self._ttl)
            self._tokens[value] = token
            return token

    def lookup(self, value: str) -> IssuedToken | None:
        with self._lock:
            return self._tokens.get(value)

    def revoke_all(self) -> int:
        """Forget every issued token; returns how many there were."""
        with self._lock:
            n = len(self._tokens)
            self._tokens.clear()
            return n

    @property
    def issued_count(self) -> int:
        with self._lock:
            return self._issued


# --- AK/SK ------------------------------------------------------------------------------------


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri_whole_path(raw_path: str) -> str:
    """The official SDK's way: decode the whole path, split on ``/``, encode each part."""
    uri = "/".join(_encode(part) for part in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_uri_per_segment(raw_path: str) -> str:
    """Split the wire path on ``/`` first, then decode and re-encode each segment."""
    uri = "/".join(_encode(unquote(seg)) for seg in raw_path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(raw_query: str) -> str:
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)


def canonical_request(
    method: str,
    canonical_uri: str,
    query: str,
    headers: Mapping[str, str],
    *,
    signed_headers: list[str],
    body_hash: str,
) -> str:
    """``headers`` maps lower-case names to values as the client signed them."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        [method.upper(), canonical_uri, query, canonical_headers, ";".join(signed_headers), body_hash]
    )


def string_to_sign(sdk_date: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AkskVerdict:
    ok: bool
    access_key: str
    reason: str = ""


def _wire_header_value(value: str) -> str:
    # http.client decodes header bytes as ISO-8859-1; the signer signed the UTF-8 text.
    try:
        return value.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def verify_aksk(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret_for: Callable[[str], str | None],
    now: float,
    max_skew_seconds: float = 900.0,
) -> AkskVerdict:
    """Check an ``SDK-HMAC-SHA256`` request. ``headers`` maps lower-case names to wire values;
    ``now`` is the wall clock the ``X-Sdk-Date`` is compared with."""
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        return AkskVerdict(False, "", f"{SIGNATURE_FAILED}: malformed Authorization header")
    ak = match["ak"]
    if match["alg"] != ALGORITHM:
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: unsupported algorithm {match['alg']}")
    secret = secret_for(ak)
    if secret is None:
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: unknown access key")
    signed = match["sh"].lower().split(";")
    if "x-sdk-date" not in signed or "host" not in signed:
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: host and x-sdk-date must be signed")
    if any(name not in headers for name in signed):
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: a signed header is missing")
    sdk_date = headers["x-sdk-date"].strip()
    try:
        signed_at = datetime.strptime(sdk_date, DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: bad X-Sdk-Date {sdk_date!r}")
    if abs(now - signed_at) > max_skew_seconds:
        return AkskVerdict(False, ak, f"{SIGNATURE_FAILED}: X-Sdk-Date is more than 15 minutes off")
    if not body:
        body_hash = EMPTY_BODY_SHA256
    else:
        body_hash = headers.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()
    values = {name: _wire_header_value(headers[name]) for name in signed}
    query = canonical_query(raw_query)
    claimed = match["sig"].lower()
    for uri in {canonical_uri_whole_path(raw_path), canonical_uri_per_segment(raw_path)}:
        canonical = canonical_request(method, uri, query, values, signed_headers=signed, body_hash=body_hash)
        expected = signature(secret, string_to_sign(sdk_date, canonical))
        if hmac.compare_digest(expected, claimed):
            return AkskVerdict(True, ak)
    return AkskVerdict(False, ak, SIGNATURE_FAILED)
