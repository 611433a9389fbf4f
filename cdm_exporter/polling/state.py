"""What the exporter knows about one target between collections.

Job and cluster records are immutable and replaced whole on every update, so a scrape can take
a consistent snapshot by copying references while the poller's worker threads keep writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cdm_exporter.api.models import ACTIVE_STATUSES, Cluster, Counters, JobSummary, Submission


@dataclass(frozen=True, slots=True)
class JobState:
    """One job: its list entry, its latest run as last fetched, and what we derived from them."""

    cluster_id: str
    summary: JobSummary
    latest: Submission | None = None
    refreshed_at: float | None = None  # wall-clock time of the last successful status fetch
    fetched_key: tuple[object, ...] | None = None  # summary.change_key when that fetch happened
    last_success: float | None = None  # end of the latest SUCCEEDED run known
    history_wanted: bool = False  # a run may have ended unseen: read the run history
    history_at: float | None = None  # monotonic time of the last history read

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
        return _same_run(self.summary, run) and _agrees(self.summary.status, run.status)

    @property
    def status(self) -> str | None:
        """The newest status known, from the fetched run or else the list entry."""
        if self.latest is not None and (self.latest_is_current or self.summary.status is None):
            return self.latest.status
        return self.summary.status or (self.latest.status if self.latest else None)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def changed_since_fetch(self) -> bool:
        return not self.latest_is_current

    @property
    def current_run(self) -> Submission | None:
        """The fetched run when it is still the newest information, else ``None``."""
        return self.latest if self.latest_is_current else None

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


#: list status -> the run statuses it stands for (the list reports FAILED for FAILURE_ON_SUBMIT)
_LIST_STATUS_MEANS = {"FAILED": ("FAILED", "FAILURE_ON_SUBMIT"), "NEW": ("NEW", "NEVER_EXECUTED")}


def _agrees(list_status: str | None, run_status: str | None) -> bool:
    return list_status is None or run_status in _LIST_STATUS_MEANS.get(list_status, (list_status,))


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
    page_no: int = 1
    jobs: dict[str, JobSummary] = field(default_factory=dict)


@dataclass
class ClusterState:
    cluster: Cluster
    jobs: dict[str, JobState] = field(default_factory=dict)
    up: bool | None = None  # did the last job-list attempt work; None before the first
    listed_at: float | None = None  # monotonic time the last complete list was read
    listing: ListingCursor | None = None
    list_error: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterView:
    cluster: Cluster
    up: bool | None
    jobs: tuple[JobState, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class TargetView:
    """A consistent snapshot of one target, what the collector maps to metric families."""

    name: str
    project_id: str
    region: str
    up: bool | None
    clusters: tuple[ClusterView, ...]
    error: str | None
    budget_remaining: dict[str, float]
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
