"""What the exporter knows about one target between collections.

Job and cluster records are immutable and replaced whole on every update, so a scrape can take
a consistent snapshot by copying references while the poller's worker threads keep writing.

What a state store keeps (a file, or Redis shared by replicas) is made by :func:`job_record`,
:func:`cluster_record` and :func:`target_record` from these classes, field by field
(:mod:`cdm_exporter.polling.records`): a field added here is stored with no other change. Mark a
field holding monotonic seconds ``metadata=MONOTONIC``, and one that must not be stored
``metadata=TRANSIENT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from cdm_exporter.api.endpoints import Endpoint, Policy
from cdm_exporter.api.errors import AuthError, CdmError
from cdm_exporter.api.models import (
    ACTIVE_STATUSES,
    FAILED_STATUSES,
    Cluster,
    Counters,
    JobSummary,
    Submission,
    agreed_status,
    list_status_agrees,
)
from cdm_exporter.api.paging import JobListPaging
from cdm_exporter.polling.history import HistoryScan
from cdm_exporter.polling.records import MONOTONIC, TRANSIENT, Clocks, Record, from_record, to_record
from cdm_exporter.polling.run_counts import NOT_RUN, RunTally, run_ended


class JobInfo(NamedTuple):
    """The non-numeric facts of a job (the labels of ``cdm_job_info``); "" where none is known."""

    job_type: str
    external_id: str
    creation_user: str
    last_update_user: str
    incremental: str  # "true", "false" or ""
    execute_auto: str
    delete_after_run: str
    stopping_increment: str
    from_connector: str
    to_connector: str
    from_link: str
    to_link: str


@dataclass(frozen=True, slots=True)
class JobState:
    """One job: its list entry, its latest run as last fetched, and what we derived from them."""

    cluster_id: str
    summary: JobSummary
    latest: Submission | None = None
    refreshed_at: float | None = None  # wall-clock time of the last successful status fetch
    fetched_key: tuple[object, ...] | None = None  # summary.change_key when that fetch happened
    last_success: float | None = None  # end of the latest SUCCEEDED run known
    last_failure: float | None = None  # end of the latest FAILED or FAILURE_ON_SUBMIT run known
    last_run_end: float | None = None  # end of the latest ended run known
    last_run_duration: float | None = None  # ... and its start to end
    tally: RunTally | None = None  # ended runs counted since the first status read
    history_wanted: bool = False  # a run may have ended unseen: read the run history
    history_at: float | None = field(default=None, metadata=MONOTONIC)  # time of the last history read
    history_read_at: float | None = None  # wall-clock time the last history read finished
    history_key: tuple[object, ...] | None = None  # summary.change_key when that read began
    history_scan: HistoryScan | None = None  # a history read the budget cut short, resumed next
    status_error: tuple[str, str] | None = None  # (kind, message) of a failed status fetch, until one works

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def latest_is_current(self) -> bool:
        """True when the list entry says nothing newer than the fetched run: unchanged since the
        fetch, or describing the same run in the same state (a running job's entry changes with
        every update of its counters, which is no reason to distrust the fetched run)."""
        run = self.latest
        if run is None:
            return False
        if self.fetched_key == self.summary.change_key:
            return True
        return _same_run(self.summary, run) and list_status_agrees(self.summary.status, run.status)

    @property
    def status(self) -> str | None:
        """The newest status known, from the fetched run or else the list entry."""
        if self.latest is not None and (self.latest_is_current or self.summary.status is None):
            return agreed_status(self.summary.status, self.latest.status)
        return self.summary.status or (self.latest.status if self.latest else None)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def changed_since_fetch(self) -> bool:
        if self.latest is None:
            # never fetched, or fetched and the job had no run yet (a NEW job answers an empty
            # list): changed only once its list entry moves on
            return self.refreshed_at is None or self.fetched_key != self.summary.change_key
        return not self.latest_is_current

    @property
    def ended_unread(self) -> bool:
        """Whether the list entry tells of a run that ended after the fetched run was read, which
        no history read has looked at since: a newer run started (so the one fetched ended, and
        maybe more), or the run fetched active has ended. Only for a job whose runs are counted."""
        summary, run = self.summary, self.latest
        started = summary.execute_start_date
        if self.tally is None or started is None or summary.change_key == self.history_key:
            return False
        listed_ended = summary.status is not None and summary.status.upper() not in (
            *ACTIVE_STATUSES,
            *NOT_RUN,
        )
        if run is None:
            return listed_ended  # the job's first run, ended
        fetched_start = run.execute_date or run.creation_date
        if fetched_start is None:
            return False
        if started > fetched_start + 1.0:
            return True
        return run.status in ACTIVE_STATUSES and listed_ended

    @property
    def current_run(self) -> Submission | None:
        """The fetched run when it is still the newest information, else ``None``."""
        return self.latest if self.latest_is_current else None

    def with_ended_runs(self, runs: Iterable[Submission]) -> JobState:
        """This state with what the ended runs among ``runs`` tell: the last success, the last
        failure and the latest run's duration move on to the latest such run; they never move back
        (a history page may not reach the run we saw end)."""
        ended = [(run, run.end_date) for run in runs if run_ended(run) and run.end_date is not None]
        if not ended:
            return self
        successes = [end for run, end in ended if run.status == "SUCCEEDED"]
        failures = [end for run, end in ended if run.status in FAILED_STATUSES]
        new = replace(
            self,
            last_success=_latest(self.last_success, *successes),
            last_failure=_latest(self.last_failure, *failures),
        )
        run, end = max(ended, key=lambda pair: pair[1])
        if self.last_run_end is None or end > self.last_run_end:
            started = run.execute_date or run.creation_date
            duration = max(0.0, end - started) if started is not None else None
            new = replace(new, last_run_end=end, last_run_duration=duration)
        return new

    def relisted(self, summary: JobSummary) -> JobState:
        """This job with its new list entry; a job deleted and created again under the same name
        (its creation date changed) starts over, its run counts with it."""
        before, now = self.summary.creation_date, summary.creation_date
        if before is not None and now is not None and abs(before - now) >= 1.0:
            return JobState(cluster_id=self.cluster_id, summary=summary)
        return replace(self, summary=summary)

    def info(self) -> JobInfo:
        """The job's facts: the fetched run's where it has them, else the list entry's."""
        run, summary = self.latest, self.summary
        incremental = run.is_incrementing if run is not None else None
        return JobInfo(
            job_type=summary.job_type or "",
            external_id=(run.external_id if run else None) or summary.external_id or "",
            creation_user=(run.creation_user if run else None) or summary.creation_user or "",
            last_update_user=(run.last_update_user if run else None) or summary.update_user or "",
            incremental=_flag(summary.is_incremental if incremental is None else incremental),
            execute_auto=_flag(run.is_execute_auto if run else None),
            delete_after_run=_flag(run.is_delete_job if run else None),
            stopping_increment=(run.is_stopping_increment if run else None) or "",
            from_connector=summary.from_connector or "",
            to_connector=summary.to_connector or "",
            from_link=summary.from_link or "",
            to_link=summary.to_link or "",
        )

    def counters(self) -> Counters | None:
        """Counters of the latest run: the run's own, else the list entry's (which carries some
        while a run is under way) when that entry describes the same run."""
        run = self.current_run
        if run is not None and run.counters is not None:
            return run.counters
        s = self.summary
        if all(v is None for v in (s.rows_read, s.rows_written, s.bytes_read, s.bytes_written)):
            return None
        if run is not None and not _same_run(s, run):
            return None  # the list entry is older than the fetched run: its counters are a past run's
        return Counters(
            rows_read=s.rows_read,
            rows_written=s.rows_written,
            bytes_read=s.bytes_read,
            bytes_written=s.bytes_written,
            files_read=s.files_read,
            files_written=s.files_written,
        )


