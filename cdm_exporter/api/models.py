"""Tolerant parsing of CDM API JSON into typed, immutable objects.

The API has quirks (docs/api-notes.md, "Field quirks"): the ``last-udpate-user`` typo next to the
fixed spelling, epoch-millisecond timestamps sent as numbers or numeric strings, ``progress``
as int or float with -1 meaning unknown, ``isStopingIncrement`` as a string, ``counters`` only
on some runs. Parsing is field by field: a field of the wrong type becomes ``None`` and costs
only itself; a record that is not an object, or has no usable name/id, is dropped alone. Only a
payload whose overall shape is wrong (not an object, the list key missing or not a list)
raises :class:`ShapeError`, which the client turns into a typed ``MalformedResponse``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

log = logging.getLogger(__name__)

#: The documented ShowJobStatus values (Sqoop2 ``SubmissionStatus``), always exported.
JOB_STATUSES: tuple[str, ...] = (
    "BOOTING",
    "FAILURE_ON_SUBMIT",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "UNKNOWN",
    "NEVER_EXECUTED",
)
#: Statuses of a run that has not finished yet (Sqoop2 treats these as unfinished).
ACTIVE_STATUSES = frozenset({"BOOTING", "RUNNING", "PENDING"})
#: Statuses that mean the latest run failed.
FAILED_STATUSES = frozenset({"FAILED", "FAILURE_ON_SUBMIT"})
#: Statuses of a run that is over (or never was): its ``progress`` says nothing any more. CDM
#: leaves 0 there for a SUCCEEDED run (OTC "example of using the migration APIs") and -1 for a
#: failed one. STOPPED and NEW come from the console's vocabulary, UNKNOWN is Sqoop2's lost run.
ENDED_STATUSES = frozenset(
    {"SUCCEEDED", "FAILED", "FAILURE_ON_SUBMIT", "STOPPED", "UNKNOWN", "NEVER_EXECUTED", "NEW"}
)
#: What a job-list ``status`` stands for in ShowJobStatus terms. The list speaks the console's
#: language (New, Pending, Booting, Running, Failed, Succeeded, Stopped): NEW for a job that never
#: ran, FAILED for FAILURE_ON_SUBMIT too, PENDING while the run may already be BOOTING (pending
#: comes first in a run's life, so a run that says BOOTING is the newer news), and STOPPED for a
#: run that a user stopped, which the run itself may report as FAILED or UNKNOWN (Sqoop2 has no
#: STOPPED). A status not in this table stands only for itself.
LIST_STATUS_MEANS: dict[str, frozenset[str]] = {
    "NEW": frozenset({"NEW", "NEVER_EXECUTED"}),
    "PENDING": frozenset({"PENDING", "BOOTING"}),
    "FAILED": frozenset({"FAILED", "FAILURE_ON_SUBMIT"}),
    "STOPPED": frozenset({"STOPPED", "FAILED", "UNKNOWN"}),
}

#: ListClusters ``status`` codes and the label value each is exported as.
CLUSTER_STATUSES: dict[str, str] = {
    "100": "creating",
    "200": "normal",
    "300": "failed",
    "303": "create_failed",
    "500": "restarting",
    "800": "frozen",
    "900": "stopped",
    "910": "stopping",
    "920": "starting",
}

JOB_TYPES: tuple[str, ...] = ("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB")

COUNTERS_KEY = "org.apache.sqoop.submission.counter.SqoopCounters"


class ShapeError(ValueError):
    """The payload as a whole is not of the documented shape."""


# --- field coercion: each returns None for a value it cannot read ---------------------------


def as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return _encodable(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # math.isfinite() would overflow on a huge JSON integer; str() cannot for any int
        # json.loads can produce (it refuses more than sys.get_int_max_str_digits() digits)
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    return None


def _encodable(value: str) -> str:
    """``value`` with lone surrogates (from a JSON ``\\udxxx`` escape) as U+FFFD: such a string
    cannot be encoded as UTF-8, so it would break every exposition, log line and report it
    reached. Done here, once, so that everything downstream holds encodable text."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    return value


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _float_sized(value)
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return _float_sized(int(text))
        except ValueError:
            number = as_float(text)
            return int(number) if number is not None and number.is_integer() else None
    return None


