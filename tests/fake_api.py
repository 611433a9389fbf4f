"""A fake CDM API for unit tests of the poller: canned answers, every call recorded.

:class:`FakeApi` implements the poller's ``ApiClient`` protocol without HTTP. A test sets what
the API holds (clusters, jobs, the run ``/status`` shows, the run history, or hand-made job-list
pages) and reads back which calls the poller made. :class:`PollerHarness` puts a poller over it
with an injected clock and budgets, so every decision is deterministic and minutes pass at once;
its :meth:`PollerHarness.pace` lets time pass between scrapes as the exporter's pacer does.
"""

from __future__ import annotations

import threading
from concurrent.futures import wait
from dataclasses import dataclass, field
from typing import NamedTuple

from cdm_exporter.api.client import SUBMISSIONS_DEFAULT_PAGE_SIZE as HISTORY_PAGE_SIZE
from cdm_exporter.api.endpoints import Endpoint, Policy
from cdm_exporter.api.errors import CdmError, NotFound
from cdm_exporter.api.models import Cluster, JobPage, JobSummary, Submission, SubmissionPage
from cdm_exporter.api.paging import JOB_PAGE_SIZE
from cdm_exporter.api.secret import Secret
from cdm_exporter.config import BudgetConfig, CollectionConfig, TargetConfig, TokenAuthConfig
from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, Budgets, TokenBucket
from cdm_exporter.polling.poller import TargetPoller
from cdm_exporter.polling.state import JobState, TargetView
from cdm_exporter.simulator import ManualClock

CLUSTER = "c1"
MINUTE = COUNTED_WINDOW_SECONDS  # a minute as the budget counts it


class Call(NamedTuple):
    endpoint: Endpoint
    cluster_id: str = ""
    subject: str = ""  # the job name, or the job type of a list page
    page_no: int = 0


def summary(name: str, status: str = "SUCCEEDED", started: float = 1000.0) -> JobSummary:
    """A list entry whose latest run started at ``started`` (and was last updated then)."""
    return JobSummary(
        name=name,
        job_type="NORMAL_JOB",
        status=status,
        execute_start_date=started,
        execute_update_date=started,
    )


def run(
    name: str, submission_id: int, status: str, started: float = 1000.0, ended: float | None = None
) -> Submission:
    """A run as ``/status`` or the history shows it."""
    return Submission(
        job_name=name,
        status=status,
        submission_id=submission_id,
        creation_date=started,
        execute_date=started,
        last_update_date=ended if ended is not None else started,
    )