def _latest(*values: float | None) -> float | None:
    return max((v for v in values if v is not None), default=None)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def _same_run(summary: JobSummary, run: Submission) -> bool:
    started = run.execute_date or run.creation_date
    return (
        summary.execute_start_date is not None
        and started is not None
        and abs(summary.execute_start_date - started) < 1.0
    )


@dataclass
class ListingCursor:
    """A job list being read page by page, possibly across several collections (budget)."""

    type_index: int = 0
    paging: JobListPaging = field(default_factory=JobListPaging)  # of the type being read
    jobs: dict[str, JobSummary] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # job types listed to the end
    refused: dict[str, CdmError] = field(default_factory=dict)  # types the cluster seems not to know


@dataclass
class ClusterState:
    cluster: Cluster
    jobs: dict[str, JobState] = field(default_factory=dict, metadata=TRANSIENT)  # records of their own
    up: bool | None = None  # did the last job-list attempt work; None before the first
    listed_at: float | None = field(default=None, metadata=MONOTONIC)  # the last complete list read
    listing: ListingCursor | None = field(default=None, metadata=TRANSIENT)  # starts over elsewhere
    list_error: str | None = None
    list_error_kind: str | None = None  # ``CdmError.kind`` of list_error ("throttled", "auth", ...)
    # job type -> when the cluster refused it
    unsupported: dict[str, float] = field(default_factory=dict, metadata=MONOTONIC)

    def stored(self) -> ClusterState:
        """A copy of what a store keeps of this cluster (no jobs, no listing in progress)."""
        return ClusterState(
            self.cluster, up=self.up, listed_at=self.listed_at, list_error=self.list_error,
            list_error_kind=self.list_error_kind, unsupported=dict(self.unsupported),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """A stored :class:`~cdm_exporter.api.errors.AuthError`: what its message and hint are made of."""

    endpoint: Endpoint
    message: str
    status: int | None = None
    code: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, error: AuthError) -> AuthFailure:
        return cls(error.endpoint, error.message, error.status, error.code, error.request_id)

    def error(self) -> AuthError:
        return AuthError(
            self.endpoint, self.message, status=self.status, code=self.code, request_id=self.request_id
        )


