"""AK/SK request signing, ``SDK-HMAC-SHA256`` (docs/api-notes.md, "AK/SK signing"), standard library only.

This reproduces ``huaweicloudsdkcore.signer.signer.Signer`` byte for byte so that the API gateway
accepts our signatures exactly as it accepts the official SDK's, without pulling in the SDK's
dependency tree (an exact ``pymongo`` pin among others). :func:`sign` is a pure function of its
arguments: the caller passes the clock reading, which makes the test vector reproducible.

Details that matter and are easy to get wrong (each one mirrors the SDK):

* The canonical URI URL-decodes the *whole* path, splits it on ``/`` and re-encodes every segment
  with ``quote(seg, safe="~")``; a ``%2F`` inside a segment therefore becomes a literal ``/`` in
  the canonical form (docs/api-notes.md, "Open questions"). A trailing ``/`` is always appended.
* The canonical query sorts the *decoded* ``(key, value)`` pairs, then encodes both parts with
  ``quote(..., safe="~")``. ``+`` is not treated as a space.
* Every header is signed except those whose name contains ``_``; names are lower-cased and sorted,
  values stripped.
* An empty body hashes to the SHA-256 of ``b""``; a body with a non-JSON content type is declared
  ``UNSIGNED-PAYLOAD`` through ``X-Sdk-Content-Sha256``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
HEADER_DATE = "X-Sdk-Date"
HEADER_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The result of :func:`sign`.

    ``headers`` is the complete header set to send: the input headers plus ``X-Sdk-Date``,
    ``Host`` (when it was missing) and ``Authorization``. The intermediate strings are kept
    for tests and debugging; they contain no secret (the SK only keys the HMAC).
    """

    headers: dict[str, str]
    canonical_request: str
    string_to_sign: str
    signature: str
    signed_headers: tuple[str, ...]

    @property
    def authorization(self) -> str:
        return self.headers["Authorization"]


def encode(text: str) -> str:
    """Percent-encode as the SDK does: everything except ``A-Z a-z 0-9 - _ . ~``."""
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Canonical URI of a (wire, percent-encoded) path. See the module docstring."""
    segments = unquote(path or "/").split("/")
    uri = "/".join(encode(segment) for segment in segments)
    return uri if uri.endswith("/") else uri + "/"


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decode a wire query string into ``(key, value)`` pairs, keeping blanks, ``+`` kept as is."""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def canonical_query(query: str) -> str:
    """Canonical query string of a wire query: decoded pairs sorted, then re-encoded."""
    return "&".join(f"{encode(key)}={encode(value)}" for key, value in sorted(query_pairs(query)))


def _get(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _set(headers: dict[str, str], name: str, value: str) -> None:
    """Set a header, replacing any existing spelling of the same name."""
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    headers[name] = value


def sign(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | str | None,
    access_key: str,
    secret_key: str,
    now: datetime,
) -> SignedRequest:
    """Sign one request.

    ``url`` is the exact URL that goes on the wire (path and query already percent-encoded).
    ``now`` is the signing time; a naive datetime is taken as UTC.
    """
    if not access_key or not secret_key:
        raise ValueError("an access key and a secret key are required")
    parts = urlsplit(url)
    # Values are stripped on the wire too, so that what is sent is exactly what was signed.
    out = {key: value.strip() for key, value in headers.items() if key.lower() != "authorization"}
    # The date header is set from ``now`` so that every signature is fresh (the gateway
    # rejects dates more than 15 minutes away from its clock).
    stamp = (now if now.tzinfo is None else now.astimezone(UTC)).strftime(DATE_FORMAT)
    _set(out, HEADER_DATE, stamp)
    if _get(out, "Host") is None:
        out["Host"] = parts.netloc

    payload = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    content_type = _get(out, "Content-Type")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        _set(out, HEADER_CONTENT_SHA256, UNSIGNED_PAYLOAD)
    if not payload:
        body_hash = EMPTY_BODY_SHA256
    else:
        body_hash = _get(out, HEADER_CONTENT_SHA256) or hashlib.sha256(payload).hexdigest()

    canonical = {key.lower(): value for key, value in out.items()}
    signed = tuple(sorted(name for name in canonical if "_" not in name))
    canonical_headers = "".join(f"{name}:{canonical[name]}\n" for name in signed)
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            canonical_headers,
            ";".join(signed),
            body_hash,
        )
    )
    string_to_sign = "\n".join(
        (ALGORITHM, stamp, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest())
    )
    signature = hmac.new(
        secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return SignedRequest(
        headers=out,
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
        signature=signature,
        signed_headers=signed,
    )
