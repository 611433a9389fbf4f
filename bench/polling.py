"""API calls, freshness, ended runs and start-up of the exporter against the simulator.

    python bench/polling.py [--sizes 100 1000 5000] [--intervals 10 15 30 60] [--minutes 10]
                            [--saturated-common] [--naive-minutes 0] [--quick]

For each size N (jobs in total, 500 per cluster) and scrape interval, a simulator with its real
rate limits (120 requests per rolling minute per user and policy) and ``--latency-ms`` of added
latency is scraped every interval for ``--minutes`` minutes by the exporter with its default
configuration (100 calls/min per policy, concurrency 8), each scrape being ``collect(10 s -
0.5 s)`` plus rendering the text format, as Prometheus with ``scrape_timeout: 10s`` does.

The world: unscheduled jobs (types 70/20/10 % NORMAL/BATCH/SCENARIO), each with one finished
run (10 % FAILED); then one job in 20 on a run of 3-6 h ("long", running throughout) and one
in 50 scheduled every 5 minutes with runs of about 2.5 minutes, 10 % failing ("churn": runs
that start and end during the bench, their start times spread over the period). About 6 % of
the jobs run at any time.

Time is a shared :class:`bench.common.FlowingClock`: it runs at real speed (latency and the
deadline are real) and jumps over the idle part of each interval, so ten simulated minutes take
about a minute of real time. The simulator's rate limiter, its jobs and the exporter's budgets
and refresh timestamps all read it, so every figure but the scrape duration is in simulated time.

Reported per size and interval:

- calls: job_status and common calls per minute (mean, and the most in any rolling minute from
  the simulator's own count), the simulator's 429s;
- freshness: the age of RUNNING jobs' data at scrape time (``clock -
  cdm_job_refresh_timestamp_seconds``, pooled over every scrape after warm-up) beside the ideal
  round-robin round ``running / (job_status budget per second)``; how many scrapes made no
  status call;
- ended runs: for each churn run that ended (from warm-up to two minutes before the end), the
  delay from its end in the simulator to the first scrape whose exposition shows it
  SUCCEEDED/FAILED (p50/p95; "missed": never shown);
- start-up: from the first scrape to every job listed, and to every running job's progress
  fetched once;
- scrape duration (real seconds) beside the deadline.

``--saturated-common`` adds a run per size with ``job_list_interval: 0`` (every cluster's list
on every scrape: more common work than budget) to show the common policy's use.
``--naive-minutes`` adds the naive poller (every job's ``/status`` on every scrape) at 15 s.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from common import FlowingClock, fmt_seconds, machine_facts, percentile, sim_config, table
from prometheus_client import CollectorRegistry, generate_latest

from cdm_exporter.api.auth import TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.endpoints import POLICIES
from cdm_exporter.api.errors import CdmError
from cdm_exporter.api.models import JOB_TYPES, Cluster, JobSummary, latest
from cdm_exporter.api.paging import JobListPaging
from cdm_exporter.config import CollectionConfig
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import JobState
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Simulator, SimulatorSettings
from cdm_exporter.simulator.generate import job_type_for

SCRAPE_TIMEOUT = 10.0  # what Prometheus announces; the exporter answers 0.5 s before it
JOBS_PER_CLUSTER = 500
LONG_EVERY = 20  # one job in 20 runs for hours
CHURN_EVERY = 50  # one job in 50 runs every CHURN_PERIOD for about half of it
CHURN_PERIOD = 300.0
NAIVE_CONCURRENCY = 8
TERMINAL = ("SUCCEEDED", "FAILED", "FAILURE_ON_SUBMIT")
STARTUP_SECONDS = 61.0  # a new budget's whole minute at once: freshness is measured after it
ENDED_SETTLE_SECONDS = 120.0  # runs that ended this close to the end of a run are not counted


@dataclass
class World:
    sim: Simulator
    churn: list[tuple[str, str]]  # (cluster id, job name) of the jobs whose runs start and end
    jobs: int


@dataclass
class Scrape:
    at: float  # simulated seconds since the first scrape, when the exposition was rendered
    status_calls: int
    running: int  # RUNNING jobs in the simulator
    ages: list[float]  # ages of the RUNNING jobs' data the exporter fetched at least once
    never: int  # RUNNING jobs (as the exporter shows them) never fetched
    listed: int  # jobs the exporter knows
    shown: dict[tuple[str, str], tuple[str | None, float | None]]  # churn job -> (status, start)


@dataclass
class Result:
    jobs: int
    mode: str
    interval: float
    minutes: float
    budget: int
    max_per_minute: dict[str, int] = field(default_factory=dict)
    mean_per_minute: dict[str, float] = field(default_factory=dict)
    throttled: int = 0
    durations: list[float] = field(default_factory=list)
    over_deadline: int = 0
    scrapes: list[Scrape] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)  # delays from a run's end to its exposition
    missed: int = 0  # runs that ended and were never shown ended

    @property
    def listed_at(self) -> float:
        return next((s.at for s in self.scrapes if s.listed >= self.jobs), math.nan)

    @property
    def warmup(self) -> float:
        """When every running job had been fetched once (NaN: never)."""
        return next((s.at for s in self.scrapes if s.ages and s.never == 0), math.nan)

    def measured(self) -> list[Scrape]:
        """Scrapes in the steady state: from warm-up on (every running job fetched once) and
        after the first minute and a second, when the start-up's burst has left the window."""
        since = max(STARTUP_SECONDS, 0.0 if math.isnan(self.warmup) else self.warmup)
        return [s for s in self.scrapes if s.at >= since]

    @property
    def ages(self) -> list[float]:
        return [age for s in self.measured() for age in s.ages]

    @property
    def ideal(self) -> float:
        """The round-robin round: running jobs / status calls per second."""
        running = [s.running for s in self.measured()]
        return (sum(running) / len(running)) / (self.budget / 60.0) if running else math.nan