def _float_sized(value: int) -> int | None:
    """``value``, or None when it is beyond the float range: JSON integers are unbounded, but
    every sample value is a float (``float(10**400)`` raises ``OverflowError``)."""
    return value if -sys.float_info.max <= value <= sys.float_info.max else None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # JSON integers are unbounded: 1e400 written out in digits
            return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        # "0"/"1" is how ListClusters sends ``isFrozen`` (docs/api-notes.md, "Clusters")
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        return None
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def as_count(value: Any) -> int | None:
    """A run counter (rows, bytes, files); ``None`` for a negative one. CDM sends -1 for a
    counter that does not apply (ROWS_READ of a file job, BYTES_READ of a table job): that is no
    value, and a negative count would be a lie on a dashboard."""
    number = as_int(value)
    return number if number is not None and number >= 0 else None


def ms_to_seconds(value: Any) -> float | None:
    """Epoch milliseconds (number or numeric string) to epoch seconds."""
    millis = as_float(value)
    if millis is None or millis < 0:
        return None
    return millis / 1000.0


def as_progress(value: Any) -> float | None:
    """Progress in percent, 0..100; ``None`` for -1 (unknown/failed), absent or unreadable."""
    number = as_float(value)
    if number is None or number < 0:
        return None
    return min(number, 100.0)


def list_status_agrees(list_status: str | None, run_status: str | None) -> bool:
    """Whether a job-list status can describe a run in ``run_status`` (:data:`LIST_STATUS_MEANS`);
    an absent list status contradicts nothing. Case-insensitive: the console writes ``Pending``."""
    if list_status is None:
        return True
    said = list_status.upper()
    return (run_status or "").upper() in LIST_STATUS_MEANS.get(said, frozenset({said}))


def agreed_status(list_status: str | None, run_status: str | None) -> str | None:
    """The status of a run its list entry agrees with: the run's own, except that a list's
    STOPPED wins over the FAILED or UNKNOWN of the run (Sqoop2 reports a killed run as FAILED;
    a run a user stopped is no failure to alert on)."""
    if (
        list_status is not None
        and list_status.upper() == "STOPPED"
        and (run_status or "").upper() != "STOPPED"
        and list_status_agrees(list_status, run_status)
    ):
        return list_status
    return run_status


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cluster:
    """One entry of ListClusters."""

    id: str
    name: str
    status: str | None = None  # numeric code as a string, e.g. "200"
    status_detail: str | None = None
    version: str | None = None
    is_frozen: bool | None = None

    @property
    def status_name(self) -> str | None:
        """Label value for ``cdm_cluster_status``: the documented name, else the code itself."""
        if self.status is None:
            return None
        return CLUSTER_STATUSES.get(self.status, self.status)


@dataclass(frozen=True, slots=True)
class Counters:
    """Sqoop counters of one run (``counters.org.apache.sqoop.submission.counter.SqoopCounters``)."""

    bytes_read: int | None = None
    bytes_written: int | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_written_skipped: int | None = None
    total_size: int | None = None
    total_files: int | None = None
    files_read: int | None = None
    files_written: int | None = None
    files_skipped: int | None = None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One entry of the job list (``cdm/job/all``)."""

    name: str
    job_type: str | None = None
    status: str | None = None
    from_connector: str | None = None
    to_connector: str | None = None
    from_link: str | None = None
    to_link: str | None = None
    creation_user: str | None = None
    update_user: str | None = None
    creation_date: float | None = None  # epoch seconds
    update_date: float | None = None
    execute_start_date: float | None = None
    execute_update_date: float | None = None
    external_id: str | None = None
    is_incremental: bool | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    bytes_read: int | None = None
    bytes_written: int | None = None
    files_read: int | None = None
    files_written: int | None = None

    @property
    def change_key(self) -> tuple[object, ...]:
        """What changes in the list entry when the job's latest run moves on."""
        return (self.status, self.execute_start_date, self.execute_update_date, self.update_date)


@dataclass(frozen=True, slots=True)
class Submission:
    """One run of a job, from ShowJobStatus or ShowSubmissions."""

    job_name: str
    status: str | None = None
    progress: float | None = None  # percent 0..100; None when -1 or absent
    submission_id: int | None = None
    external_id: str | None = None
    creation_user: str | None = None
    last_update_user: str | None = None
    creation_date: float | None = None  # epoch seconds
    execute_date: float | None = None
    last_update_date: float | None = None
    is_incrementing: bool | None = None
    is_stopping_increment: str | None = None
    is_execute_auto: bool | None = None
    is_delete_job: bool | None = None
    write_rows: int | None = None
    update_rows: int | None = None
    delete_rows: int | None = None
    counters: Counters | None = None
    error_summary: str | None = None
    error_details: str | None = None

    @property
    def end_date(self) -> float | None:
        """When a finished run ended: its last update, else when it executed, else when it was
        created (the dates a run is sure to carry differ between API versions)."""
        return self.last_update_date or self.execute_date or self.creation_date

    @property
    def progress_ratio(self) -> float | None:
        """Progress as exported, 0..1: the API's value while the run is active (or in a status
        we do not know); 1 once it SUCCEEDED, whatever the API left there (it sends 0); none for
        any other ended run (FAILED, STOPPED, ...), whose progress says nothing."""
        if self.status == "SUCCEEDED":
            return 1.0
        if self.status in ENDED_STATUSES or self.progress is None:
            return None
        return self.progress / 100.0


