"""Decides what to fetch from one target within the API budget and the scrape deadline.

Each collection (design.md section 4):

1. reads the cluster list when it is older than ``discovery_interval`` (or the last read failed);
2. reads each cluster's job list, every job type, page by page, when it is older than
   ``job_list_interval``; a list that the budget cuts short resumes at the next collection;
3. fetches ``/status`` for BOOTING/RUNNING jobs first, then jobs whose list entry changed since
   their last fetch, then the oldest-refreshed rest, as far as the budget and the deadline allow;
4. reads the run history of a job only when a run may have ended unseen (for last success);
5. keeps everything else as last known, and forgets jobs and clusters that no longer exist.

Requests that outlive the deadline finish in the background and land in the state for the next
scrape. A 429 is not retried: the bucket pauses and the job keeps its last known state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Protocol

from cdm_exporter.api.errors import AuthError, CdmError, NotFound, RateLimited
from cdm_exporter.api.models import FAILED_STATUSES, Cluster, JobPage, Submission, latest
from cdm_exporter.config import CollectionConfig, TargetConfig
from cdm_exporter.polling.budget import POLICIES, Budgets, TokenBucket
from cdm_exporter.polling.failure_log import FailureLog
from cdm_exporter.polling.state import ClusterState, ClusterView, JobState, ListingCursor, TargetView

log = logging.getLogger(__name__)

PAGE_SIZE = 100
#: a request is not started with less time than this left before the deadline
MIN_REQUEST_SECONDS = 0.05
#: the job list is never trusted beyond this many pages per type (a server repeating pages)
MAX_PAGES = 1000


class ApiClient(Protocol):
    """The calls the poller needs (``cdm_exporter.client.CdmClient``)."""

    def list_clusters(self, *, timeout: float | None = None) -> list[Cluster]: ...

    def list_jobs_page(
        self,
        cluster_id: str,
        job_type: str,
        page_no: int,
        page_size: int = PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> JobPage: ...

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
    ) -> None:
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
        self._inflight: set[tuple[str, str, str]] = set()  # (what, cluster_id, job_name)
        self._closed = False  # replaced by a reload or stopped: start nothing more
        self.failures = FailureLog(log, target.name)
        self.authenticated: bool | None = None  # did the last authenticated call work

    # --- public ------------------------------------------------------------------------------

    def refresh(self, deadline: float) -> None:
        """Bring the state up to date as far as budget and ``deadline`` (monotonic) allow."""
        if self._closed:
            return
        with self._lock:
            self._auth_failed = False
        self._refresh_clusters(deadline)
        # lists first: they tell which jobs exist and which changed, which orders the status fetches
        self._wait(self._start_job_lists(deadline), deadline)
        self._wait(self._start_status_fetches(deadline) + self._start_history_reads(deadline), deadline)

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
        remaining = {p: self._bucket(p).available() for p in POLICIES}
        return TargetView(
            self.target.name, self.target.project_id, self.target.region, up, clusters, error, remaining
        )

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def adopt(self, old: TargetPoller) -> None:
        """Take over what ``old`` knows (same target, other collection settings: a reload).

        Cluster records are copied, not shared: work ``old`` still has in flight lands in its own
        copies, and a job list it was reading page by page starts over here.
        """
        with old._lock:
            clusters = {cid: replace(c, jobs=dict(c.jobs), listing=None) for cid, c in old._clusters.items()}
            known = (old._clusters_at, old._clusters_ok, old._error, old.authenticated)
        with self._lock:
            self._clusters = clusters
            self._clusters_at, self._clusters_ok, self._error, self.authenticated = known
        self.failures = old.failures

    def _submit(
        self, key: tuple[str, str, str], work: Callable[..., None], *args: object
    ) -> Future[None] | None:
        """Run claimed ``work`` on the executor; None (and the claim dropped) once closed."""
        try:
            return self._executor.submit(self._run_claimed, key, work, *args)
        except RuntimeError:  # shut down by close() meanwhile (a reload replaced this poller)
            with self._lock:
                self._inflight.discard(key)
            return None

    # --- helpers -----------------------------------------------------------------------------

    def _bucket(self, policy: str) -> TokenBucket:
        return self._budgets.bucket(self._identity, policy)

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
        bucket = self._bucket("common")
        timeout = self._timeout(deadline)
        if timeout is None or not bucket.try_acquire():
            return
        try:
            clusters = self.client.list_clusters(timeout=timeout)
        except CdmError as error:
            self._call_failed("list_clusters", error, bucket)
            with self._lock:
                self._clusters_ok = False  # a 429 too (design.md section 6): the list did not work
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

    def _start_job_lists(self, deadline: float) -> list[Future[None]]:
        now = self._mono()
        futures = []
        with self._lock:
            due = [
                cid
                for cid, c in self._clusters.items()
                if c.listing is not None
                or c.listed_at is None
                or now - c.listed_at >= self.collection.job_list_interval
            ]
        for cluster_id in due:
            key = ("list", cluster_id, "")
            if self._claim(key) and (future := self._submit(key, self._list_jobs, cluster_id, deadline)):
                futures.append(future)
        return futures

    def _list_jobs(self, cluster_id: str, deadline: float) -> None:
        with self._lock:
            state = self._clusters.get(cluster_id)
            if state is None:
                return
            cursor = state.listing or ListingCursor()
            state.listing = cursor
        types = self.target.jobs.types
        bucket = self._bucket("common")
        while cursor.type_index < len(types):
            timeout = self._timeout(deadline)
            if timeout is None or not bucket.try_acquire():
                return  # resume at the next collection
            job_type = types[cursor.type_index]
            try:
                page = self.client.list_jobs_page(
                    cluster_id, job_type, cursor.page_no, PAGE_SIZE, timeout=timeout
                )
            except CdmError as error:
                self._call_failed(_list_scope(cluster_id), error, bucket)
                with self._lock:
                    state.up = False  # a 429 too (design.md section 6)
                    state.list_error = str(error)
                    if not isinstance(error, RateLimited):  # throttled: resume where it stopped
                        state.listing = None  # start over next time: pages may have shifted
                        # retried at the list interval like a success, so a broken cluster cannot
                        # spend the shared budget the healthy ones need
                        state.listed_at = self._mono()
                return
            self._call_worked(_list_scope(cluster_id))
            for entry in page.jobs:
                if self.target.jobs.matches(entry.name):
                    typed = entry if entry.job_type is not None else replace(entry, job_type=job_type)
                    cursor.jobs.setdefault(entry.name, typed)
            if _last_page(page, cursor.page_no) or cursor.page_no >= MAX_PAGES:
                cursor.type_index += 1
                cursor.page_no = 1
            else:
                cursor.page_no += 1
        self._apply_listing(state, cursor)

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

    # --- 3. job status -----------------------------------------------------------------------

    def _status_order(self) -> tuple[list[JobState], list[JobState], list[JobState]]:
        """Running, changed and other jobs, each oldest-refreshed first (design.md section 4)."""
        with self._lock:
            jobs = [j for c in self._clusters.values() for j in c.jobs.values()]

        def age(job: JobState) -> float:
            return job.refreshed_at if job.refreshed_at is not None else float("-inf")

        active = sorted((j for j in jobs if j.active), key=age)
        changed = sorted((j for j in jobs if not j.active and j.changed_since_fetch), key=age)
        rest = sorted((j for j in jobs if not j.active and not j.changed_since_fetch), key=age)
        return active, changed, rest

    def _start_status_fetches(self, deadline: float) -> list[Future[None]]:
        bucket = self._bucket("job_status")
        slots = int(bucket.available())
        active, changed, rest = self._status_order()
        # Running jobs come first, but when they alone would take every call, a quarter is kept
        # for jobs whose list entry changed: a run that ended must be read (its error, counters,
        # last success) even while more jobs run than the budget can refresh.
        reserve = min(len(changed), max(1, slots // 4)) if len(active) >= slots else 0
        first = active[: max(0, slots - reserve)]
        ordered = first + changed + active[len(first) :] + rest
        futures = []
        for job in ordered:
            if slots <= 0:
                break
            key = ("status", job.cluster_id, job.name)
            if not self._claim(key):
                continue
            slots -= 1
            future = self._submit(key, self._fetch_status, job.cluster_id, job.name, deadline)
            if future is None:
                break
            futures.append(future)
        return futures

    def _fetch_status(self, cluster_id: str, job_name: str, deadline: float) -> None:
        bucket = self._bucket("job_status")
        timeout = self._timeout(deadline)
        if timeout is None or not bucket.try_acquire():
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
            if run.status == "SUCCEEDED":
                end = run.last_update_date or run.execute_date or run.creation_date
                if end is not None:
                    new = replace(new, last_success=max(end, new.last_success or 0.0))
            new = replace(new, history_wanted=new.history_wanted or _missed_a_run(previous, run))
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
        now = self._mono()
        bucket = self._bucket("common")
        slots = int(bucket.available())
        with self._lock:
            wanted = [
                j
                for c in self._clusters.values()
                for j in c.jobs.values()
                if j.history_wanted
                and (j.history_at is None or now - j.history_at >= self.collection.history_interval)
            ]
        futures = []
        for job in sorted(wanted, key=lambda j: j.history_at or float("-inf"))[: max(0, slots)]:
            key = ("history", job.cluster_id, job.name)
            if self._claim(key) and (
                future := self._submit(key, self._read_history, job.cluster_id, job.name, deadline)
            ):
                futures.append(future)
        return futures

    def _read_history(self, cluster_id: str, job_name: str, deadline: float) -> None:
        bucket = self._bucket("common")
        timeout = self._timeout(deadline)
        if timeout is None or not bucket.try_acquire():
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
        ends = [
            r.last_update_date or r.execute_date or r.creation_date for r in runs if r.status == "SUCCEEDED"
        ]
        found = max((e for e in ends if e is not None), default=None)
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                return
            best = max((v for v in (job.last_success, found) if v is not None), default=None)
            self._clusters[cluster_id].jobs[job_name] = replace(
                job, last_success=best, history_wanted=False, history_at=started
            )

    # --- bookkeeping ---------------------------------------------------------------------------

    def _job(self, cluster_id: str, job_name: str) -> JobState | None:
        cluster = self._clusters.get(cluster_id)
        return cluster.jobs.get(job_name) if cluster is not None else None

    def _claim(self, key: tuple[str, str, str]) -> bool:
        """Mark work as in flight; False when the same work is still running from a past scrape."""
        with self._lock:
            if key in self._inflight:
                return False
            self._inflight.add(key)
            return True

    def _run_claimed(self, key: tuple[str, str, str], work: Callable[..., None], *args: object) -> None:
        try:
            work(*args)
        except Exception:  # a bug must not kill the worker or leave the key claimed forever
            log.exception("internal error while polling", extra={"target": self.target.name, "work": key[0]})
        finally:
            with self._lock:
                self._inflight.discard(key)


def _last_page(page: JobPage, page_no: int) -> bool:
    if len(page.jobs) + page.dropped < PAGE_SIZE:
        return True
    return page.total is not None and page_no * PAGE_SIZE >= page.total


def _list_scope(cluster_id: str) -> str:
    """The failure scope of one cluster's job list."""
    return f"list_jobs@{cluster_id}"


def _missed_a_run(previous: Submission | None, run: Submission) -> bool:
    """Could a run have finished between two observations without us seeing how?"""
    if run.status == "SUCCEEDED":
        return False  # this run itself tells the last success
    if previous is None:
        return run.status not in ("NEVER_EXECUTED", "NEW", None)
    if run.submission_id is None or previous.submission_id is None:
        return run.creation_date != previous.creation_date
    if run.submission_id == previous.submission_id:
        return False
    # a new run started: the previous one ended unseen unless we saw it end, and runs between
    # the two were never seen at all
    seen_end = previous.status not in ("BOOTING", "RUNNING", "PENDING")
    return run.submission_id > previous.submission_id + 1 or not seen_end


def iter_jobs(views: Iterable[TargetView]) -> Iterable[tuple[TargetView, ClusterView, JobState]]:
    for target in views:
        for cluster in target.clusters:
            for job in cluster.jobs:
                yield target, cluster, job
