"""Turn an HTTP answer into JSON or into the right typed error (docs/api-notes.md, "Errors").

Error bodies come in several shapes and all are read:

* CDM: ``{"errCode": "Cdm.0100", "externalMessage": "..."}``, nearly always on HTTP 400;
* CDM with four keys, ``{"code", "errCode", "message", "externalMessage"}``, whose two codes may
  even differ (OTC ModifyJob example: ``Cdm.0095`` next to ``Cdm.00095``);
* API gateway / generic Huawei: ``{"error_code": "APIGW.0301", "error_msg": "...", "request_id": ...}``;
* ``{"errorCode", "errorMsg"}`` and ``{"code", "message"}`` (the SDK's parser knows these too);
* IAM (Keystone style): ``{"error": {"code": 401, "message": "...", "title": "Unauthorized"}}``.

The code shown is the first of ``errCode``, ``error_code``, ``errorCode``, ``code``; the message
the first of ``externalMessage``, ``error_msg``, ``errorMsg``, ``message``, each found on its own
(a body with ``errCode`` and only ``message`` still has both). Every code in the body counts for
the mapping below. Logs and ``check`` both show the resulting error's code and message.

Mapping (first match wins):

===========================================  ==================
``Cdm.0100`` / ``Cdm.0054`` (4xx or 5xx)      ``NotFound``
``Cdm.0032`` (any 4xx)                        ``AuthError``
``APIGW.0308`` / ``APIG.0308`` or HTTP 429    ``RateLimited``
HTTP 401, 403, ``APIGW.0301``                 ``AuthError``
HTTP 404                                      ``NotFound``
HTTP 5xx                                      ``ServerError``
any other 4xx (IAM token endpoint)            ``AuthError``
anything else (other 4xx, 3xx, 1xx)           ``ApiError``
===========================================  ==================

Messages come only from the error text of the body (cleaned, cut to 200 characters) or from the
status line; a non-JSON body is never quoted, since an intermediary could echo request headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from cdm_exporter.api.endpoints import Endpoint
from cdm_exporter.api.errors import (
    ApiError,
    AuthError,
    CdmError,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
)
from cdm_exporter.api.transport import RawResponse

MAX_MESSAGE_CHARS = 200

_NOT_FOUND_CODES = frozenset({"CDM.0100", "CDM.0054"})
_AUTH_CODES = frozenset({"CDM.0032", "APIGW.0301", "APIG.0301"})
_THROTTLE_CODES = frozenset({"APIGW.0308", "APIG.0308"})
#: Where each body shape keeps its code and its message, CDM's own keys first.
_CODE_KEYS = ("errCode", "error_code", "errorCode", "code")
_MESSAGE_KEYS = ("externalMessage", "error_msg", "errorMsg", "message")

Redactor = Callable[[str], str]


def _identity(text: str) -> str:
    return text


def clean(text: str, redact: Redactor = _identity, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One short printable line: no control characters (log injection), secrets redacted."""
    flat = "".join(ch if ch.isprintable() else " " for ch in redact(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _first(payload: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((text for text in (_text(payload.get(key)) for key in keys) if text), None)


def error_codes(payload: Any) -> tuple[str, ...]:
    """Every error code in a body (top level and one level under ``error``), in key order."""
    if not isinstance(payload, Mapping):
        return ()
    found = [text for text in (_text(payload.get(key)) for key in _CODE_KEYS) if text]
    nested = payload.get("error")
    if isinstance(nested, Mapping):
        found += [text for text in (_text(nested.get(key)) for key in _CODE_KEYS) if text]
    return tuple(dict.fromkeys(found))


def error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, message, request_id)`` from any known error body shape, nested one level too."""
    if not isinstance(payload, Mapping):
        return None, None, None
    request_id = _text(payload.get("request_id"))
    code, message = _first(payload, _CODE_KEYS), _first(payload, _MESSAGE_KEYS)
    if code or message:
        return code, message, request_id
    nested = payload.get("error")
    if isinstance(nested, Mapping):
        code, message, inner_id = error_fields(nested)
        if not (code or message):
            message = _text(nested.get("title"))
        return code, message, request_id or inner_id
    return None, None, request_id


def _looks_like_html(raw: RawResponse) -> bool:
    return "html" in raw.content_type or raw.body.lstrip()[:1] == b"<"


def load_json(raw: RawResponse) -> Any:
    """Parse a body as JSON; ``None`` when it is empty or not JSON (for error bodies)."""
    if not raw.body.strip() or _looks_like_html(raw):
        return None
    try:
        return json.loads(raw.body)
    except (ValueError, RecursionError):  # JSONDecodeError, bad UTF-8, huge ints, deep nesting
        return None


def success_json(endpoint: Endpoint, raw: RawResponse) -> Any:
    """The JSON document of a 2xx answer, or :class:`MalformedResponse`."""

    def malformed(message: str) -> MalformedResponse:
        return MalformedResponse(endpoint, message, status=raw.status, request_id=raw.request_id)

    if not raw.body.strip():
        raise malformed("empty body")
    if _looks_like_html(raw):
        raise malformed("HTML instead of JSON")
    try:
        return json.loads(raw.body)
    except RecursionError:
        raise malformed("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise malformed("body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        # exc.msg/pos describe the position only, never the content
        raise malformed(f"invalid JSON ({exc.msg} at char {exc.pos})") from None
    except ValueError:
        raise malformed("invalid JSON") from None


def error_for(endpoint: Endpoint, raw: RawResponse, redact: Redactor = _identity) -> CdmError:
    """The typed error for a non-2xx answer."""
    status = raw.status
    payload = load_json(raw)
    code, message, body_request_id = error_fields(payload)
    request_id = raw.request_id or body_request_id
    request_id = clean(request_id, redact, 80) if request_id else None
    codes = {found.upper() for found in error_codes(payload)}
    text = clean(message, redact) if message else f"HTTP {status}"
    cls: type[ApiError]
    # "Job does not exist" is not found whatever the status: DeleteJob documents Cdm.0100 on a 500.
    if codes & _NOT_FOUND_CODES and 400 <= status < 600:
        cls = NotFound
    elif codes & _THROTTLE_CODES or status == 429:
        cls = RateLimited
    elif codes & _AUTH_CODES or status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFound
    elif status >= 500:
        cls = ServerError
    elif endpoint == "iam_token" and 400 <= status < 500:
        cls = AuthError  # IAM answers 400 for a malformed or unscoped credential request
    else:
        cls = ApiError
        if 300 <= status < 400:
            text = f"unexpected redirect (HTTP {status}); redirects are not followed"
    return cls(
        endpoint, text, status=status, code=clean(code, redact, 40) if code else None, request_id=request_id
    )