@dataclass(frozen=True, slots=True)
class TargetState:
    """What a target knows beyond its clusters and jobs. ``where`` tells which project a stored
    state belongs to: one stored for another project, region or endpoint is not taken over."""

    where: tuple[str, str, str]  # project_id, region, endpoint
    clusters_at: float | None = field(default=None, metadata=MONOTONIC)  # the last cluster list read
    clusters_ok: bool | None = None
    error: str | None = None
    error_kind: str | None = None  # ``CdmError.kind`` of error
    authenticated: bool | None = None
    auth_error: AuthFailure | None = None  # a 401/403 in the last collection
    # the credential itself was refused: not sent again before discovery_interval, after a
    # restart too (CDM locks an access key after 5 failed signatures in a row)
    refused_at: float | None = field(default=None, metadata=MONOTONIC)
    throttled_at: float | None = None  # wall-clock time of the last 429 from CDM


def job_record(job: JobState, clocks: Clocks) -> Record:
    """``job`` as a state store keeps it: every field, versioned (:mod:`~cdm_exporter.polling.records`)."""
    return to_record(job, clocks)


def job_from_record(record: object, clocks: Clocks) -> JobState:
    """The job a stored record holds; ``RecordError`` when it cannot be read."""
    return from_record(JobState, record, clocks)


def cluster_record(cluster: ClusterState, clocks: Clocks) -> Record:
    return to_record(cluster, clocks)


def cluster_from_record(record: object, clocks: Clocks) -> ClusterState:
    return from_record(ClusterState, record, clocks)


def target_record(target: TargetState, clocks: Clocks) -> Record:
    return to_record(target, clocks)


def target_from_record(record: object, clocks: Clocks) -> TargetState:
    return from_record(TargetState, record, clocks)


@dataclass(frozen=True, slots=True)
class ClusterView:
    cluster: Cluster
    up: bool | None
    jobs: tuple[JobState, ...]
    error: str | None
    unsupported_types: tuple[str, ...] = ()  # job types this cluster refused to list
    error_kind: str | None = None  # ``CdmError.kind`` of error


@dataclass(frozen=True, slots=True)
class TargetView:
    """A consistent snapshot of one target, what the collector maps to metric families."""

    name: str
    project_id: str
    region: str
    up: bool | None
    clusters: tuple[ClusterView, ...]
    error: str | None
    budget_remaining: dict[Policy, float]
    error_kind: str | None = None  # ``CdmError.kind`` of error
    throttled_at: float | None = None  # wall-clock time of the last 429 from CDM
    hint: str | None = None  # what to check when the API refused the credentials
    #: the IAM project name, for a project found by discovery (``None`` for a configured one)
    project_name: str | None = None
    #: why a discovered project is set aside (``not_offered``, ``forbidden``), else ``None``
    unavailable: str | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryView:
    """The project discovery of one ``projects`` target at one moment."""

    target: str
    up: bool | None  # did the last listing of the credential's projects work; None before the first
    error: str | None
    listed: int  # projects the credential may use, at the last listing that worked
    selected: int  # of those, the ones polled: enabled, in a region, selected by ``projects``
