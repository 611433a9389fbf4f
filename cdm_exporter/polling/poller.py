"""Decides what to fetch from one target within the API budget and the scrape deadline.

Each collection (docs/architecture.md, "Polling within the API budget"):

1. reads the cluster list when it is older than ``discovery_interval`` (or the last read failed);
2. reads each cluster's job list, every job type, page by page under the one paging rule
   (:mod:`cdm_exporter.api.paging`), when it is older than ``job_list_interval``; a list that
   the budget cuts short resumes at the next collection, one whose pages do not add up fails;
3. fetches ``/status`` for BOOTING/RUNNING jobs first, then jobs whose list entry changed since
   their last fetch, then the oldest-refreshed rest, as far as the budget and the deadline allow
   (:mod:`cdm_exporter.polling.schedule`);
4. reads the run history of a job only when a run may have ended unseen (for last success);
5. keeps everything else as last known, and forgets jobs and clusters that no longer exist.

Requests that outlive the deadline finish in the background and land in the state for the next
scrape. A 429 is not retried: the bucket pauses and the job keeps its last known state.

Between scrapes, :meth:`TargetPoller.pace` goes on where the scrape stopped, one call as each
token comes: the status fetches the scrape planned (each job at most once per scrape interval),
unfinished job lists and due history reads. So the budget is spent at an even pace over the
whole interval instead of in bursts at scrape time, which the rolling minute cuts short.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Protocol

from cdm_exporter.api.endpoints import POLICIES, Endpoint, Policy
from cdm_exporter.api.errors import AuthError, CdmError, NotFound, RateLimited
from cdm_exporter.api.models import FAILED_STATUSES, Cluster, JobPage, Submission, latest
from cdm_exporter.api.paging import JOB_PAGE_SIZE, JobListPaging
from cdm_exporter.config import CollectionConfig, TargetConfig
from cdm_exporter.polling.budget import WINDOW_SECONDS, Budgets, TokenBucket
from cdm_exporter.polling.failure_log import FailureLog
from cdm_exporter.polling.schedule import interval_plan, missed_a_run, status_fetch_order
from cdm_exporter.polling.state import ClusterState, ClusterView, JobState, ListingCursor, TargetView

log = logging.getLogger(__name__)

#: a request is not started with less time than this left before the deadline
MIN_REQUEST_SECONDS = 0.05
#: how many intervals between scrapes the pace is averaged over
PACE_SAMPLES = 4
#: calls go on between scrapes for two scrape intervals after the last scrape, at least this long
PACE_AT_LEAST_SECONDS = 60.0
#: the running jobs, fetched last in a scrape interval, are to be done this long before the next
#: scrape (their calls come at the budget's pace, :meth:`TokenBucket.spacing`)
LAST_CALLS_SECONDS = 0.3

WorkKey = tuple[str, str, str]  # (what, cluster_id, job_name)
Work = tuple[WorkKey, Callable[..., None], tuple[object, ...]]


class ApiClient(Protocol):
    """The calls the poller needs (:class:`cdm_exporter.api.client.CdmClient`)."""

    def list_clusters(self, *, timeout: float | None = None) -> list[Cluster]: ...

    def list_jobs_page(
        self,
        cluster_id: str,
        job_type: str,
        page_no: int,
        page_size: int = JOB_PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        """One page of one job type's list; entries without ``job_type`` get ``job_type``."""
        ...

    def job_status(
        self, cluster_id: str, job_name: str, *, timeout: float | None = None
    ) -> list[Submission]: ...

    def submissions(
        self, cluster_id: str, job_name: str, *, timeout: float | None = None
    ) -> list[Submission]: ...

    def close(self) -> None: ...