@dataclass
class FakeApi:
    """The calls of ``ApiClient`` answered from what the test put here."""

    clusters: list[Cluster] = field(default_factory=lambda: [Cluster(CLUSTER, "cluster one", "200")])
    jobs: dict[str, list[JobSummary]] = field(default_factory=dict)  # cluster -> jobs of every type
    runs: dict[str, Submission] = field(default_factory=dict)  # job -> the run /status shows
    history: dict[str, list[Submission]] = field(default_factory=dict)  # job -> ShowSubmissions
    pages: dict[str, list[JobPage]] = field(default_factory=dict)  # job type -> hand-made pages
    history_error: CdmError | None = None  # what every history page answers instead, when set
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def list_clusters(self, *, timeout: float | None = None) -> list[Cluster]:
        self._record(Call("list_clusters"))
        return list(self.clusters)

    def list_jobs_page(
        self,
        cluster_id: str,
        job_type: str,
        page_no: int,
        page_size: int = JOB_PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        self._record(Call("list_jobs", cluster_id, job_type, page_no))
        if job_type in self.pages:  # as given; past the last one the server answers empty pages
            pages = self.pages[job_type]
            return pages[page_no - 1] if page_no <= len(pages) else JobPage((), None, page_no, page_size)
        of_type = [job for job in self.jobs.get(cluster_id, []) if job.job_type == job_type]
        first = (page_no - 1) * page_size
        return JobPage(tuple(of_type[first : first + page_size]), len(of_type), page_no, page_size)

    def job_status(self, cluster_id: str, job_name: str, *, timeout: float | None = None) -> list[Submission]:
        self._record(Call("job_status", cluster_id, job_name))
        if job_name not in self.runs:
            raise NotFound("job_status", f"no job {job_name}", status=400, code="Cdm.0100")
        return [self.runs[job_name]]

    def submissions(
        self, cluster_id: str, job_name: str, *, timeout: float | None = None
    ) -> list[Submission]:
        self._record(Call("submissions", cluster_id, job_name))
        return list(self.history.get(job_name, []))

    def submissions_page(
        self, cluster_id: str, job_name: str, page_no: int = 1, *, timeout: float | None = None
    ) -> SubmissionPage:
        self._record(Call("submissions", cluster_id, job_name, page_no))
        if self.history_error is not None:
            raise self.history_error
        runs = self.history.get(job_name, [])
        page = runs[(page_no - 1) * HISTORY_PAGE_SIZE : page_no * HISTORY_PAGE_SIZE]
        return SubmissionPage(tuple(page), len(runs), page_no, HISTORY_PAGE_SIZE)

    def close(self) -> None:
        pass

    # --- setting up what the API holds ---------------------------------------------------------

    def put(self, entry: JobSummary, latest: Submission | None = None) -> None:
        """Add or replace a job's list entry (and the run its ``/status`` shows)."""
        jobs = [job for job in self.jobs.get(CLUSTER, []) if job.name != entry.name]
        self.jobs[CLUSTER] = [*jobs, entry]
        if latest is not None:
            self.runs[entry.name] = latest


def worst_rolling_minute(times: list[float]) -> int:
    """The most calls in any 60 s (a call at t and one at t + 60 are in different minutes)."""
    times = sorted(times)
    worst, first = 0, 0
    for last, at in enumerate(times):
        while times[first] + 60.0 <= at:
            first += 1
        worst = max(worst, last - first + 1)
    return worst


def page(names: list[str], total: int | None, page_size: int | None = None) -> JobPage:
    """A hand-made job-list page."""
    return JobPage(tuple(summary(n) for n in names), total, None, page_size)


class PollerHarness:
    """A poller over a :class:`FakeApi`, with a manual clock and budgets on it."""

    def __init__(
        self,
        api: FakeApi,
        *,
        job_status: int = 100,
        common: int = 100,
        job_list_interval: float = 60.0,
        history_interval: float = 0.0,
        paced: bool = False,
    ) -> None:
        """``paced``: the poller's calls go on between scrapes (:meth:`pace`); else only
        :meth:`collect` calls the API."""
        self.api = api
        self.clock = ManualClock()
        # a new budget holds a whole minute's calls: "n calls per minute" is n calls in the next
        # collection
        self.budgets = Budgets({"job_status": job_status, "common": common}, clock=self.clock)
        collection = CollectionConfig(
            budget_per_minute=BudgetConfig(job_status=job_status, common=common),
            job_list_interval=job_list_interval,
            history_interval=history_interval,
            discovery_interval=3600.0,
        )
        target = TargetConfig(
            name="fake",
            region="cn-north-4",
            project_id="0123456789abcdef0123456789abcdef",
            endpoint="https://cdm.cn-north-4.myhuaweicloud.com",
            iam_endpoint="https://iam.cn-north-4.myhuaweicloud.com",
            auth=TokenAuthConfig(Secret("fake-token")),
        )
        self.poller = TargetPoller(
            target, collection, api, self.budgets, "fake", wall=self.clock, mono=self.clock, paced=paced
        )

    def collect(self, advance: float = 0.0) -> list[Call]:
        """One collection, ``advance`` seconds after the last; the calls it made."""
        self.clock.advance(advance)
        start = len(self.api.calls)
        self.poller.refresh(self.clock() + 10.0)
        return self.api.calls[start:]

    def pace(self, seconds: float) -> list[tuple[float, Call]]:
        """Let ``seconds`` pass as between two scrapes, the poller spending its budgets as the
        tokens come (what the exporter's pacer thread does in real time); the calls it made,
        each with the time it was made."""
        until = self.clock() + seconds
        made: list[tuple[float, Call]] = []
        while True:
            start = len(self.api.calls)
            futures, look = self.poller.pace()
            wait(futures)
            made += [(self.clock(), call) for call in self.api.calls[start:]]
            if look is None or look > until:
                break
            self.clock.set(max(look, self.clock() + 1e-6))
        self.clock.set(until)
        return made

    def bucket(self, policy: Policy) -> TokenBucket:
        return self.budgets.bucket("fake", policy)

    def leave(self, policy: Policy, calls: int) -> None:
        """Spend the budget of ``policy`` down to ``calls`` calls for the next collection.

        What is spent counts in the rolling minute: use it when the last minute's calls are over.
        """
        bucket = self.bucket(policy)
        while bucket.available() >= calls + 1:
            assert bucket.try_acquire()

    def view(self) -> TargetView:
        return self.poller.view()

    def jobs(self) -> dict[str, JobState]:
        return {job.name: job for cluster in self.view().clusters for job in cluster.jobs}

    def close(self) -> None:
        self.poller.close()