@dataclass(frozen=True, slots=True)
class SubmissionPage:
    """One page of a job's run history (ShowSubmissions)."""

    runs: tuple[Submission, ...]
    total: int | None
    page_no: int | None
    page_size: int | None
    dropped: int = 0  # entries that were not objects or had no job name


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of the job list."""

    jobs: tuple[JobSummary, ...]
    total: int | None
    page_no: int | None
    page_size: int | None
    dropped: int = 0  # entries that were not objects or had no name


# --- parsers ---------------------------------------------------------------------------------

T = TypeVar("T")


def _record_list(payload: Any, key: str) -> list[Any]:
    if not isinstance(payload, Mapping):
        raise ShapeError(f"expected a JSON object, got {type(payload).__name__}")
    items = payload.get(key)
    if not isinstance(items, list):
        raise ShapeError(f"expected a list under {key!r}, got {type(items).__name__}")
    return items


def _parse_each(items: list[Any], parse: Callable[[Mapping[str, Any]], T | None]) -> tuple[list[T], int]:
    records: list[T] = []
    dropped = 0
    for item in items:
        record = parse(item) if isinstance(item, Mapping) else None
        if record is None:
            dropped += 1
        else:
            records.append(record)
    if dropped:
        log.debug("dropped %d unusable record(s)", dropped)
    return records, dropped


def _cluster(raw: Mapping[str, Any]) -> Cluster | None:
    cluster_id = as_str(raw.get("id"))
    if not cluster_id:
        return None
    datastore = raw.get("datastore")
    version = as_str(datastore.get("version")) if isinstance(datastore, Mapping) else None
    return Cluster(
        id=cluster_id,
        name=as_str(raw.get("name")) or cluster_id,
        status=as_str(raw.get("status")),
        status_detail=as_str(raw.get("statusDetail")),
        version=version or as_str(raw.get("version")),
        is_frozen=as_bool(raw.get("isFrozen")),
    )


def parse_clusters(payload: Any) -> list[Cluster]:
    """ListClusters: ``{"clusters": [...]}``."""
    return _parse_each(_record_list(payload, "clusters"), _cluster)[0]


def _job_summary(raw: Mapping[str, Any]) -> JobSummary | None:
    name = as_str(raw.get("name"))
    if not name:
        return None
    return JobSummary(
        name=name,
        job_type=as_str(raw.get("job_type")),
        status=as_str(raw.get("status")),
        from_connector=as_str(raw.get("from-connector-name")),
        to_connector=as_str(raw.get("to-connector-name")),
        from_link=as_str(raw.get("from-link-name")),
        to_link=as_str(raw.get("to-link-name")),
        creation_user=as_str(raw.get("creation-user")),
        update_user=as_str(raw.get("update-user")),
        creation_date=ms_to_seconds(raw.get("creation-date")),
        update_date=ms_to_seconds(raw.get("update-date")),
        execute_start_date=ms_to_seconds(raw.get("execute_start_date")),
        execute_update_date=ms_to_seconds(raw.get("execute_update_date")),
        external_id=as_str(raw.get("external_id")),
        is_incremental=as_bool(raw.get("is_incre_job")),
        rows_read=as_count(raw.get("rows_read")),
        rows_written=as_count(raw.get("rows_written")),
        bytes_read=as_count(raw.get("bytes_read")),
        bytes_written=as_count(raw.get("bytes_written")),
        files_read=as_count(raw.get("files_read")),
        files_written=as_count(raw.get("files_written")),
    )


def parse_job_page(payload: Any) -> JobPage:
    """ShowJobs: ``{"total", "jobs": [...], "page_no", "page_size"}``."""
    jobs, dropped = _parse_each(_record_list(payload, "jobs"), _job_summary)
    assert isinstance(payload, Mapping)  # checked by _record_list
    return JobPage(
        jobs=tuple(jobs),
        total=as_int(payload.get("total")),
        page_no=as_int(payload.get("page_no")),
        page_size=as_int(payload.get("page_size")),
        dropped=dropped,
    )


def _counters(raw: Any) -> Counters | None:
    if not isinstance(raw, Mapping):
        return None
    inner = raw.get(COUNTERS_KEY)
    if not isinstance(inner, Mapping):
        return None
    values = {f.name: as_count(inner.get(f.name.upper())) for f in fields(Counters)}
    return Counters(**values)


def _submission(raw: Mapping[str, Any]) -> Submission | None:
    name = as_str(raw.get("job-name"))
    if not name:
        return None
    # Both spellings exist in the wild (docs/api-notes.md, "Field quirks"); the fixed one wins.
    last_update_user = as_str(raw.get("last-update-user"))
    if last_update_user is None:
        last_update_user = as_str(raw.get("last-udpate-user"))
    return Submission(
        job_name=name,
        status=as_str(raw.get("status")),
        progress=as_progress(raw.get("progress")),
        submission_id=as_int(raw.get("submission-id")),
        external_id=as_str(raw.get("external-id")),
        creation_user=as_str(raw.get("creation-user")),
        last_update_user=last_update_user,
        creation_date=ms_to_seconds(raw.get("creation-date")),
        execute_date=ms_to_seconds(raw.get("execute-date")),
        last_update_date=ms_to_seconds(raw.get("last-update-date")),
        is_incrementing=as_bool(raw.get("isIncrementing")),
        is_stopping_increment=as_str(raw.get("isStopingIncrement")),
        is_execute_auto=as_bool(raw.get("is-execute-auto")),
        is_delete_job=as_bool(raw.get("isDeleteJob")),
        write_rows=as_count(raw.get("write_rows")),
        update_rows=as_count(raw.get("update_rows")),
        delete_rows=as_count(raw.get("delete_rows")),
        counters=_counters(raw.get("counters")),
        error_summary=as_str(raw.get("error-summary")),
        error_details=as_str(raw.get("error-details")),
    )


def parse_submissions(payload: Any) -> list[Submission]:
    """ShowJobStatus and ShowSubmissions: ``{"submissions": [...]}`` (history adds paging keys)."""
    return _parse_each(_record_list(payload, "submissions"), _submission)[0]


def parse_submission_page(payload: Any) -> SubmissionPage:
    """ShowSubmissions with its paging keys: ``{"submissions", "total", "page_no", "page_size"}``."""
    runs, dropped = _parse_each(_record_list(payload, "submissions"), _submission)
    assert isinstance(payload, Mapping)  # checked by _record_list
    return SubmissionPage(
        runs=tuple(runs),
        total=as_int(payload.get("total")),
        page_no=as_int(payload.get("page_no")),
        page_size=as_int(payload.get("page_size")),
        dropped=dropped,
    )


def latest(submissions: list[Submission]) -> Submission | None:
    """The newest run: highest ``submission-id``, else latest creation date, else the first listed."""
    if not submissions:
        return None

    def order(sub: Submission) -> tuple[float, float]:
        return (
            float(sub.submission_id) if sub.submission_id is not None else -1.0,
            sub.creation_date if sub.creation_date is not None else -1.0,
        )

    best = max(submissions, key=order)
    return best if order(best) != (-1.0, -1.0) else submissions[0]


@dataclass(frozen=True, slots=True)
class AuthProject:
    """One entry of IAM's KeystoneListAuthProjects (``GET /v3/auth/projects``).

    A region's default project is named by its region ID (``cn-north-4``), a sub-project
    ``<region>_<suffix>`` (docs/api-notes.md, "IAM projects").
    """

    id: str
    name: str
    enabled: bool = True
    parent_id: str | None = None
    domain_id: str | None = None


def _auth_project(raw: Mapping[str, Any]) -> AuthProject | None:
    project_id, name = as_str(raw.get("id")), as_str(raw.get("name"))
    if not project_id or name is None:
        return None
    # ``enabled`` is always sent; should it be missing, polling an unknown project costs less
    # than silently never polling a real one
    enabled = as_bool(raw.get("enabled"))
    return AuthProject(
        id=project_id,
        name=name,
        enabled=True if enabled is None else enabled,
        parent_id=as_str(raw.get("parent_id")),
        domain_id=as_str(raw.get("domain_id")),
    )


def parse_auth_projects(payload: Any) -> list[AuthProject]:
    """``{"projects": [...], "links": {...}}``; an entry without ``id`` or ``name`` is dropped alone."""
    return _parse_each(_record_list(payload, "projects"), _auth_project)[0]