class TargetPoller:
    """Known state of one configured target, refreshed within a deadline."""

    def __init__(
        self,
        target: TargetConfig,
        collection: CollectionConfig,
        client: ApiClient,
        budgets: Budgets,
        identity: str,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        paced: bool = False,
    ) -> None:
        """``paced``: :meth:`pace` is called between scrapes, which then make only the urgent
        calls; else only the scrapes call the API, each spending what the budget holds."""
        self.target = target
        self.collection = collection
        self.client = client
        self._identity = identity
        self._budgets = budgets
        self._wall = wall
        self._mono = mono
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=collection.concurrency, thread_name_prefix=f"cdm-{target.name[:12]}"
        )
        self._clusters: dict[str, ClusterState] = {}
        self._clusters_at: float | None = None
        self._clusters_ok: bool | None = None
        self._auth_failed = False
        self._error: str | None = None
        self._inflight: set[WorkKey] = set()
        self._scraped_at: float | None = None  # monotonic start of the last refresh (scrape)
        self._intervals: deque[float] = deque(maxlen=PACE_SAMPLES)  # seconds between scrapes
        self._interval = 0.0  # their mean: the usual time between scrapes (0 before the second)
        # (cluster_id, job_name) to fetch in this scrape interval: first, and at its end
        self._status_first: deque[tuple[str, str]] = deque()
        self._status_last: deque[tuple[str, str]] = deque()
        self._status_plan_stale = False  # a job list changed the jobs since the plan was made
        self._status_tried: set[tuple[str, str]] = set()  # fetched (or tried) since the scrape
        self._paced = paced  # pace() runs between scrapes: the budget is spent over the interval
        self._paced_at: dict[Policy, float] = {}  # when pace() may start the next call, per budget
        self.failures = FailureLog(log, target.name)
        self.authenticated: bool | None = None  # did the last authenticated call work

    # --- public ------------------------------------------------------------------------------

    def refresh(self, deadline: float) -> None:
        """Bring the state up to date as far as budget and ``deadline`` (monotonic) allow."""
        with self._lock:
            self._auth_failed = False
        self._scraped(self._mono())
        self._refresh_clusters(deadline)
        # lists first: they tell which jobs exist and which changed, which orders the status fetches
        self._wait(self._start_job_lists(deadline), deadline)
        self._wait(self._start_status_fetches(deadline) + self._start_history_reads(deadline), deadline)

    def pace(self) -> tuple[list[Future[None]], float | None]:
        """Between scrapes: start the next call of each budget when its pace (the budget's rate)
        and its tokens allow, in priority order. Returns the calls started and when to look again
        (monotonic time), or None when there is nothing left to do until the next scrape, or no
        scrape came for a while."""
        now = self._mono()
        if not self._paced or self._scraped_at is None or now - self._scraped_at > self._pace_for():
            return [], None
        futures: list[Future[None]] = []
        looks: list[float] = []
        budgets: tuple[tuple[Policy, Callable[[], Work | None]], ...] = (
            ("job_status", self._next_status_work),
            ("common", self._next_common_work),
        )
        for policy, next_work in budgets:
            bucket = self._budgets.bucket(self._identity, policy)
            while (work := next_work()) is not None:
                due = self._paced_at.get(policy, now)
                if now < due:
                    looks.append(due)
                    break
                if not bucket.try_acquire():
                    looks.append(bucket.next_token_at())
                    break
                key, call, args = work
                if not self._claim(key):
                    bucket.refund()
                    continue
                # the next call one pace later, catching up at most a second of lateness
                self._paced_at[policy] = max(due + bucket.spacing(), now - 1.0)
                deadline = now + self.collection.read_timeout
                futures.append(self._executor.submit(self._run_claimed, key, call, *args, deadline, True))
        return futures, min(looks, default=None)

    def _scraped(self, now: float) -> None:
        """A scrape started: note it, for the pace of the calls until the next one. The usual
        time between scrapes is the mean of the last few, so that one pause (or two Prometheus
        servers scraping in turn) does not throw the pace off."""
        if self._scraped_at is not None:
            self._intervals.append(max(0.0, now - self._scraped_at))
            self._interval = sum(self._intervals) / len(self._intervals)
        self._scraped_at = now
        with self._lock:
            self._status_tried = set()

    def _pace_for(self) -> float:
        """How long after a scrape calls go on: until two scrapes were missed."""
        return max(PACE_AT_LEAST_SECONDS, 2.0 * self._interval)

    def _share(self, policy: Policy) -> int:
        """The calls ``policy``'s budget allows until the next scrape, when they are paced (0
        when only the scrapes spend the budget)."""
        if not self._paced:
            return 0
        rate = self._budgets.bucket(self._identity, policy).rate_per_second
        return int(rate * min(WINDOW_SECONDS, self._interval))

    def _spend(self, bucket: TokenBucket, deadline: float, paid: bool) -> float | None:
        """The read timeout of a call about to be sent, its token taken (by the caller when
        ``paid``); None, the token back, when there is no token or no time left."""
        timeout = self._timeout(deadline)
        if timeout is None:
            if paid:
                bucket.refund()
            return None
        if not paid and not bucket.try_acquire():
            return None
        return timeout

    def _wait(self, futures: list[Future[None]], deadline: float) -> None:
        if futures:
            wait(futures, timeout=max(0.0, deadline - self._mono()))

    def view(self) -> TargetView:
        with self._lock:
            clusters = tuple(
                ClusterView(c.cluster, c.up, tuple(c.jobs.values()), c.list_error)
                for c in self._clusters.values()
            )
            up = None if self._clusters_ok is None else (self._clusters_ok and not self._auth_failed)
            error = self._error
        remaining = {p: self._budgets.bucket(self._identity, p).available() for p in POLICIES}
        return TargetView(
            self.target.name, self.target.project_id, self.target.region, up, clusters, error, remaining
        )

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # --- helpers -----------------------------------------------------------------------------

    def _bucket(self, endpoint: Endpoint) -> TokenBucket:
        """The budget ``endpoint``'s calls draw from."""
        return self._budgets.for_endpoint(self._identity, endpoint)

    def _timeout(self, deadline: float) -> float | None:
        """Read timeout for a request started now, or None when there is no time left."""
        left = deadline - self._mono()
        if left < MIN_REQUEST_SECONDS:
            return None
        return min(self.collection.read_timeout, left)

    def _call_failed(self, scope: str, error: CdmError, bucket: TokenBucket | None) -> None:
        # a 429 pauses the bucket of the API that sent it (IAM's limits are not CDM's budgets)
        if isinstance(error, RateLimited) and bucket is not None and error.endpoint != "iam_token":
            bucket.throttled()
        if isinstance(error, AuthError):
            with self._lock:
                self._auth_failed = True
                self.authenticated = False
        self.failures.failed(scope, error)

    def _call_worked(self, scope: str | None) -> None:
        """A call worked; ``scope`` ends a failure there (None for per-job calls, where one job's
        success says nothing of another's failure and would only make the log flap)."""
        with self._lock:
            self.authenticated = True
        if scope is not None:
            self.failures.recovered(scope)

    # --- 1. clusters -------------------------------------------------------------------------

    def _refresh_clusters(self, deadline: float) -> None:
        now = self._mono()
        due = (
            self._clusters_at is None
            or not self._clusters_ok
            or now - self._clusters_at >= self.collection.discovery_interval
        )
        if not due:
            return
        bucket = self._bucket("list_clusters")
        timeout = self._timeout(deadline)
        if timeout is None or not bucket.try_acquire():
            return
        try:
            clusters = self.client.list_clusters(timeout=timeout)
        except CdmError as error:
            self._call_failed("list_clusters", error, bucket)
            with self._lock:
                self._clusters_ok = False  # a 429 too: the list did not work
                self._error = str(error)
            return
        self._call_worked("list_clusters")
        selected = {c.id: c for c in clusters if self.target.cluster_selected(c.id, c.name)}
        with self._lock:
            gone = set(self._clusters) - set(selected)
            for cluster_id in gone:
                del self._clusters[cluster_id]
            for cluster_id, cluster in selected.items():
                state = self._clusters.get(cluster_id)
                if state is None:
                    self._clusters[cluster_id] = ClusterState(cluster)
                else:
                    state.cluster = cluster
            self._clusters_at = now
            self._clusters_ok = True
            self._error = None
        for cluster_id in gone:
            self.failures.forget(_list_scope(cluster_id))

    # --- 2. job lists ------------------------------------------------------------------------

    def _lists_due(self, since: float = float("inf")) -> list[str]:
        """Clusters whose job list is under way, or due and not read since ``since`` (a list at
        most once per scrape interval), and not being read right now: lists under way first,
        then the one read longest ago, so that no cluster waits behind the others for good."""
        now = self._mono()
        with self._lock:
            due = [
                (c.listing is None, c.listed_at if c.listed_at is not None else float("-inf"), cid)
                for cid, c in self._clusters.items()
                if (
                    c.listing is not None
                    or c.listed_at is None
                    or (now - c.listed_at >= self.collection.job_list_interval and c.listed_at < since)
                )
                and ("list", cid, "") not in self._inflight
            ]
        return [cid for _, _, cid in sorted(due)]

    def _start_job_lists(self, deadline: float) -> list[Future[None]]:
        futures = []
        for cluster_id in self._lists_due():
            key = ("list", cluster_id, "")
            if self._claim(key):
                futures.append(
                    self._executor.submit(self._run_claimed, key, self._list_jobs, cluster_id, deadline)
                )
        return futures

    def _list_jobs(self, cluster_id: str, deadline: float, paid: bool = False) -> None:
        with self._lock:
            state = self._clusters.get(cluster_id)
            if state is None:
                return
            cursor = state.listing or ListingCursor()
            state.listing = cursor
        types = self.target.jobs.types
        bucket = self._bucket("list_jobs")
        while cursor.type_index < len(types):
            timeout = self._spend(bucket, deadline, paid)
            paid = False  # the caller paid for the first page at most
            if timeout is None:
                return  # resume at the next collection
            paging = cursor.paging
            try:
                page = self.client.list_jobs_page(
                    cluster_id, types[cursor.type_index], paging.page_no, paging.page_size, timeout=timeout
                )
                paging.accept(page)  # a PagingError fails this list like any other error
            except CdmError as error:
                self._call_failed(_list_scope(cluster_id), error, bucket)
                with self._lock:
                    state.up = False  # a 429 too: the list did not work
                    state.list_error = str(error)
                    if not isinstance(error, RateLimited):  # throttled: resume where it stopped
                        state.listing = None  # start over next time: pages may have shifted
                        # retried at the list interval like a success, so a broken cluster cannot
                        # spend the shared budget the healthy ones need
                        state.listed_at = self._mono()
                return
            self._call_worked(None)  # the list's failure ends only once the whole list is read
            for entry in page.jobs:
                if self.target.jobs.matches(entry.name):
                    # first one wins: a job can shift onto the next page while we page
                    cursor.jobs.setdefault(entry.name, entry)
            if paging.done:
                cursor.type_index += 1
                cursor.paging = JobListPaging()
        self._apply_listing(state, cursor)
        self.failures.recovered(_list_scope(cluster_id))

    def _apply_listing(self, state: ClusterState, cursor: ListingCursor) -> None:
        with self._lock:
            old = state.jobs
            state.jobs = {
                name: replace(old[name], summary=summary)
                if name in old
                else JobState(cluster_id=state.cluster.id, summary=summary)
                for name, summary in cursor.jobs.items()
            }
            state.listing = None
            state.listed_at = self._mono()
            state.up = True
            state.list_error = None
            self._status_plan_stale = True  # jobs came, went or changed

    # --- 3. job status -----------------------------------------------------------------------

    def _start_status_fetches(self, deadline: float) -> list[Future[None]]:
        """Plan the scrape interval's status fetches and make those the scrape should: all of
        them when the budget has them now; else, when the pacer spreads them over the interval,
        only the urgent ones (running jobs never fetched: a new run, or the start)."""
        slots = int(self._bucket("job_status").available())
        planned = self._plan_statuses(slots)
        futures = []
        if self._paced and planned > slots:
            with self._lock:
                urgent = [
                    ("status", j.cluster_id, j.name)
                    for c in self._clusters.values()
                    for j in c.jobs.values()
                    if j.active and j.refreshed_at is None
                ]
            for key in urgent[:slots]:
                if self._claim(key):
                    fetch = self._executor.submit(
                        self._run_claimed, key, self._fetch_status, *key[1:], deadline
                    )
                    futures.append(fetch)
            return futures
        while slots > 0 and (work := self._next_status_work()) is not None:
            key, call, args = work
            if self._claim(key):
                slots -= 1
                futures.append(self._executor.submit(self._run_claimed, key, call, *args, deadline))
        return futures

    def _plan_statuses(self, slots: int) -> int:
        """Plan the status fetches of this scrape interval (:func:`interval_plan`) among the
        jobs not fetched since it began, ``slots`` of them possibly at once; how many."""
        with self._lock:
            jobs = [
                j
                for c in self._clusters.values()
                for j in c.jobs.values()
                if (j.cluster_id, j.name) not in self._status_tried
            ]
        calls = max(slots, self._share("job_status"))
        if self._paced:
            first, last = interval_plan(jobs, calls)
        else:  # only scrapes call: no end of the interval to wait for
            first, last = status_fetch_order(jobs, calls), []
        with self._lock:
            self._status_first = deque((j.cluster_id, j.name) for j in first)
            self._status_last = deque((j.cluster_id, j.name) for j in last)
            self._status_plan_stale = False
        return len(first) + len(last)

    def _next_status_work(self) -> Work | None:
        """The next job of the plan not yet tried in this scrape interval: from the first part,
        until only the time for the last part (the running jobs) is left before the next scrape."""
        if self._status_plan_stale:
            self._plan_statuses(0)
        with self._lock:
            for plan in (self._status_first, self._status_last):
                while plan and not self._worth_fetching(*plan[0]):
                    plan.popleft()
            if self._status_last and (not self._status_first or self._time_for_the_last()):
                plan = self._status_last
            elif self._status_first:
                plan = self._status_first
            else:
                return None
            cluster_id, job_name = plan[0]
            return ("status", cluster_id, job_name), self._fetch_status, (cluster_id, job_name)

    def _worth_fetching(self, cluster_id: str, job_name: str) -> bool:
        """Not tried in this scrape interval, not being fetched, still there (under the lock)."""
        return (
            (cluster_id, job_name) not in self._status_tried
            and ("status", cluster_id, job_name) not in self._inflight
            and self._job(cluster_id, job_name) is not None
        )

    def _time_for_the_last(self) -> bool:
        """Is it time to fetch the end of the plan, so that it is done just before the next
        scrape? (Called under the lock.)"""
        if self._scraped_at is None or not self._intervals:
            return True
        next_scrape = self._scraped_at + self._interval
        spacing = self._budgets.bucket(self._identity, "job_status").spacing()
        needed = len(self._status_last) * spacing + LAST_CALLS_SECONDS
        return next_scrape - self._mono() <= needed

    def _fetch_status(self, cluster_id: str, job_name: str, deadline: float, paid: bool = False) -> None:
        with self._lock:
            self._status_tried.add((cluster_id, job_name))  # once per scrape interval, even if it fails
        bucket = self._bucket("job_status")
        timeout = self._spend(bucket, deadline, paid)
        if timeout is None:
            return
        with self._lock:
            job = self._job(cluster_id, job_name)
        if job is None:
            bucket.refund()
            return
        fetched_key = job.summary.change_key  # the entry this fetch answers for
        try:
            runs = self.client.job_status(cluster_id, job_name, timeout=timeout)
        except NotFound as error:
            # deleted since the list was read: the next list drops it; until then keep what we know
            self._call_failed("job_status", error, bucket)
            with self._lock:
                cluster = self._clusters.get(cluster_id)
                if cluster is not None:
                    cluster.listed_at = None
            return
        except CdmError as error:
            self._call_failed("job_status", error, bucket)
            return
        self._call_worked(None)
        run = latest(runs)
        refreshed_at = self._wall()
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                return
            self._store(replace(job, latest=run, refreshed_at=refreshed_at, fetched_key=fetched_key), job)

    def _store(self, new: JobState, old: JobState) -> None:
        """Record a fetched run, deriving last success and whether history must be read."""
        run, previous = new.latest, old.latest
        if run is not None:
            new = new.with_successes([run])
            new = replace(new, history_wanted=new.history_wanted or missed_a_run(previous, run))
            if run.status in FAILED_STATUSES and (
                previous is None
                or previous.submission_id != run.submission_id
                or previous.status != run.status
            ):
                self._log_failed_run(new.cluster_id, run)
        cluster = self._clusters.get(new.cluster_id)
        if cluster is not None and new.name in cluster.jobs:
            cluster.jobs[new.name] = new

    def _log_failed_run(self, cluster_id: str, run: Submission) -> None:
        log.warning(
            "job run failed",
            extra={
                "target": self.target.name,
                "cluster_id": cluster_id,
                "job_name": run.job_name,
                "submission_id": run.submission_id,
                "error_summary": run.error_summary,
                "error_details": run.error_details,
            },
        )

    # --- 4. run history (last success) ---------------------------------------------------------

    def _start_history_reads(self, deadline: float) -> list[Future[None]]:
        slots = int(self._bucket("submissions").available())
        futures = []
        for job in self._history_due()[: max(0, slots)]:
            key = ("history", job.cluster_id, job.name)
            if self._claim(key):
                futures.append(
                    self._executor.submit(
                        self._run_claimed, key, self._read_history, job.cluster_id, job.name, deadline
                    )
                )
        return futures

    def _read_history(self, cluster_id: str, job_name: str, deadline: float, paid: bool = False) -> None:
        bucket = self._bucket("submissions")
        timeout = self._spend(bucket, deadline, paid)
        if timeout is None:
            return
        started = self._mono()
        try:
            runs = self.client.submissions(cluster_id, job_name, timeout=timeout)
        except CdmError as error:
            self._call_failed("submissions", error, bucket)
            with self._lock:
                job = self._job(cluster_id, job_name)
                if job is not None:
                    self._clusters[cluster_id].jobs[job_name] = replace(job, history_at=started)
            return
        self._call_worked(None)
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                return
            self._clusters[cluster_id].jobs[job_name] = replace(
                job.with_successes(runs), history_wanted=False, history_at=started
            )

    def _history_due(self, since: float = float("inf")) -> list[JobState]:
        """Jobs whose run history is wanted and may be read again (and was not read since
        ``since``: at most once per scrape interval), longest unread first."""
        now = self._mono()
        with self._lock:
            wanted = [
                j
                for c in self._clusters.values()
                for j in c.jobs.values()
                if j.history_wanted
                and (
                    j.history_at is None
                    or (now - j.history_at >= self.collection.history_interval and j.history_at < since)
                )
                and ("history", j.cluster_id, j.name) not in self._inflight
            ]
        return sorted(wanted, key=lambda j: j.history_at or float("-inf"))

    def _next_common_work(self) -> Work | None:
        """The next call of the common budget: a job list under way or due, else a history read;
        none that was made since the scrape began."""
        since = self._scraped_at if self._scraped_at is not None else float("inf")
        lists = self._lists_due(since)
        if lists:
            return ("list", lists[0], ""), self._list_jobs, (lists[0],)
        history = self._history_due(since)
        if history:
            job = history[0]
            return ("history", job.cluster_id, job.name), self._read_history, (job.cluster_id, job.name)
        return None

    # --- bookkeeping ---------------------------------------------------------------------------

    def _job(self, cluster_id: str, job_name: str) -> JobState | None:
        cluster = self._clusters.get(cluster_id)
        return cluster.jobs.get(job_name) if cluster is not None else None

    def _claim(self, key: WorkKey) -> bool:
        """Mark work as in flight; False when the same work is still running from a past scrape."""
        with self._lock:
            if key in self._inflight:
                return False
            self._inflight.add(key)
            return True

    def _run_claimed(self, key: WorkKey, work: Callable[..., None], *args: object) -> None:
        try:
            work(*args)
        except Exception:  # a bug must not kill the worker or leave the key claimed forever
            log.exception("internal error while polling", extra={"target": self.target.name, "work": key[0]})
        finally:
            with self._lock:
                self._inflight.discard(key)


def _list_scope(cluster_id: str) -> str:
    """The failure scope of one cluster's job list."""
    return f"list_jobs@{cluster_id}"