# --- the world ------------------------------------------------------------------------------------


def make_world(jobs: int, seed: int, latency_ms: float, clock: FlowingClock) -> World:
    """A started simulator holding ``jobs`` jobs, ~6 % of them running (see the module doc)."""
    clusters = max(1, math.ceil(jobs / JOBS_PER_CLUSTER))
    sim = Simulator(
        SimulatorSettings(
            clusters=clusters, jobs=0, seed=seed, latency_ms=latency_ms, rate_limit=120, clock=clock
        )
    )
    world = sim.world
    rnd = random.Random(seed)
    ids = [c.id for c in world.clusters()]
    for cluster_id in ids:
        world.set_cluster_status(cluster_id, "200")  # generated clusters from the third on are not
    finished: list[tuple[str, str]] = []
    churn: list[tuple[str, str]] = []
    for i in range(jobs):
        cluster_id = ids[i % clusters]
        name = f"job_{i:05d}"
        if i % CHURN_EVERY == CHURN_EVERY // 2:
            churn.append((cluster_id, name))
            continue  # added below, at spread times
        world.add_job(cluster_id, name, job_type_for(i // clusters))
        outcome = "FAILED" if rnd.random() < 0.1 else "SUCCEEDED"
        world.start_run(cluster_id, name, outcome=outcome, duration=rnd.uniform(30.0, 300.0))
        finished.append((cluster_id, name))
    for cluster_id, name in churn:  # each one's schedule starts at another point of the period
        world.add_job(
            cluster_id,
            name,
            scheduled=True,
            period=CHURN_PERIOD,
            duration=CHURN_PERIOD / 2,
            fail_probability=0.1,
        )
        clock.advance(CHURN_PERIOD / len(churn))
    clock.advance(600.0)  # every first run of the unscheduled jobs is over
    for i, (cluster_id, name) in enumerate(finished):
        if i % LONG_EVERY == 0:
            world.start_run(cluster_id, name, outcome="SUCCEEDED", duration=rnd.uniform(3 * 3600, 6 * 3600))
    clock.advance(30.0)  # past their boot phase: RUNNING
    sim.start()
    return World(sim, churn, jobs)


def running_in(sim: Simulator) -> int:
    return sim.world.status_counts().get("RUNNING", 0)


def policy_stats(sim: Simulator, minutes: float) -> tuple[dict[str, int], dict[str, float]]:
    peak: dict[str, int] = dict.fromkeys(POLICIES, 0)
    for (policy, _user), n in sim.stats.max_per_minute.items():
        peak[policy] = max(peak.get(policy, 0), n)
    total: dict[str, int] = dict.fromkeys(POLICIES, 0)
    for (policy, _user, _minute), n in sim.stats.per_minute.items():
        total[policy] = total.get(policy, 0) + n
    return peak, {p: total[p] / minutes for p in POLICIES}


def steady_per_minute(sim: Simulator, since: float, until: float) -> dict[str, float]:
    """Calls per minute per policy between two wall times (whole minutes of the simulator's count)."""
    first, last = math.ceil(since / 60.0), math.floor(until / 60.0)
    total: dict[str, int] = dict.fromkeys(POLICIES, 0)
    for (policy, _user, minute), n in sim.stats.per_minute.items():
        if first <= minute < last:
            total[policy] = total.get(policy, 0) + n
    minutes = max(1, last - first)
    return {p: total[p] / minutes for p in POLICIES}


# --- budgeted: the exporter ----------------------------------------------------------------------


def shown_start(job: JobState) -> float | None:
    """The start of the run the exposition shows (cdm_job_execute_timestamp_seconds)."""
    run = job.current_run
    if run is not None:
        return run.execute_date or run.creation_date
    return job.summary.execute_start_date


def ended_run_delays(world: World, result: Result, start: float) -> None:
    """For every churn run that ended while measured, the delay to the first scrape showing it."""
    measured = result.measured()
    if not measured:
        return
    since, until = start + measured[0].at, start + result.scrapes[-1].at
    for key in world.churn:
        for run in world.sim.world.history(*key).runs:
            if run.end is None or not since <= run.end <= until - ENDED_SETTLE_SECONDS:
                continue
            seen = next(
                (
                    s.at
                    for s in measured
                    if start + s.at >= run.end
                    and s.shown[key][0] in TERMINAL
                    and s.shown[key][1] is not None
                    and abs(s.shown[key][1] - run.start) < 1.0  # type: ignore[operator]
                ),
                None,
            )
            if seen is None:
                result.missed += 1
            else:
                result.ended.append(start + seen - run.end)


def pace_until(exporter: Exporter, clock: FlowingClock, until: float) -> None:
    """Let time pass until ``until`` as between scrapes: the exporter's pacer (what its thread
    does in real time) starts its calls as tokens come, and the clock jumps from one to the next."""
    while True:
        if not hasattr(exporter, "pace"):  # a commit from before the pacer: nothing between scrapes
            break
        futures, look = exporter.pace()
        wait(futures, timeout=60.0)
        if look is None or look >= until:
            break
        clock.advance_to(look)
    clock.advance_to(until)


def seen_at(
    snapshot: Snapshot, now: float, since: float, status_calls: int, running: int, churn: set[tuple[str, str]]
) -> Scrape:
    """What a scrape rendered at ``now`` (clock time; ``since``: the first scrape's) showed: the
    RUNNING jobs' ages, the jobs listed, the churn jobs' runs."""
    ages: list[float] = []
    never = listed = 0
    shown: dict[tuple[str, str], tuple[str | None, float | None]] = {}
    for target in snapshot.targets:
        for cluster in target.clusters:
            for job in cluster.jobs:
                listed += 1
                key = (cluster.cluster.id, job.name)
                if key in churn:
                    shown[key] = (job.status, shown_start(job))
                if job.status != "RUNNING":
                    continue
                if job.refreshed_at is None:
                    never += 1
                else:
                    ages.append(now - job.refreshed_at)
    return Scrape(now - since, status_calls, running, ages, never, listed, shown)


@contextlib.contextmanager
def pacing_meanwhile(exporter: Exporter, clock: FlowingClock) -> Iterator[threading.Event]:
    """During a scrape the exporter's pacer thread goes on in real time (the clock does not jump
    then): a thread here does what that one does until the scrape is over, woken by the event it
    yields as the exporter wakes its own when a collection ends. Its calls are answered before
    the clock jumps again."""
    wake = threading.Event()
    if not hasattr(exporter, "pace"):  # a commit from before the pacer
        yield wake
        return
    done = threading.Event()
    started: list[Future[None]] = []

    def loop() -> None:
        while True:
            wake.clear()  # before the check: a stop that comes meanwhile is not missed
            if done.is_set():
                return
            futures, look = exporter.pace()
            started.extend(futures)
            wake.wait(None if look is None else max(0.01, look - clock()))

    thread = threading.Thread(target=loop, name="bench-pacer", daemon=True)
    thread.start()
    try:
        yield wake
    finally:
        done.set()
        wake.set()
        thread.join()
        wait(started, timeout=60.0)  # answered before the clock jumps, as pace_until's own


def run_budgeted(
    jobs: int,
    minutes: float,
    seed: int,
    latency_ms: float,
    interval: float,
    collection: CollectionConfig,
    mode: str = "exporter",
) -> Result:
    clock = FlowingClock()
    world = make_world(jobs, seed, latency_ms, clock)
    sim = world.sim
    timeout = SCRAPE_TIMEOUT - collection.scrape_timeout_offset
    try:
        exporter = Exporter(sim_config(sim, collection), wall=clock, mono=clock, pacing="caller")
    except TypeError:  # a commit from before the pacer
        exporter = Exporter(sim_config(sim, collection), wall=clock, mono=clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CdmCollector(exporter.snapshot))
    scrapes = max(1, round(minutes * 60 / interval))
    start = clock()
    result = Result(jobs, mode, interval, scrapes * interval / 60, collection.budget_per_minute.job_status)
    churn = set(world.churn)
    calls = sim.stats.count("job_status")
    try:
        for i in range(scrapes):
            pace_until(exporter, clock, start + i * interval)
            began = time.perf_counter()
            with pacing_meanwhile(exporter, clock) as wake:
                exporter.collect(timeout)
                wake.set()
                snapshot = exporter.snapshot()  # just before rendering: no read that ends later
                generate_latest(registry)
                now = clock()
            elapsed = time.perf_counter() - began
            result.durations.append(elapsed)
            result.over_deadline += elapsed > timeout
            status_calls, calls = sim.stats.count("job_status") - calls, sim.stats.count("job_status")
            # status calls since the last scrape: between scrapes and during this one
            result.scrapes.append(seen_at(snapshot, now, start, status_calls, running_in(sim), churn))
        pace_until(exporter, clock, start + scrapes * interval)
    finally:
        exporter.close()
        sim.stop()
    result.max_per_minute, _ = policy_stats(sim, result.minutes)
    # the mean from the second minute on: the first spends a whole minute's budget at once
    result.mean_per_minute = steady_per_minute(sim, start + 60.0, start + scrapes * interval)
    result.throttled = sim.stats.throttled
    ended_run_delays(world, result, start)
    return result


# --- naive: every job's status on every scrape ---------------------------------------------------


class NaivePoller:
    """What an exporter without a budget does: every job's ``/status`` on every scrape."""

    def __init__(self, sim: Simulator, wall: Callable[[], float]) -> None:
        settings = sim.settings
        self.client = CdmClient(
            endpoint=sim.url,
            project_id=settings.project_id,
            auth=TokenAuth(settings.token),
            pool_size=NAIVE_CONCURRENCY,
        )
        self.wall = wall
        self.pool = ThreadPoolExecutor(max_workers=NAIVE_CONCURRENCY, thread_name_prefix="naive")
        self.clusters: list[Cluster] = []
        self.lists: dict[str, list[JobSummary]] = {}  # last list that worked, per cluster
        self.fetched: dict[tuple[str, str], tuple[str | None, float]] = {}  # (status, refreshed at)

    def collect(self, timeout: float) -> float:
        """One scrape; returns its duration (real seconds, at most about ``timeout``)."""
        began = time.monotonic()
        deadline = began + timeout

        def left() -> float:
            return deadline - time.monotonic()

        with contextlib.suppress(CdmError):  # else keep the last cluster list
            self.clusters = self.client.list_clusters(timeout=left())
        lists = {c.id: self.pool.submit(self._list_jobs, c.id, deadline) for c in self.clusters}
        wait(lists.values(), timeout=max(0.0, left()))
        for cluster_id, future in lists.items():
            if future.done() and future.exception() is None:
                self.lists[cluster_id] = future.result()
        fetches: list[Future[None]] = [
            self.pool.submit(self._fetch, cluster_id, job.name, deadline)
            for cluster_id, jobs in self.lists.items()
            for job in jobs
        ]
        wait(fetches, timeout=max(0.0, left()))
        elapsed = time.monotonic() - began
        for fetch in fetches:
            fetch.cancel()
        wait(fetches, timeout=30.0)  # the few in flight; not part of the scrape
        return elapsed

    def _list_jobs(self, cluster_id: str, deadline: float) -> list[JobSummary]:
        """Every job of the cluster, all pages of every type at once (the exporter's paging rule)."""
        jobs: dict[str, JobSummary] = {}
        for job_type in JOB_TYPES:
            paging = JobListPaging()
            while not paging.done:
                page = self.client.list_jobs_page(
                    cluster_id,
                    job_type,
                    paging.page_no,
                    paging.page_size,
                    timeout=deadline - time.monotonic(),
                )
                paging.accept(page)
                for job in page.jobs:
                    jobs.setdefault(job.name, job)
        return list(jobs.values())

    def _fetch(self, cluster_id: str, job_name: str, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left < 0.05:
            return
        try:
            runs = self.client.job_status(cluster_id, job_name, timeout=left)
        except CdmError:
            return
        run = latest(runs)
        self.fetched[(cluster_id, job_name)] = (run.status if run else None, self.wall())

    def running_ages(self, now: float) -> tuple[list[float], int, int]:
        """Ages of the data of jobs this poller believes RUNNING, how many were never fetched,
        and how many jobs it knows."""
        ages: list[float] = []
        never = listed = 0
        for cluster_id, jobs in self.lists.items():
            for job in jobs:
                listed += 1
                fetched = self.fetched.get((cluster_id, job.name))
                status = fetched[0] if fetched is not None else job.status
                if status != "RUNNING":
                    continue
                if fetched is None:
                    never += 1
                else:
                    ages.append(now - fetched[1])
        return ages, never, listed

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def run_naive(jobs: int, minutes: float, seed: int, latency_ms: float, interval: float) -> Result:
    clock = FlowingClock()
    world = make_world(jobs, seed, latency_ms, clock)
    sim = world.sim
    timeout = SCRAPE_TIMEOUT - CollectionConfig().scrape_timeout_offset
    naive = NaivePoller(sim, clock)
    scrapes = max(1, round(minutes * 60 / interval))
    start = clock()
    result = Result(
        jobs, "naive", interval, scrapes * interval / 60, CollectionConfig().budget_per_minute.job_status
    )
    try:
        for i in range(scrapes):
            clock.advance_to(start + i * interval)
            calls = sim.stats.count("job_status")
            elapsed = naive.collect(timeout)
            now = clock()
            result.durations.append(elapsed)
            result.over_deadline += elapsed >= timeout - 0.01
            ages, never, listed = naive.running_ages(now)
            calls = sim.stats.count("job_status") - calls
            result.scrapes.append(Scrape(now - start, calls, running_in(sim), ages, never, listed, {}))
        clock.advance_to(start + scrapes * interval)
    finally:
        naive.close()
        sim.stop()
    result.max_per_minute, result.mean_per_minute = policy_stats(sim, result.minutes)
    result.throttled = sim.stats.throttled
    return result


# --- report ---------------------------------------------------------------------------------------


def _ratio(value: float, ideal: float) -> str:
    return "-" if math.isnan(value) or math.isnan(ideal) or ideal <= 0 else f"{value / ideal:.2f}"


def report(results: list[Result], timeout: float) -> str:
    calls = table(
        [
            "jobs",
            "scrape interval",
            "mode",
            "minutes",
            "job_status mean/min",
            "job_status max in a rolling minute",
            "common mean/min",
            "common max in a rolling minute",
            "429s",
        ],
        [
            [
                f"{r.jobs:,}",
                f"{r.interval:g} s",
                r.mode,
                f"{r.minutes:g}",
                f"{r.mean_per_minute['job_status']:.1f}",
                str(r.max_per_minute["job_status"]),
                f"{r.mean_per_minute['common']:.1f}",
                str(r.max_per_minute["common"]),
                f"{r.throttled:,}",
            ]
            for r in results
        ],
        "rrlrrrrrr",
    )
    fresh = table(
        [
            "jobs",
            "scrape interval",
            "mode",
            "running (mean)",
            "ideal round",
            "age p50",
            "age p95",
            "p50 / ideal",
            "p95 / ideal",
            "scrapes without status call",
            "ended run shown after p50",
            "p95",
            "ended runs (missed)",
        ],
        [
            [
                f"{r.jobs:,}",
                f"{r.interval:g} s",
                r.mode,
                f"{sum(s.running for s in r.measured()) / max(1, len(r.measured())):.0f}",
                fmt_seconds(r.ideal),
                fmt_seconds(percentile(r.ages, 50)),
                fmt_seconds(percentile(r.ages, 95)),
                _ratio(percentile(r.ages, 50), r.ideal),
                _ratio(percentile(r.ages, 95), r.ideal),
                f"{sum(1 for s in r.measured() if s.status_calls == 0)}/{len(r.measured())}",
                fmt_seconds(percentile(r.ended, 50)),
                fmt_seconds(percentile(r.ended, 95)),
                f"{len(r.ended) + r.missed} ({r.missed})" if r.mode != "naive" else "-",
            ]
            for r in results
        ],
        "rrlrrrrrrrrrr",
    )
    startup = table(
        [
            "jobs",
            "scrape interval",
            "mode",
            "every job listed",
            "every running job fetched once",
            "scrape p50",
            "scrape p95",
            "scrape max",
            "deadline",
            "scrapes at the deadline",
        ],
        [
            [
                f"{r.jobs:,}",
                f"{r.interval:g} s",
                r.mode,
                fmt_seconds(r.listed_at) if not math.isnan(r.listed_at) else "never",
                fmt_seconds(r.warmup) if not math.isnan(r.warmup) else "never",
                fmt_seconds(percentile(r.durations, 50)),
                fmt_seconds(percentile(r.durations, 95)),
                fmt_seconds(max(r.durations)),
                fmt_seconds(timeout),
                f"{r.over_deadline}/{len(r.durations)}",
            ]
            for r in results
        ],
        "rrlrrrrrrr",
    )
    return calls + "\n\n" + fresh + "\n\n" + startup


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000], help="jobs in total")
    parser.add_argument("--intervals", type=float, nargs="+", default=[10.0, 15.0, 30.0, 60.0])
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per run")
    parser.add_argument(
        "--saturated-common", action="store_true", help="also list every cluster on every scrape (15 s)"
    )
    parser.add_argument("--naive-minutes", type=float, default=0.0, help="minutes of the naive poller (15 s)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added to every API answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 jobs at 15 s, 3 minutes")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's warnings")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.intervals, args.minutes = [100], [15.0], 3.0
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    timeout = SCRAPE_TIMEOUT - CollectionConfig().scrape_timeout_offset
    facts = machine_facts()  # before the run: the commit that ran, not one checked out since
    load_before = load()
    began = time.monotonic()
    results: list[Result] = []

    def timed(label: str, run: Callable[[], Result]) -> None:
        t0 = time.monotonic()
        results.append(run())
        print(f"# {label}: {time.monotonic() - t0:.0f} s real, {load()}", file=sys.stderr, flush=True)

    common = (args.minutes, args.seed, args.latency_ms)
    for jobs in args.sizes:
        for interval in args.intervals:
            every = functools.partial(run_budgeted, jobs, *common, interval, CollectionConfig())
            timed(f"{jobs} jobs every {interval:g} s", every)
        if args.saturated_common:
            saturated = CollectionConfig(job_list_interval=0.0)
            lists = functools.partial(run_budgeted, jobs, *common, 15.0, saturated, "lists every scrape")
            timed(f"{jobs} jobs, lists every scrape", lists)
        if args.naive_minutes > 0:
            naive = functools.partial(run_naive, jobs, args.naive_minutes, args.seed, args.latency_ms, 15.0)
            timed(f"{jobs} jobs naive", naive)
    print(
        f"Machine: {facts}; {load_before} before, {load()} after; API latency {args.latency_ms:g} ms; "
        f"simulator limit 120/min per user and policy; seed {args.seed}.\n"
    )
    print(report(results, timeout))
    print(f"\nTotal run time: {time.monotonic() - began:.0f} s real.")


if __name__ == "__main__":
    main()
