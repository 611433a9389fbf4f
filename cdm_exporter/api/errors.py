"""Typed errors of the CDM/IAM client.

Every failure of a call to the API surfaces as one of these, carrying the endpoint
(:data:`~cdm_exporter.api.endpoints.Endpoint`), the HTTP status and the API error code when
there is one. Messages are built from the API's own error text and never include a request
header, so no secret can reach them.
"""

from __future__ import annotations

from cdm_exporter.api.endpoints import Endpoint


class CdmError(Exception):
    """Base of every client error."""

    #: short stable name of the failure class, used as a log key and in ``check`` output
    kind = "error"

    def __init__(
        self,
        endpoint: Endpoint,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        super().__init__(self._render())

    def _render(self) -> str:
        parts: list[str] = [self.endpoint]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        text = " ".join(parts) + f": {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class TransportError(CdmError):
    """No usable HTTP answer: refused, reset, DNS, TLS failure or timeout."""

    kind = "transport"


class NameNotResolved(TransportError):
    """The endpoint's host name does not resolve: for a discovered project, a region without CDM."""

    kind = "dns"


class TimeoutError_(TransportError):
    """The connect or read timeout passed."""

    kind = "timeout"


class MalformedResponse(CdmError):
    """The body is not JSON, or not of the shape the endpoint documents."""

    kind = "malformed"


class ApiError(CdmError):
    """The API answered with an error status."""

    kind = "api"


class AuthError(ApiError):
    """401/403: bad, expired or insufficient credentials (``APIGW.0301``, ``Cdm.0032``)."""

    kind = "auth"


class RateLimited(ApiError):
    """429 ``APIGW.0308``: the per-user budget of an API policy is used up."""

    kind = "throttled"


class NotFound(ApiError):
    """The job or cluster does not exist (``Cdm.0100``/``Cdm.0054`` on a 4xx or 5xx, or 404)."""

    kind = "not_found"


class ServerError(ApiError):
    """5xx from CDM or the gateway."""

    kind = "server"
