"""CDM API client: the four read calls the exporter needs, with typed errors.

One :class:`CdmClient` per target (project and endpoint). It owns one ``requests.Session``
whose pool is sized to the caller's concurrency, never retries behind the caller's back (a 429
must reach the poller), never follows redirects, verifies TLS by default and reads at most
32 MiB of any body. The only retry is the one a 401 earns when the credential can be renewed
(IAM password): the token is invalidated and that one request is sent again once.

Every method takes ``timeout=``: an overall budget in seconds for the whole call (a token
fetch and the 401 retry included), so the poller can keep a scrape inside its deadline. The job
list is read one page per call; :mod:`cdm_exporter.api.paging` says which page comes next.
The connect/read timeouts still apply to each HTTP request, cut to what is left of the budget.

Path parameters are percent-encoded as single path segments (:func:`path_segment`), and the
URL built here is the URL sent on the wire and signed: requests would otherwise re-normalise it
(urllib3 removes ``.``/``..`` segments, which would let a job named ``..`` address another path).

Bodies are parsed by :mod:`cdm_exporter.api.models` (tolerant field by field). A wrong overall
shape, or a non-empty record list of which no record is usable, is a ``MalformedResponse``:
an empty result there would read as "no clusters", "no jobs" or "never ran".

The client is safe to use from several threads at once: requests' connection pool is
thread-safe and the only shared mutable state, the IAM token, is guarded in the auth object.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from cdm_exporter import __version__
from cdm_exporter.api.auth import CdmAuth
from cdm_exporter.api.endpoints import Endpoint
from cdm_exporter.api.errors import MalformedResponse
from cdm_exporter.api.models import (
    Cluster,
    JobPage,
    ShapeError,
    Submission,
    SubmissionPage,
    parse_clusters,
    parse_job_page,
    parse_submission_page,
    parse_submissions,
)
from cdm_exporter.api.paging import JOB_PAGE_SIZE
from cdm_exporter.api.responses import error_for, success_json
from cdm_exporter.api.transport import (
    DEFAULT_MAX_BODY_BYTES,
    Deadline,
    Observer,
    RawResponse,
    new_session,
    send,
)

log = logging.getLogger(__name__)

#: Documented default page size of ShowSubmissions; not sent when asked for (see ``submissions``).
SUBMISSIONS_DEFAULT_PAGE_SIZE = 10

T = TypeVar("T")


def path_segment(value: str, endpoint: Endpoint) -> str:
    """Percent-encode ``value`` as exactly one path segment.

    ``quote(value, safe="")`` leaves only ``A-Z a-z 0-9 - _ . ~`` unencoded, so ``/ ? # %``,
    quotes, spaces and non-ASCII can neither end the segment nor the path. A segment made only
    of dots (``.``, ``..``) is encoded as ``%2E`` so no URL normaliser treats it as a dot segment.
    """
    if not value:
        raise ValueError(f"{endpoint}: an empty name cannot be a path segment")
    try:
        encoded = quote(value, safe="", errors="strict")
    except UnicodeEncodeError:  # lone surrogates from a \\udxxx escape in the API's JSON
        raise MalformedResponse(endpoint, "name is not encodable as UTF-8") from None
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """Encode the query the way the SDK signer canonicalises it, so wire and signature agree."""
    return "&".join(f"{quote(key, safe='~')}={quote(value, safe='~')}" for key, value in params)


class CdmClient:
    """Client of one CDM endpoint and project."""

    def __init__(
        self,
        *,
        endpoint: str,
        project_id: str,
        auth: CdmAuth,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        verify: bool | str = True,
        pool_size: int = 8,
        observer: Observer | None = None,
        user_agent: str = f"cdm-exporter/{__version__}",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """``verify``: True (system/certifi CAs), False, or the path of a CA bundle.

        ``trust_env`` stays on: proxy variables and ``REQUESTS_CA_BUNDLE`` apply as usual
        (the latter replaces ``verify=True``); ``~/.netrc`` is never used.
        """
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError("endpoint must start with https:// or http://")
        try:
            # the endpoint would only name a MalformedResponse, which is a ValueError here
            project = path_segment(project_id, "list_clusters")
        except MalformedResponse:
            raise ValueError("project_id is not encodable as UTF-8") from None
        self._base = f"{endpoint.rstrip('/')}/v1.1/{project}"
        self._auth = auth
        self._timeouts = (connect_timeout, read_timeout)
        self._observer = observer
        self._max_body_bytes = max_body_bytes
        self._session = new_session(pool_size=pool_size, verify=verify, user_agent=user_agent)
        # Content-Type is a documented common header, and the SDK signs it on every request.
        self._headers = {"Accept": "application/json", "Content-Type": "application/json"}
        auth.bind(self._session, observer, self._timeouts)

    # --- plumbing -----------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The credential's non-secret identity (groups API budgets per credential)."""
        return self._auth.identity

    def _cluster_url(self, cluster_id: str, endpoint: Endpoint) -> str:
        return f"{self._base}/clusters/{path_segment(cluster_id, endpoint)}"

    def _prepare(self, url: str) -> requests.PreparedRequest:
        prepared = self._session.prepare_request(requests.Request("GET", url, headers=self._headers))
        prepared.url = url  # undo requests' re-normalisation: what we sign is what we send
        return prepared

    def _get(self, endpoint: Endpoint, url: str, deadline: Deadline) -> tuple[Any, RawResponse]:
        """GET a JSON document; one retry after a 401 when the credential can be renewed."""
        for attempt in (1, 2):
            prepared = self._prepare(url)
            self._auth.apply(prepared, deadline)
            raw = send(
                self._session,
                prepared,
                endpoint=endpoint,
                timeout=deadline.timeouts(endpoint, *self._timeouts),
                deadline=deadline,
                observer=self._observer,
                max_body_bytes=self._max_body_bytes,
            )
            if raw.status == 401 and attempt == 1 and self._auth.refreshable:
                log.info("%s: HTTP 401, renewing the token and retrying once", endpoint)
                self._auth.invalidate(prepared)
                continue
            if not 200 <= raw.status < 300:
                raise error_for(endpoint, raw, self._auth.redact)
            return success_json(endpoint, raw), raw
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _parse(endpoint: Endpoint, raw: RawResponse, payload: Any, key: str, parse: Callable[[Any], T]) -> T:
        """Parse a payload; a wrong overall shape, or a list of records none of which is
        usable, is a :class:`MalformedResponse` (an empty result would read as "no clusters",
        "no jobs" or "never ran" and make the caller drop what it knows)."""
        try:
            result = parse(payload)
        except ShapeError as exc:
            raise MalformedResponse(
                endpoint, str(exc), status=raw.status, request_id=raw.request_id
            ) from None
        records = (
            result.jobs
            if isinstance(result, JobPage)
            else result.runs
            if isinstance(result, SubmissionPage)
            else result
        )
        sent = payload.get(key) if isinstance(payload, dict) else None
        if isinstance(sent, list) and sent and isinstance(records, list | tuple) and not records:
            raise MalformedResponse(
                endpoint,
                f"none of the {len(sent)} records under {key!r} is usable",
                status=raw.status,
                request_id=raw.request_id,
            )
        return result

    # --- API ------------------------------------------------------------------------------------

    def list_clusters(self, *, timeout: float | None = None) -> list[Cluster]:
        """ListClusters: every cluster of the project."""
        payload, raw = self._get("list_clusters", f"{self._base}/clusters", Deadline(timeout))
        return self._parse("list_clusters", raw, payload, "clusters", parse_clusters)

    def list_jobs_page(
        self,
        cluster_id: str,
        job_type: str,
        page_no: int,
        page_size: int = JOB_PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        """One page of ShowJobs ``job/all`` for one job type (the API lists one type per query).

        Reading a whole list is the caller's, page by page under the one paging rule
        (:class:`~cdm_exporter.api.paging.JobListPaging`), so that it can spread the pages over
        its budget. Entries without ``job_type`` get the queried ``job_type``.
        """
        if page_no < 1 or page_size < 1:
            raise ValueError("page_no and page_size start at 1")
        query = query_string(
            [("jobType", job_type), ("page_no", str(page_no)), ("page_size", str(page_size))]
        )
        url = f"{self._cluster_url(cluster_id, 'list_jobs')}/cdm/job/all?{query}"
        payload, raw = self._get("list_jobs", url, Deadline(timeout))
        page = self._parse("list_jobs", raw, payload, "jobs", parse_job_page)
        if any(job.job_type is None for job in page.jobs):
            jobs = tuple(
                job if job.job_type else dataclasses.replace(job, job_type=job_type) for job in page.jobs
            )
            page = dataclasses.replace(page, jobs=jobs)
        return page

    def job_status(self, cluster_id: str, job_name: str, *, timeout: float | None = None) -> list[Submission]:
        """ShowJobStatus: the job's current run(s)."""
        job = path_segment(job_name, "job_status")
        url = f"{self._cluster_url(cluster_id, 'job_status')}/cdm/job/{job}/status"
        payload, raw = self._get("job_status", url, Deadline(timeout))
        return self._parse("job_status", raw, payload, "submissions", parse_submissions)

    def submissions(
        self,
        cluster_id: str,
        job_name: str,
        page_size: int = SUBMISSIONS_DEFAULT_PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> list[Submission]:
        """ShowSubmissions: the job's run history (first page).

        Only ``jname`` is documented for this call, so ``page_size`` is sent only when it differs
        from the documented default of 10.
        """
        if not job_name:
            raise ValueError("submissions: an empty job name")
        params = [("jname", job_name)]
        if page_size != SUBMISSIONS_DEFAULT_PAGE_SIZE:
            params += [("page_no", "1"), ("page_size", str(page_size))]
        try:
            query = query_string(params)
        except UnicodeEncodeError:
            raise MalformedResponse("submissions", "name is not encodable as UTF-8") from None
        url = f"{self._cluster_url(cluster_id, 'submissions')}/cdm/submissions?{query}"
        payload, raw = self._get("submissions", url, Deadline(timeout))
        return self._parse("submissions", raw, payload, "submissions", parse_submissions)

    def submissions_page(
        self, cluster_id: str, job_name: str, page_no: int = 1, *, timeout: float | None = None
    ) -> SubmissionPage:
        """One page of ShowSubmissions, the job's run history, with its paging keys.

        Page 1 is asked with ``jname`` alone (the only documented parameter); a further page
        names ``page_no`` and the documented default ``page_size`` of 10, so the pages line up.
        """
        if not job_name:
            raise ValueError("submissions: an empty job name")
        if page_no < 1:
            raise ValueError("page_no starts at 1")
        params = [("jname", job_name)]
        if page_no > 1:
            params += [("page_no", str(page_no)), ("page_size", str(SUBMISSIONS_DEFAULT_PAGE_SIZE))]
        try:
            query = query_string(params)
        except UnicodeEncodeError:
            raise MalformedResponse("submissions", "name is not encodable as UTF-8") from None
        url = f"{self._cluster_url(cluster_id, 'submissions')}/cdm/submissions?{query}"
        payload, raw = self._get("submissions", url, Deadline(timeout))
        return self._parse("submissions", raw, payload, "submissions", parse_submission_page)

    def close(self) -> None:
        """Close pooled connections. The client must not be used afterwards."""
        self._session.close()

    def __enter__(self) -> CdmClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CdmClient(base={self._base!r}, auth={self._auth!r})"
