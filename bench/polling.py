"""API calls, freshness and scrape time of the exporter against the simulator, vs a naive poller.

    python bench/polling.py [--sizes 10 100 1000 5000] [--minutes 10] [--naive-minutes 3] [--quick]

For each size N (jobs in total, 500 per cluster, about 5 % of them running), a simulator with its
real rate limits (120 requests per rolling minute per user and policy) and ``--latency-ms`` of
added latency is scraped every 15 s, as Prometheus does, for ``--minutes`` minutes:

- ``budgeted``: ``cdm_exporter.exporter.Exporter`` (default configuration: 100/min per policy,
  concurrency 8), each scrape being ``collect(10 s - 0.5 s)`` plus rendering the text format;
- ``naive``: every job's ``/status`` on every scrape (``CdmClient`` directly: list clusters, list
  every cluster's jobs, then ``/status`` for each job with 8 in parallel), cut at the same deadline.

Time is a shared :class:`bench.common.FlowingClock`: it runs at real speed (the 100 ms latency
and the deadline are real) and jumps over the idle part of each 15 s interval, so ten simulated
minutes take well under a minute of real time when scrapes are short. The simulator's rate
limiter, its job lifecycle and the exporter's budget buckets and refresh timestamps all read it.

The world: unscheduled jobs (types 70/20/10 % NORMAL/BATCH/SCENARIO), each with one finished
run (10 % FAILED), then one job in 20 started on a run of 3-6 h, so that ~5 % run throughout.

Reported per size and mode: API calls per minute per policy (max over rolling minutes from
``sim.stats.max_per_minute``, and mean), the simulator's 429s; the age of RUNNING jobs' data at
scrape time (``clock - cdm_job_refresh_timestamp_seconds``, from the snapshot, pooled over every
scrape after warm-up, i.e. once every running job was fetched once) beside the floor
``running / (job_status budget per second)``; scrape duration p50/p95 (real seconds) beside the
deadline. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Callable
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
from cdm_exporter.polling.budget import TokenBucket
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Simulator, SimulatorSettings
from cdm_exporter.simulator.generate import job_type_for

SCRAPE_INTERVAL = 15.0
SCRAPE_TIMEOUT = 10.0  # what Prometheus announces; the exporter answers 0.5 s before it
JOBS_PER_CLUSTER = 500
RUNNING_EVERY = 20  # one job in 20 = 5 % running
NAIVE_CONCURRENCY = 8


@dataclass
class Result:
    jobs: int
    mode: str
    minutes: float
    running: int  # jobs running in the simulated world
    max_per_minute: dict[str, int]
    mean_per_minute: dict[str, float]
    throttled: int
    durations: list[float] = field(default_factory=list)
    over_deadline: int = 0
    floor: float = math.nan
    status_calls: list[int] = field(default_factory=list)  # job_status requests per scrape
    samples: list[tuple[float, list[float], int]] = field(default_factory=list)

    def measure(self, elapsed: float, ages: list[float], never: int) -> None:
        """One scrape: simulated seconds since the first scrape, the ages of the RUNNING jobs
        fetched at least once, and how many RUNNING jobs were never fetched."""
        self.samples.append((elapsed, ages, never))

    @property
    def warmup(self) -> float:
        """When every running job had been fetched once (NaN: never)."""
        return next((t for t, ages, never in self.samples if ages and never == 0), math.nan)

    def _measured(self) -> list[tuple[float, list[float], int]]:
        """Scrapes from warm-up on, or after the first minute when warm-up never came."""
        since = 60.0 if math.isnan(self.warmup) else self.warmup
        return [s for s in self.samples if s[0] >= since]

    @property
    def ages(self) -> list[float]:
        return [age for _, ages, _ in self._measured() for age in ages]

    @property
    def unknown(self) -> list[int]:
        return [never for _, _, never in self._measured()]


# --- the world ------------------------------------------------------------------------------------


def make_world(jobs: int, seed: int, latency_ms: float, clock: FlowingClock) -> tuple[Simulator, int]:
    """A started simulator holding ``jobs`` jobs of which ~5 % run for hours; returns (sim, running)."""
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
    names: list[tuple[str, str]] = []
    for i in range(jobs):
        cluster_id = ids[i % clusters]
        name = f"job_{i:05d}"
        world.add_job(cluster_id, name, job_type_for(i // clusters))
        outcome = "FAILED" if rnd.random() < 0.1 else "SUCCEEDED"
        world.start_run(cluster_id, name, outcome=outcome, duration=rnd.uniform(30.0, 300.0))
        names.append((cluster_id, name))
    clock.advance(600.0)  # every first run is over
    running = 0
    for i, (cluster_id, name) in enumerate(names):
        if i % RUNNING_EVERY == 0:
            world.start_run(cluster_id, name, outcome="SUCCEEDED", duration=rnd.uniform(3 * 3600, 6 * 3600))
            running += 1
    clock.advance(30.0)  # past their boot phase: RUNNING
    sim.start()
    return sim, running


def policy_stats(sim: Simulator, minutes: float) -> tuple[dict[str, int], dict[str, float]]:
    peak: dict[str, int] = dict.fromkeys(POLICIES, 0)
    for (policy, _user), n in sim.stats.max_per_minute.items():
        peak[policy] = max(peak.get(policy, 0), n)
    total: dict[str, int] = dict.fromkeys(POLICIES, 0)
    for (policy, _user, _minute), n in sim.stats.per_minute.items():
        total[policy] = total.get(policy, 0) + n
    return peak, {p: total[p] / minutes for p in POLICIES}


# --- budgeted: the exporter ----------------------------------------------------------------------


def run_budgeted(jobs: int, minutes: float, seed: int, latency_ms: float) -> Result:
    clock = FlowingClock()
    sim, running = make_world(jobs, seed, latency_ms, clock)
    collection = CollectionConfig()
    timeout = SCRAPE_TIMEOUT - collection.scrape_timeout_offset
    exporter = Exporter(sim_config(sim, collection), wall=clock, mono=clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CdmCollector(exporter.snapshot))
    scrapes = max(1, round(minutes * 60 / SCRAPE_INTERVAL))
    start = clock()
    result = Result(jobs, "budgeted", scrapes * SCRAPE_INTERVAL / 60, running, {}, {}, 0)
    result.floor = running / (collection.budget_per_minute.job_status / 60.0)
    try:
        for i in range(scrapes):
            clock.advance_to(start + i * SCRAPE_INTERVAL)
            calls = sim.stats.count("job_status")
            began = time.perf_counter()
            exporter.collect(timeout)
            generate_latest(registry)
            elapsed = time.perf_counter() - began
            now = clock()
            result.durations.append(elapsed)
            result.over_deadline += elapsed > timeout
            result.status_calls.append(sim.stats.count("job_status") - calls)
            ages: list[float] = []
            never = 0
            for target in exporter.snapshot().targets:
                for cluster in target.clusters:
                    for job in cluster.jobs:
                        if job.status != "RUNNING":
                            continue
                        if job.refreshed_at is None:
                            never += 1
                        else:
                            ages.append(now - job.refreshed_at)
            result.measure(now - start, ages, never)
        clock.advance_to(start + scrapes * SCRAPE_INTERVAL)
    finally:
        exporter.close()
        sim.stop()
    result.max_per_minute, result.mean_per_minute = policy_stats(sim, result.minutes)
    result.throttled = sim.stats.throttled
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

    def running_ages(self, now: float) -> tuple[list[float], int]:
        """Ages of the data of jobs this poller believes RUNNING, and how many were never fetched."""
        ages: list[float] = []
        never = 0
        for cluster_id, jobs in self.lists.items():
            for job in jobs:
                fetched = self.fetched.get((cluster_id, job.name))
                status = fetched[0] if fetched is not None else job.status
                if status != "RUNNING":
                    continue
                if fetched is None:
                    never += 1
                else:
                    ages.append(now - fetched[1])
        return ages, never

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def run_naive(jobs: int, minutes: float, seed: int, latency_ms: float) -> Result:
    clock = FlowingClock()
    sim, running = make_world(jobs, seed, latency_ms, clock)
    timeout = SCRAPE_TIMEOUT - CollectionConfig().scrape_timeout_offset
    naive = NaivePoller(sim, clock)
    scrapes = max(1, round(minutes * 60 / SCRAPE_INTERVAL))
    start = clock()
    result = Result(jobs, "naive", scrapes * SCRAPE_INTERVAL / 60, running, {}, {}, 0)
    try:
        for i in range(scrapes):
            clock.advance_to(start + i * SCRAPE_INTERVAL)
            calls = sim.stats.count("job_status")
            elapsed = naive.collect(timeout)
            now = clock()
            result.durations.append(elapsed)
            result.over_deadline += elapsed >= timeout - 0.01
            result.status_calls.append(sim.stats.count("job_status") - calls)
            ages, never = naive.running_ages(now)
            result.measure(now - start, ages, never)
        clock.advance_to(start + scrapes * SCRAPE_INTERVAL)
    finally:
        naive.close()
        sim.stop()
    result.max_per_minute, result.mean_per_minute = policy_stats(sim, result.minutes)
    result.throttled = sim.stats.throttled
    return result


# --- the budget alone: a model of how the poller spends a TokenBucket ------------------------------


class _ModelClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def budget_model(period: float, capacity: float | None, rate: int = 100, minutes: int = 30) -> list[str]:
    """The status budget as the poller uses it, without HTTP: at each scrape (every ``period`` s,
    0.5 s after its start, when the job lists are done) ``slots = int(bucket.available())``, then
    the fetches acquire one token each as 8 workers take them (100 ms per call). Unlimited jobs."""
    clock = _ModelClock()
    bucket = TokenBucket(rate, capacity=capacity, clock=clock)
    per_scrape: list[int] = []
    sent: list[float] = []
    for k in range(int(minutes * 60 / period)):
        planned = 1_000.0 + k * period + 0.5
        clock.now = planned
        slots = int(bucket.available())
        taken = 0
        for i in range(slots):
            clock.now = planned + 0.001 + (i // NAIVE_CONCURRENCY) * 0.1
            if bucket.try_acquire():
                taken += 1
                sent.append(clock.now)
        per_scrape.append(taken)
    steady = per_scrape[len(per_scrape) // 3 :]
    worst = max(sum(1 for t in sent if s <= t < s + 60.0) for s in sent)
    return [
        f"{period:g} s",
        f"{bucket.capacity:g}",
        f"{sum(steady) / (len(steady) * period / 60.0):.0f}",
        f"{min(steady)} / {max(steady)}",
        f"{sum(1 for n in steady if n == 0) / len(steady):.0%}",
        str(worst),
        " ".join(str(n) for n in steady[-10:]),
    ]


def budget_model_report(rate: int = 100) -> str:
    rows = [
        budget_model(period, capacity)
        for period in (10.0, 15.0, 30.0, 60.0)
        for capacity in (None, rate / 5.0)
    ]
    return table(
        [
            "scrape interval",
            "bucket capacity",
            "status calls/min",
            "per scrape min / max",
            "scrapes without call",
            "worst rolling minute",
            "last 10 scrapes",
        ],
        rows,
        "rrrrrrl",
    )


# --- report ---------------------------------------------------------------------------------------


def report(results: list[Result], timeout: float) -> str:
    calls = table(
        [
            "jobs",
            "running",
            "mode",
            "minutes",
            "job_status max/min",
            "job_status mean/min",
            "common max/min",
            "common mean/min",
            "429s",
        ],
        [
            [
                f"{r.jobs:,}",
                str(r.running),
                r.mode,
                f"{r.minutes:g}",
                str(r.max_per_minute["job_status"]),
                f"{r.mean_per_minute['job_status']:.1f}",
                str(r.max_per_minute["common"]),
                f"{r.mean_per_minute['common']:.1f}",
                f"{r.throttled:,}",
            ]
            for r in results
        ],
        "rrlrrrrrr",
    )
    fresh = table(
        [
            "jobs",
            "running",
            "mode",
            "status calls per scrape min / p50 / max",
            "scrapes without status call",
            "age p50",
            "age p95",
            "floor (running ÷ status/s)",
            "running never fetched",
            "warm-up",
        ],
        [
            [
                f"{r.jobs:,}",
                str(r.running),
                r.mode,
                f"{min(r.status_calls)} / {percentile(r.status_calls, 50):.0f} / {max(r.status_calls)}",
                f"{sum(1 for n in r.status_calls if n == 0)}/{len(r.status_calls)}",
                fmt_seconds(percentile(r.ages, 50)),
                fmt_seconds(percentile(r.ages, 95)),
                fmt_seconds(r.floor) if r.mode == "budgeted" else "-",
                f"{sum(r.unknown) / len(r.unknown):.0f}" if r.unknown else "-",
                fmt_seconds(r.warmup) if not math.isnan(r.warmup) else "never",
            ]
            for r in results
        ],
        "rrlrrrrrrr",
    )
    scrape = table(
        ["jobs", "mode", "scrape p50", "scrape p95", "scrape max", "deadline", "scrapes at the deadline"],
        [
            [
                f"{r.jobs:,}",
                r.mode,
                fmt_seconds(percentile(r.durations, 50)),
                fmt_seconds(percentile(r.durations, 95)),
                fmt_seconds(max(r.durations)),
                fmt_seconds(timeout),
                f"{r.over_deadline}/{len(r.durations)}",
            ]
            for r in results
        ],
        "rlrrrrr",
    )
    return calls + "\n\n" + fresh + "\n\n" + scrape


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 5000], help="jobs in total")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes per size (budgeted)")
    parser.add_argument(
        "--naive-minutes", type=float, default=3.0, help="simulated minutes per size (naive); 0 skips it"
    )
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added to every API answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="10 and 100 jobs, 2 minutes each")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's warnings")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.minutes, args.naive_minutes = [10, 100], 2.0, 2.0
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    timeout = SCRAPE_TIMEOUT - CollectionConfig().scrape_timeout_offset
    facts = machine_facts()  # before the run: the commit that ran, not one checked out since
    began = time.monotonic()
    results: list[Result] = []
    for jobs in args.sizes:
        t0 = time.monotonic()
        results.append(run_budgeted(jobs, args.minutes, args.seed, args.latency_ms))
        print(f"# {jobs} jobs budgeted: {time.monotonic() - t0:.0f} s real", file=sys.stderr, flush=True)
        if args.naive_minutes > 0:
            t0 = time.monotonic()
            results.append(run_naive(jobs, args.naive_minutes, args.seed, args.latency_ms))
            print(f"# {jobs} jobs naive: {time.monotonic() - t0:.0f} s real", file=sys.stderr, flush=True)
    print(f"Machine: {facts}; API latency {args.latency_ms:g} ms; seed {args.seed}.\n")
    print(report(results, timeout))
    print(
        "\nThe job_status budget alone (TokenBucket as the poller uses it, no HTTP, "
        "capacity default = rate/2, and rate/5 for comparison):\n"
    )
    print(budget_model_report())
    print(f"\nTotal run time: {time.monotonic() - began:.0f} s real.")


if __name__ == "__main__":
    main()
