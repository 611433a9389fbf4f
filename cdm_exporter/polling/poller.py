"""Decides what to fetch from one target within the API budget and the scrape deadline.

Each collection (docs/architecture.md, "Polling within the API budget"):

1. reads the cluster list when it is older than ``discovery_interval`` (or the last read failed);
2. reads each cluster's job list, every job type, page by page under the one paging rule
   (:mod:`cdm_exporter.api.paging`), when it is older than ``job_list_interval``; a list that
   the budget cuts short resumes at the next collection, one whose pages do not add up fails; a
   type the cluster refuses is skipped there and tried again hourly (``job_types``);
3. fetches ``/status`` for BOOTING/RUNNING jobs first, then jobs whose list entry changed since
   their last fetch, then the oldest-refreshed rest, as far as the budget and the deadline allow
   (:mod:`cdm_exporter.polling.schedule`);
4. reads the run history of a job only when a run may have ended unseen, for its last success
   and its run counts (``run_counts``), page by page until both are known (``history``): when
   a status read shows runs were skipped, or when the job list shows a run ended that no status
   read of the collection reached (the status budget goes to running jobs first);
5. keeps everything else as last known, and forgets jobs and clusters that no longer exist.

A reload that replaces a target's poller hands the new one what the old one knew of each job
(:meth:`TargetPoller.adopt`), so run counters go on rather than start over.

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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from functools import partial
from typing import Protocol

from cdm_exporter.api.endpoints import POLICIES, Endpoint, Policy
from cdm_exporter.api.errors import AuthError, CdmError, NotFound, RateLimited
from cdm_exporter.api.models import (
    FAILED_STATUSES,
    Cluster,
    JobPage,
    Submission,
    SubmissionPage,
)
from cdm_exporter.api.paging import JOB_PAGE_SIZE, JobListPaging
from cdm_exporter.api.subjobs import current_run
from cdm_exporter.config import CollectionConfig, TargetConfig
from cdm_exporter.polling.auth_hint import auth_hint
from cdm_exporter.polling.budget import WINDOW_SECONDS, Budgets, TokenBucket
from cdm_exporter.polling.failure_log import FailureLog
from cdm_exporter.polling.history import HistoryScan
from cdm_exporter.polling.job_types import refuses_type, skipped
from cdm_exporter.polling.persistence import RecordItem, RecordKey
from cdm_exporter.polling.records import Clocks, Record, RecordError
from cdm_exporter.polling.run_counts import tally_after_status
from cdm_exporter.polling.schedule import interval_plan, missed_a_run, status_fetch_order, unread_run
from cdm_exporter.polling.state import (
    AuthFailure,
    ClusterState,
    ClusterView,
    JobState,
    ListingCursor,
    TargetState,
    TargetView,
    cluster_from_record,
    cluster_record,
    job_from_record,
    job_record,
    target_from_record,
    target_record,
)

log = logging.getLogger(__name__)

#: a request is not started with less time than this left before the deadline
MIN_REQUEST_SECONDS = 0.05
#: the calls whose 401/403 means the credential itself was refused (not one job's URL)
CREDENTIAL_ENDPOINTS: frozenset[Endpoint] = frozenset({"iam_token", "list_clusters"})
#: how many intervals between scrapes the pace is averaged over
PACE_SAMPLES = 4
#: calls go on between scrapes for two scrape intervals after the last scrape, at least this long
PACE_AT_LEAST_SECONDS = 60.0
#: the running jobs, fetched last in a scrape interval at the budget's pace
#: (:meth:`TokenBucket.spacing`), are to be done this long before the next scrape, beyond the
#: time a status call takes (:data:`STATUS_SECONDS_GUESS` until one was timed)
LAST_CALL_MARGIN_SECONDS = 0.1
STATUS_SECONDS_GUESS = 0.3
#: how much each timed status call moves the running mean of their durations
STATUS_SECONDS_WEIGHT = 0.2
#: a job list due this soon after a scrape (at most half a scrape interval) is read at the
#: scrape: Prometheus' scrapes, and the lists they start, come a little early or late, and a
#: list read just after a scrape waits a whole interval to be shown
LIST_DUE_SLACK_SECONDS = 1.0

WorkKey = tuple[str, str, str]  # (what, cluster_id, job_name)
#: what a pacer returns: the calls it started, and when to look again (None: at the next scrape)
Paced = tuple[list[Future[None]], float | None]
Work = tuple[WorkKey, Callable[..., None], tuple[object, ...]]
#: work, and between which times (monotonic) the pacer is to start it: not before the first, and
#: by the second even if that is sooner than the budget's pace (as far as its tokens allow)
Timed = tuple[Work, float, float]
#: the times of work the pacer starts when its budget's pace allows
ANY_TIME = float("-inf")
AT_ITS_PACE = float("inf")


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

    def submissions_page(
        self, cluster_id: str, job_name: str, page_no: int = 1, *, timeout: float | None = None
    ) -> SubmissionPage: ...

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
        one_shot: bool = False,
        read_history: bool | None = None,
        paced: bool = False,
    ) -> None:
        """``one_shot``: for ``check``, whose report shows what failed and does not show the last
        success: no run history is read (unless ``read_history``), and failed calls and runs are
        logged at debug level. ``paced``: :meth:`pace` is called between scrapes, which then make
        only the urgent calls; else only the scrapes call the API, each spending what the budget
        holds."""
        self.target = target
        self.collection = collection
        self.client = client
        self._identity = identity
        self._budgets = budgets
        self._wall = wall
        self._mono = mono
        self._one_shot = one_shot
        self._reads_history = not one_shot if read_history is None else read_history
        self._clocks = Clocks(wall, mono)
        self._where = (target.project_id, target.region, target.endpoint)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=collection.concurrency, thread_name_prefix=f"cdm-{target.name[:12]}"
        )
        self._clusters: dict[str, ClusterState] = {}
        self._clusters_at: float | None = None
        self._clusters_ok: bool | None = None
        self._auth_error: AuthError | None = None  # a 401/403 in the last collection
        self._refused_at: float | None = None  # monotonic time the credential itself was refused
        self._error: str | None = None
        self._error_kind: str | None = None
        self._throttled_at: float | None = None  # wall time of the last 429 from CDM
        self._inflight: set[WorkKey] = set()
        self._closed = False  # replaced by a reload or stopped: start nothing more
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
        self._status_seconds = STATUS_SECONDS_GUESS  # running mean of a status call's duration
        self._last_begun = False  # the last part of the plan is under way in this scrape interval
        # a scrape is reading its lists and choosing its status reads: the pacer leaves it the tokens
        self._scrape_deciding = False
        self.failures = FailureLog(log, target.name)
        self.authenticated: bool | None = None  # did the last authenticated call work

    # --- public ------------------------------------------------------------------------------

    def refresh(self, deadline: float) -> None:
        """Bring the state up to date as far as budget and ``deadline`` (monotonic) allow.

        A credential the API refused (a 401/403 on the cluster list or the IAM token request) is
        not sent again before ``discovery_interval`` has passed: CDM locks an access key for
        5 minutes after 5 failed signatures in a row, and a retry cannot fix a wrong key.
        """
        if self._closed:
            return
        self._scraped(self._mono())
        try:
            futures = self._start_scrape_calls(deadline)
        finally:
            with self._lock:
                self._scrape_deciding = False
        if futures is None:
            return
        self._wait(futures, deadline)
        if self._reads_history:
            self._want_histories_of_unread_ends()

    def _start_scrape_calls(self, deadline: float) -> list[Future[None]] | None:
        """The cluster and job lists a scrape reads, then its status and history reads started;
        None when the credential is refused."""
        with self._lock:
            refused_at = self._refused_at
            if refused_at is not None and self._mono() - refused_at < self.collection.discovery_interval:
                return None  # the last collection's state (down, with its error) stands
            self._refused_at = None
            self._auth_error = None
        self._refresh_clusters(deadline)
        if self._credential_refused():
            return None
        # lists first: they tell which jobs exist and which changed, which orders the status fetches
        self._wait(self._start_job_lists(deadline), deadline)
        # the histories due before the status fetches: one those flag is read at the next collection,
        # whichever finishes first (a collection reads what the last one found missing)
        histories = self._histories_due() if self._reads_history else []
        return self._start_status_fetches(deadline) + self._start_history_reads(histories, deadline)

    def pace(self) -> Paced:
        """Between scrapes: start the next call of each budget when its pace (the budget's rate)
        and its tokens allow, in priority order. Returns the calls started and when to look again
        (monotonic time), or None when there is nothing left to do until the next scrape, or no
        scrape came for a while."""
        now = self._mono()
        if not self._paced or self._scraped_at is None or now - self._scraped_at > self._pace_for():
            return [], None
        with self._lock:
            if self._closed or self._refused_at is not None:  # a refused credential waits, see refresh()
                return [], None
            scrape_deciding = self._scrape_deciding
        futures: list[Future[None]] = []
        looks: list[float] = []
        budgets: tuple[tuple[Policy, Callable[[], Timed | None]], ...] = (
            ("job_status", self._next_status_work),
            ("common", self._next_common_work),
        )
        for policy, next_work in budgets:
            bucket = self._budgets.bucket(self._identity, policy)
            if policy == "job_status" and scrape_deciding:
                # its runs not read yet come first: a token the pacer took would leave one unread
                # a whole interval (the plan's last part took the tokens until the scrape)
                looks.append(now + bucket.spacing())
                continue
            while (timed := next_work()) is not None:
                work, not_before, by = timed
                due = min(max(self._paced_at.get(policy, now), not_before), by)
                if now < due:
                    looks.append(due)
                    break
                if not bucket.try_acquire():
                    # a window shared with other replicas may refuse what this process expected
                    token_at = bucket.next_token_at()
                    looks.append(token_at if token_at > now else now + bucket.spacing())
                    break
                key, call, args = work
                if not self._claim(key):
                    bucket.refund()
                    continue
                # the next call one pace later, catching up at most a second of lateness
                self._paced_at[policy] = max(due + bucket.spacing(), now - 1.0)
                deadline = now + self.collection.read_timeout
                future = self._submit(key, call, *args, deadline, True)
                if future is None:  # closed meanwhile: the call was never sent
                    bucket.refund()
                    return futures, None
                futures.append(future)
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
            self._last_begun = False
            self._scrape_deciding = True

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
            self._unspent(bucket, paid)
            return None
        if not paid and not bucket.try_acquire():
            return None
        return timeout

    @staticmethod
    def _unspent(bucket: TokenBucket, paid: bool) -> None:
        """A call paid for in advance (``paid``) will not be sent: its token goes back."""
        if paid:
            bucket.refund()

    def _wait(self, futures: list[Future[None]], deadline: float) -> None:
        if futures:
            wait(futures, timeout=max(0.0, deadline - self._mono()))

    def view(self) -> TargetView:
        with self._lock:
            clusters = tuple(
                ClusterView(
                    c.cluster,
                    c.up,
                    tuple(c.jobs.values()),
                    c.list_error,
                    tuple(sorted(c.unsupported)),
                    c.list_error_kind,
                )
                for c in self._clusters.values()
            )
            auth_error = self._auth_error
            up = None if self._clusters_ok is None else (self._clusters_ok and auth_error is None)
            error = str(auth_error) if auth_error is not None else self._error
            error_kind = auth_error.kind if auth_error is not None else self._error_kind
            throttled_at = self._throttled_at
        remaining = {p: self._budgets.bucket(self._identity, p).available() for p in POLICIES}
        hint = auth_hint(self.target, auth_error) if auth_error is not None else None
        return TargetView(
            self.target.name,
            self.target.project_id,
            self.target.region,
            up,
            clusters,
            error,
            remaining,
            error_kind=error_kind,
            throttled_at=throttled_at,
            hint=hint,
        )

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def adopt(self, old: TargetPoller) -> None:
        """Take over what ``old`` knows (same target, other collection settings: a reload).

        Cluster records are copied, not shared: work ``old`` still has in flight lands in its own
        copies, and a job list it was reading page by page starts over here. A refused credential
        stays paused (the same credential: a reload must not resend it early).
        """
        with old._lock:
            clusters = {
                cid: replace(c, jobs=dict(c.jobs), listing=None, unsupported=dict(c.unsupported))
                for cid, c in old._clusters.items()
            }
            known = (
                old._clusters_at,
                old._clusters_ok,
                old._auth_error,
                old._refused_at,
                old._error,
                old._error_kind,
                old._throttled_at,
                old.authenticated,
            )
        with self._lock:
            self._clusters = clusters
            (
                self._clusters_at,
                self._clusters_ok,
                self._auth_error,
                self._refused_at,
                self._error,
                self._error_kind,
                self._throttled_at,
                self.authenticated,
            ) = known
        self.failures = old.failures

    def _submit(self, key: WorkKey, work: Callable[..., None], *args: object) -> Future[None] | None:
        """Run claimed ``work`` on the executor; None (and the claim dropped) once closed."""
        try:
            return self._executor.submit(self._run_claimed, key, work, *args)
        except RuntimeError:  # shut down by close() meanwhile (a reload replaced this poller)
            with self._lock:
                self._inflight.discard(key)
            return None

    # --- stored state (cdm_exporter.polling.persistence) ---------------------------------------

    def records(self) -> list[RecordItem]:
        """What a state store keeps of this target: one record for the target, one per cluster
        and one per job, each with the object that tells whether it changed."""
        name, clocks = self.target.name, self._clocks
        with self._lock:
            auth_error = None if self._auth_error is None else AuthFailure.of(self._auth_error)
            target = TargetState(
                self._where,
                self._clusters_at,
                self._clusters_ok,
                self._error,
                self._error_kind,
                self.authenticated,
                auth_error,
                self._refused_at,
                self._throttled_at,
            )
            clusters = [(cid, c.stored(), list(c.jobs.values())) for cid, c in self._clusters.items()]
        items: list[RecordItem] = [(("target", name), target, partial(target_record, target, clocks))]
        for cluster_id, cluster, jobs in clusters:
            items.append((("cluster", name, cluster_id), cluster, partial(cluster_record, cluster, clocks)))
            items += [
                (("job", name, cluster_id, job.name), job, partial(job_record, job, clocks)) for job in jobs
            ]
        return items

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> int:
        """Take over stored records of this target (at start, or a follower's copy of what the
        leader knows); ``complete``: they are all there is. A state stored for another project,
        region or endpoint under this target's name is not taken. Returns how many records could
        not be read: each costs only itself (what it held is fetched from the API again)."""
        unreadable = 0
        stored: TargetState | None = None
        if (record := records.get(("target", self.target.name))) is not None:
            try:
                stored = target_from_record(record, self._clocks)
            except RecordError:
                unreadable += 1
        if (stored is None and complete) or (stored is not None and stored.where != self._where):
            return unreadable
        clusters: dict[str, ClusterState | None] = {}
        jobs: dict[tuple[str, str], JobState | None] = {}
        for key, record in records.items():
            try:
                if key[0] == "cluster" and len(key) == 3:
                    clusters[key[2]] = None if record is None else cluster_from_record(record, self._clocks)
                elif key[0] == "job" and len(key) == 4:
                    job = None if record is None else job_from_record(record, self._clocks)
                    jobs[(key[2], key[3])] = None if job is None else replace(job, cluster_id=key[2])
            except RecordError:
                unreadable += 1
        with self._lock:
            known = {} if complete else self._clusters
            for cluster_id, cluster in clusters.items():
                current = known.get(cluster_id)
                if cluster is None:
                    known.pop(cluster_id, None)
                elif current is None:
                    known[cluster_id] = cluster
                else:  # the jobs stay: their records come on their own
                    current.cluster, current.up, current.listed_at = (
                        cluster.cluster,
                        cluster.up,
                        cluster.listed_at,
                    )
                    current.list_error, current.list_error_kind = cluster.list_error, cluster.list_error_kind
                    current.unsupported = cluster.unsupported
            for (cluster_id, job_name), job in jobs.items():
                if (state := known.get(cluster_id)) is None:
                    continue  # a job is exported with its cluster only
                if job is None:
                    state.jobs.pop(job_name, None)
                else:
                    state.jobs[job_name] = job
            self._clusters = known
            if stored is not None:
                self._clusters_at, self._clusters_ok = stored.clusters_at, stored.clusters_ok
                self._error, self._error_kind = stored.error, stored.error_kind
                self.authenticated = stored.authenticated
                self._auth_error = None if stored.auth_error is None else stored.auth_error.error()
                self._refused_at, self._throttled_at = stored.refused_at, stored.throttled_at
        return unreadable

    # --- helpers -----------------------------------------------------------------------------

    def _bucket(self, endpoint: Endpoint) -> TokenBucket:
        """The budget ``endpoint``'s calls draw from."""
        return self._budgets.for_endpoint(self._identity, endpoint)

    def _credential_refused(self) -> bool:
        with self._lock:
            return self._refused_at is not None

    def _timeout(self, deadline: float) -> float | None:
        """Read timeout for a request started now; None when there is no time left or the
        credential was refused (no request is sent with it until ``refresh`` allows again), or
        this poller was closed (a reload replaced it: work already running sends nothing more)."""
        if self._closed or self._credential_refused():
            return None
        left = deadline - self._mono()
        if left < MIN_REQUEST_SECONDS:
            return None
        return min(self.collection.read_timeout, left)

    def _call_failed(
        self,
        scope: str,
        error: CdmError,
        bucket: TokenBucket | None,
        *,
        message: str = "API call failed",
        level: int = logging.WARNING,
        **fields: object,
    ) -> None:
        # a 429 pauses the bucket of the API that sent it (IAM's limits are not CDM's budgets)
        if isinstance(error, RateLimited) and bucket is not None and error.endpoint != "iam_token":
            bucket.throttled()
            with self._lock:
                self._throttled_at = self._wall()
        if isinstance(error, AuthError):
            refused = error.endpoint in CREDENTIAL_ENDPOINTS
            with self._lock:
                self._auth_error = error
                self.authenticated = False
                # the next collection checks the credential with the cluster list before anything else
                self._clusters_ok = False
                if refused:
                    self._refused_at = self._mono()
                    for cluster in self._clusters.values():
                        # no job list can work with a refused credential; list again once it works
                        cluster.up, cluster.list_error, cluster.listed_at = False, str(error), None
            fields["hint"] = auth_hint(self.target, error)
            if refused:
                fields["retry_in_seconds"] = self.collection.discovery_interval
        level = logging.DEBUG if self._one_shot else level
        self.failures.failed(scope, error, message=message, level=level, **fields)

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
                self._error_kind = error.kind
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
            self._error_kind = None
        for cluster_id in gone:
            self.failures.forget(_list_scope(cluster_id))

    # --- 2. job lists ------------------------------------------------------------------------

    def _lists_due(self, since: float = float("inf"), slack: float = 0.0) -> list[str]:
        """Clusters whose job list is under way, or due (``slack`` seconds early) and not read
        since ``since`` (a list at most once per scrape interval), and not being read right now:
        lists under way first, then the one read longest ago, so that no cluster waits behind the
        others for good."""
        now = self._mono() + slack
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
        for cluster_id in self._lists_due(slack=min(LIST_DUE_SLACK_SECONDS, self._interval / 2)):
            key = ("list", cluster_id, "")
            if self._claim(key) and (future := self._submit(key, self._list_jobs, cluster_id, deadline)):
                futures.append(future)
        return futures

    def _list_jobs(self, cluster_id: str, deadline: float, paid: bool = False) -> None:
        bucket = self._bucket("list_jobs")
        with self._lock:
            state = self._clusters.get(cluster_id)
            if state is None:
                self._unspent(bucket, paid)
                return
            cursor = state.listing or ListingCursor()
            state.listing = cursor
        types = self.target.jobs.types
        while cursor.type_index < len(types):
            job_type = types[cursor.type_index]
            if skipped(job_type, state.unsupported, self._mono()):
                cursor.type_index += 1  # refused before: tried again only hourly
                continue
            timeout = self._spend(bucket, deadline, paid)
            paid = False  # the caller paid for the first page at most
            if timeout is None:
                return  # resume at the next collection
            paging = cursor.paging
            try:
                page = self.client.list_jobs_page(
                    cluster_id, job_type, paging.page_no, paging.page_size, timeout=timeout
                )
                paging.accept(page)  # a PagingError fails this list like any other error
            except CdmError as error:
                if refuses_type(state.cluster, error):
                    # the cluster may not know this type: settled once the other types are listed
                    cursor.refused[job_type] = error
                    cursor.type_index += 1
                    cursor.paging = JobListPaging()
                    continue
                self._list_failed(state, error, bucket)
                return
            self._call_worked(None)  # the list's failure ends only once the whole list is read
            for entry in page.jobs:
                if self.target.jobs.matches(entry.name):
                    # first one wins: a job can shift onto the next page while we page
                    typed = entry if entry.job_type is not None else replace(entry, job_type=job_type)
                    cursor.jobs.setdefault(entry.name, typed)
            if paging.done:
                cursor.listed.add(job_type)
                cursor.type_index += 1
                cursor.paging = JobListPaging()
        self._unspent(bucket, paid)  # every type left was skipped
        if cursor.refused and not cursor.listed:
            self._every_type_refused(state, next(iter(cursor.refused.values())))
            return
        self._settle_job_types(state, cursor)
        self._apply_listing(state, cursor)
        self.failures.recovered(_list_scope(cluster_id))

    def _list_failed(self, state: ClusterState, error: CdmError, bucket: TokenBucket) -> None:
        cluster_id = state.cluster.id
        status = state.cluster.status_name
        if status not in (None, "normal") and not isinstance(error, AuthError | RateLimited):
            # expected: a stopped (frozen, failed, ...) cluster cannot list its jobs, and
            # cdm_cluster_status already says why; no warning every list interval
            self._call_failed(
                _list_scope(cluster_id),
                error,
                bucket,
                message="job list unavailable: cluster not normal",
                level=logging.INFO,
                cluster_name=state.cluster.name,
                cluster_status=status,
            )
        else:
            self._call_failed(_list_scope(cluster_id), error, bucket)
        with self._lock:
            state.up = False  # a 429 too: the list did not work
            state.list_error = str(error)
            state.list_error_kind = error.kind
            if not isinstance(error, RateLimited):  # throttled: resume where it stopped
                state.listing = None  # start over next time: pages may have shifted
                # retried at the list interval like a success, so a broken cluster cannot
                # spend the shared budget the healthy ones need
                state.listed_at = self._mono()

    def _every_type_refused(self, state: ClusterState, error: CdmError) -> None:
        """No type could be listed: the cluster's list failed (it is down, not selective)."""
        self._call_failed(_list_scope(state.cluster.id), error, None)
        with self._lock:
            state.up = False
            state.list_error = str(error)
            state.listing = None
            state.listed_at = self._mono()

    def _settle_job_types(self, state: ClusterState, cursor: ListingCursor) -> None:
        """Remember the types the cluster refused while others listed fine (logged once each),
        and forget those it lists again."""
        now = self._mono()
        with self._lock:  # view() reads the set
            known = dict(state.unsupported)
            state.unsupported.update(dict.fromkeys(cursor.refused, now))
            for job_type in cursor.listed:
                state.unsupported.pop(job_type, None)
        for job_type, error in cursor.refused.items():
            if job_type not in known:
                log.warning(
                    "cluster does not list this job type; skipped, tried again hourly",
                    extra={
                        "target": self.target.name,
                        "cluster_id": state.cluster.id,
                        "job_type": job_type,
                        "status": error.status,
                        "code": error.code,
                        "error": error.message,
                    },
                )
        for job_type in cursor.listed & set(known):
            log.info(
                "cluster lists this job type again",
                extra={"target": self.target.name, "cluster_id": state.cluster.id, "job_type": job_type},
            )

    def _apply_listing(self, state: ClusterState, cursor: ListingCursor) -> None:
        cluster_id = state.cluster.id
        with self._lock:
            old = state.jobs
            state.jobs = {}
            for name, summary in cursor.jobs.items():
                if name in old:
                    state.jobs[name] = old[name].relisted(summary)
                else:
                    state.jobs[name] = JobState(cluster_id=cluster_id, summary=summary)
            state.listing = None
            state.listed_at = self._mono()
            state.up = True
            state.list_error = None
            state.list_error_kind = None
            self._status_plan_stale = True  # jobs came, went or changed

    # --- 3. job status -----------------------------------------------------------------------

    def _start_status_fetches(self, deadline: float) -> list[Future[None]]:
        """Plan the scrape interval's status fetches and make those the scrape should: all of
        them when the budget has them now; else, when the pacer spreads them over the interval,
        only the urgent ones (runs not read yet: new runs, or every run at the start), as far as
        the tokens go, but for jobs never read when they are too many for that to help."""
        slots = int(self._bucket("job_status").available())
        planned = self._plan_statuses(slots)
        futures = []
        if self._paced and planned > slots:
            with self._lock:
                urgent = [
                    (("status", j.cluster_id, j.name), j.refreshed_at is None)
                    for c in self._clusters.values()
                    for j in c.jobs.values()
                    if unread_run(j)
                ]
            if sum(never for _, never in urgent) > max(slots, self._share("job_status")):
                # Jobs never read, more than the budget holds now and than an interval's calls (a
                # start at scale): the pacer reads them, first and evenly. As many at once as there
                # are tokens would be a round ahead of the others and due again all together a
                # round later (p95 1.33x the ideal round in the minute after warm-up, 5,000 jobs).
                urgent = [(key, never) for key, never in urgent if not never]
            for key, _ in urgent[:slots]:
                if self._claim(key) and (
                    future := self._submit(key, self._fetch_new_run, *key[1:], deadline)
                ):
                    futures.append(future)
            return futures
        while slots > 0 and (timed := self._next_status_work()) is not None:
            (key, call, args), _, _ = timed  # at the scrape: now, whatever the pace would say
            if self._claim(key):
                slots -= 1
                future = self._submit(key, call, *args, deadline)
                if future is None:
                    break
                futures.append(future)
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

    def _next_status_work(self) -> Timed | None:
        """The next job of the plan not yet tried in this scrape interval, and when to fetch it:
        from the first part as the pace allows, while that leaves the last part (the running jobs)
        its time and its tokens; the last part from when it is to start (:meth:`_last_part_at`)."""
        if self._status_plan_stale:
            self._plan_statuses(0)
        now = self._mono()
        spacing = self._bucket("job_status").spacing()
        with self._lock:
            for plan in (self._status_first, self._status_last):
                while plan and not self._worth_fetching(*plan[0]):
                    plan.popleft()
            last_at = self._last_part_at(spacing) if self._status_last else float("inf")
            # The last part begins at the first call of the even pace within a spacing of its
            # time (a pause to wait for it would leave the rolling minute a call short), and once
            # begun goes on alone: a first-part call in between would put its end past the scrape.
            # Its calls are due by their own time, sooner than the pace if a call came late.
            if self._status_first and (
                not self._status_last or (not self._last_begun and now + spacing <= last_at)
            ):
                plan, not_before, by = self._status_first, ANY_TIME, AT_ITS_PACE
            elif self._status_last:
                waits = not (self._status_first or self._last_begun)  # nothing else to do until then
                by = last_at if last_at != ANY_TIME else AT_ITS_PACE  # (the interval is not known yet)
                plan, not_before = self._status_last, last_at if waits else ANY_TIME
                self._last_begun = self._last_begun or now >= min(not_before, by)
            else:
                return None
            cluster_id, job_name = plan[0]
            work: Work = ("status", cluster_id, job_name), self._fetch_status, (cluster_id, job_name)
            return work, not_before, by

    def _worth_fetching(self, cluster_id: str, job_name: str) -> bool:
        """Not tried in this scrape interval, not being fetched, still there (under the lock)."""
        return (
            (cluster_id, job_name) not in self._status_tried
            and ("status", cluster_id, job_name) not in self._inflight
            and self._job(cluster_id, job_name) is not None
        )

    def _last_part_at(self, spacing: float) -> float:
        """When to start the last part of the plan, one call per ``spacing``, for its last call
        to be answered just before the next scrape; ANY_TIME while the scrape interval is unknown.
        (Called under the lock.)"""
        if self._scraped_at is None or not self._intervals:
            return ANY_TIME
        next_scrape = self._scraped_at + self._interval
        lead = LAST_CALL_MARGIN_SECONDS + self._status_seconds
        return next_scrape - lead - (len(self._status_last) - 1) * spacing

    def _fetch_new_run(self, cluster_id: str, job_name: str, deadline: float) -> None:
        """At a scrape, a run not read yet. When the plan fetches the running jobs at the end of
        the interval, this read does not count as the job's fetch of the interval: it is fetched
        again with them, just before the next scrape."""
        self._fetch_status(cluster_id, job_name, deadline)
        with self._lock:
            if self._intervals and (cluster_id, job_name) in self._status_last:
                self._status_tried.discard((cluster_id, job_name))

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
        sent = self._mono()
        try:
            runs = self.client.job_status(cluster_id, job_name, timeout=timeout)
        except CdmError as error:
            self._call_failed("job_status", error, bucket)
            with self._lock:
                cluster = self._clusters.get(cluster_id)
                job = self._job(cluster_id, job_name)
                if cluster is not None and job is not None:
                    cluster.jobs[job_name] = replace(job, status_error=(error.kind, str(error)))
                if cluster is not None and isinstance(error, NotFound):
                    # deleted since the list was read: the next list drops it; until then keep
                    # what we know
                    cluster.listed_at = None
            return
        took = self._mono() - sent
        self._call_worked(None)
        run = current_run(job_name, runs)  # an entire-DB parent's run is made from its sub-jobs'
        refreshed_at = self._wall()
        with self._lock:
            self._status_seconds += STATUS_SECONDS_WEIGHT * (took - self._status_seconds)
            job = self._job(cluster_id, job_name)
            if job is None:
                return
            fetched = replace(
                job, latest=run, refreshed_at=refreshed_at, fetched_key=fetched_key, status_error=None
            )
            self._store(fetched, job)

    def _store(self, new: JobState, old: JobState) -> None:
        """Record a fetched run, deriving last success, run counts and whether to read history."""
        run, previous = new.latest, old.latest
        new = replace(new, tally=tally_after_status(new.tally, run, new.refreshed_at or self._wall()))
        if run is not None:
            new = new.with_ended_runs([run])
            unseen = missed_a_run(previous, run) or (
                new.tally is not None and new.tally.gap(run.submission_id)
            )
            new = replace(new, history_wanted=new.history_wanted or unseen)
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
        """One line per failed run with its summary; the error details (a Java stack trace of
        kilobytes) only at debug level, since ``check`` prints them whole."""
        where = {
            "target": self.target.name,
            "cluster_id": cluster_id,
            "job_name": run.job_name,
            "submission_id": run.submission_id,
        }
        level = logging.DEBUG if self._one_shot else logging.WARNING
        log.log(level, "job run failed", extra={**where, "error_summary": run.error_summary})
        if run.error_details:
            log.debug("job run error details", extra={**where, "error_details": run.error_details})

    # --- 4. run history (last success, run counts) ---------------------------------------------

    def _want_histories_of_unread_ends(self) -> None:
        """Jobs whose list entry tells of a run that ended, which this collection's status reads did
        not reach, want their history: the run is counted from it (a ``common`` call) rather than
        waiting for a status call, which running jobs take first."""
        with self._lock:
            for cluster in self._clusters.values():
                for name, job in cluster.jobs.items():
                    if not job.history_wanted and job.ended_unread:
                        cluster.jobs[name] = replace(job, history_wanted=True)

    def _histories_due(self, since: float = float("inf")) -> list[JobState]:
        """Jobs whose run history is to be read now (and, but for a scan the budget cut short,
        not read since ``since``: at most once per scrape interval), not being read right now, the
        one read longest ago first."""
        now = self._mono()
        with self._lock:
            wanted = [
                j
                for c in self._clusters.values()
                for j in c.jobs.values()
                if j.history_wanted
                and (
                    j.history_scan is not None  # a scan the budget cut short goes on
                    or j.history_at is None
                    or (now - j.history_at >= self.collection.history_interval and j.history_at < since)
                )
                and ("history", j.cluster_id, j.name) not in self._inflight
            ]
        return sorted(wanted, key=lambda j: j.history_at or float("-inf"))

    def _start_history_reads(self, due: list[JobState], deadline: float) -> list[Future[None]]:
        slots = int(self._bucket("submissions").available())
        futures = []
        for job in due[: max(0, slots)]:
            key = ("history", job.cluster_id, job.name)
            if self._claim(key) and (
                future := self._submit(key, self._read_history, job.cluster_id, job.name, deadline)
            ):
                futures.append(future)
        return futures

    def _read_history(self, cluster_id: str, job_name: str, deadline: float, paid: bool = False) -> None:
        """Read the history page by page until the last success and the runs that ended unseen
        are known (:class:`HistoryScan`); each page's ended runs count as soon as it is read."""
        bucket = self._bucket("submissions")
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                self._unspent(bucket, paid)
                return
            success_known = job.last_success is not None or job.history_read_at is not None
            scan = job.history_scan or HistoryScan.begin(
                job.latest, success_known=success_known, list_key=job.summary.change_key
            )
        started = self._mono()
        while not scan.done:
            timeout = self._spend(bucket, deadline, paid)
            paid = False  # the caller paid for the first page at most
            if timeout is None:
                self._store_history(cluster_id, job_name, scan, started)  # resumed next time
                return
            try:
                page = self.client.submissions_page(cluster_id, job_name, scan.page_no, timeout=timeout)
            except CdmError as error:
                self._call_failed("submissions", error, bucket)
                self._store_history(cluster_id, job_name, None, started)  # again at the interval
                return
            self._call_worked(None)
            after = self._store_history_page(cluster_id, job_name, scan, page)
            if after is None:
                return  # the job is gone
            scan = after
        self._store_history(cluster_id, job_name, scan, started)

    def _store_history_page(
        self, cluster_id: str, job_name: str, scan: HistoryScan, page: SubmissionPage
    ) -> HistoryScan | None:
        """Count the page's ended runs and take its successes and failures; the scan after it."""
        runs = [run for run in page.runs if run.job_name == job_name]  # not an entire-DB sub-job's
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                return None
            tally = job.tally
            scan = scan.read(page, job_name, tally.settled if tally is not None else None)
            new = job.with_ended_runs(runs)
            if tally is not None:
                new = replace(new, tally=tally.observe(runs))
            self._clusters[cluster_id].jobs[job_name] = new
        return scan

    def _store_history(
        self, cluster_id: str, job_name: str, scan: HistoryScan | None, started: float
    ) -> None:
        with self._lock:
            job = self._job(cluster_id, job_name)
            if job is None:
                return
            if scan is None:  # the read failed: keep what is known, try at the next interval
                new = replace(job, history_at=started, history_scan=None)
            elif not scan.done:  # cut short by the budget or the deadline: resumed next time
                new = replace(job, history_at=started, history_scan=scan)
            else:
                tally = job.tally.settle(scan.covered) if job.tally is not None else None
                newest = job.latest.submission_id if job.latest is not None else None
                new = replace(
                    job,
                    tally=tally,
                    # a run that ended unseen while the history was read is read about next time
                    history_wanted=tally is not None and tally.gap(newest),
                    history_at=started,
                    history_read_at=self._wall(),
                    history_key=scan.list_key,
                    history_scan=None,
                )
            self._clusters[cluster_id].jobs[job_name] = new

    def _next_common_work(self) -> Timed | None:
        """The next call of the common budget, as the pace allows: a job list under way or due,
        else a history read; none that was made since the scrape began."""
        since = self._scraped_at if self._scraped_at is not None else float("inf")
        lists = self._lists_due(since)
        if lists:
            return (("list", lists[0], ""), self._list_jobs, (lists[0],)), ANY_TIME, AT_ITS_PACE
        history = self._histories_due(since) if self._reads_history else []
        if history:
            job = history[0]
            work: Work = ("history", job.cluster_id, job.name), self._read_history, (job.cluster_id, job.name)
            return work, ANY_TIME, AT_ITS_PACE
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


def pace_each(pacers: Iterable[Callable[[], Paced]]) -> Paced:
    """Call each pacer; every call started, and the earliest time one of them looks again. A
    pacer closed meanwhile (a reload replaced its poller) is skipped."""
    started: list[Future[None]] = []
    looks: list[float] = []
    for pace in pacers:
        try:
            futures, look = pace()
        except RuntimeError:  # its executor was shut down
            continue
        started += futures
        if look is not None:
            looks.append(look)
    return started, min(looks, default=None)


def _list_scope(cluster_id: str) -> str:
    """The failure scope of one cluster's job list."""
    return f"list_jobs@{cluster_id}"
