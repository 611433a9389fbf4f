"""IAM's KeystoneListAuthProjects: the projects a credential may use, for account-wide discovery.

``GET {iam_endpoint}/v3/auth/projects`` answers ``{"projects": [{"id", "name", "enabled",
"parent_id", "domain_id", ...}], "links": {...}}`` (docs/api-notes.md, "IAM projects"). It needs no
permission beyond a valid credential, and is served by the global IAM endpoint as well as the
regional ones. The credential is whatever :class:`CdmAuth` the caller gives:

* a fixed token (``X-Auth-Token``), of any scope;
* a :class:`PasswordAuth` with no project, i.e. a domain-scoped token;
* an :class:`AkSkAuth` with no project: signed, without ``X-Project-Id``, as the SDK's own IAM
  helper signs its project lookup.

Like the CDM client, it sends exactly one request per call (plus one retry after a 401 when the
credential can be renewed), reports it to the observer, and never follows a redirect.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Final

import requests

from cdm_exporter import __version__
from cdm_exporter.api.auth import CdmAuth
from cdm_exporter.api.errors import MalformedResponse
from cdm_exporter.api.models import AuthProject, ShapeError, parse_auth_projects
from cdm_exporter.api.responses import error_for, success_json
from cdm_exporter.api.transport import DEFAULT_MAX_BODY_BYTES, Deadline, Observer, new_session, send

log = logging.getLogger(__name__)

#: the endpoint name in telemetry and errors
IAM_PROJECTS: Final = "iam_projects"


class IamProjectsClient:
    """Lists the projects the credential of ``auth`` may use, at one IAM endpoint."""

    def __init__(
        self,
        *,
        iam_endpoint: str,
        auth: CdmAuth,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        verify: bool | str = True,
        observer: Observer | None = None,
        user_agent: str = f"cdm-exporter/{__version__}",
    ) -> None:
        if not iam_endpoint.startswith(("https://", "http://")):
            raise ValueError("iam_endpoint must start with https:// or http://")
        base = iam_endpoint.rstrip("/")
        if base.endswith("/v3"):  # tolerate the Keystone-style "https://iam.../v3", as PasswordAuth does
            base = base[: -len("/v3")]
        self._url = f"{base}/v3/auth/projects"
        self._auth = auth
        self._timeouts = (connect_timeout, read_timeout)
        self._observer = observer
        self._session = new_session(pool_size=2, verify=verify, user_agent=user_agent)
        # the documented request headers of this call
        self._headers = {"Accept": "application/json", "Content-Type": "application/json;charset=utf8"}
        auth.bind(self._session, observer, self._timeouts)

    @property
    def identity(self) -> str:
        return self._auth.identity

    def list_auth_projects(self, *, timeout: float | None = None) -> list[AuthProject]:
        """Every project the credential may use, enabled or not."""
        deadline = Deadline(timeout)
        for attempt in (1, 2):
            prepared = self._session.prepare_request(
                requests.Request("GET", self._url, headers=self._headers)
            )
            self._auth.apply(prepared, deadline)
            raw = send(
                self._session,
                prepared,
                endpoint=IAM_PROJECTS,
                timeout=deadline.timeouts(IAM_PROJECTS, *self._timeouts),
                deadline=deadline,
                observer=self._observer,
                max_body_bytes=DEFAULT_MAX_BODY_BYTES,
            )
            if raw.status == 401 and attempt == 1 and self._auth.refreshable:
                log.info("%s: HTTP 401, renewing the token and retrying once", IAM_PROJECTS)
                self._auth.invalidate(prepared)
                continue
            if not 200 <= raw.status < 300:
                raise error_for(IAM_PROJECTS, raw, self._auth.redact)
            try:
                return parse_auth_projects(success_json(IAM_PROJECTS, raw))
            except ShapeError as exc:
                raise MalformedResponse(
                    IAM_PROJECTS, str(exc), status=raw.status, request_id=raw.request_id
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> IamProjectsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IamProjectsClient(url={self._url!r}, auth={self._auth!r})"
