"""How far behind the run counters (``cdm_job_runs_total``) can be, at 100, 1,000 and 5,000 jobs.

    python bench/run_counts.py [--sizes 100 1000 5000] [--warmup 20] [--minutes 30] [--drain 15]
                               [--latency-ms 100] [--seed 1] [--quick]

For each size N, a simulator with its real rate limits (120 requests per rolling minute per user and
policy), ``--latency-ms`` of added latency, 500 jobs per cluster, every job scheduled (CDM runs it
itself) with a period drawn from 5 min (10 %), 15 min (20 %), 1 h (40 %) and 6 h (30 %), runs
lasting about 30 % of the period, one in five failing, and a run history of 1,000 runs (CDM keeps
about 30 days). The exporter, with its default configuration (100 calls a minute per policy,
history read at most every 5 minutes per job), is scraped every 15 s, as Prometheus does:

- ``--warmup`` minutes, while the exporter reads every job a first time (its counting baseline);
- ``--minutes`` of measurement: every run that ends then, of a job the exporter has a baseline for,
  is tracked;
- ``--drain`` more minutes, to see when the tracked runs that were still uncounted get counted.

Time is :class:`bench.common.FlowingClock` (real speed during a scrape and each paced call between
scrapes, idle time skipped). After each scrape the exporter's run tally of every job is recorded; at
the end each tracked run (from the simulator's history: submission id, end) is matched against them.
Reported: the runs that ended per minute; the status, history and job-list calls per minute; per
tracked run the time from its end to the first scrape whose counter includes it (p50 / p95 / max);
how many runs were behind (ended, not yet counted) at a scrape, mean and worst, over all jobs and
for the worst job; and the tracked runs still uncounted at the end of the drain. Prints markdown
tables.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field

from common import FlowingClock, fmt_seconds, machine_facts, percentile, sim_config, table
from polling import JOBS_PER_CLUSTER, SCRAPE_TIMEOUT, pace_until, policy_stats

from cdm_exporter.config import CollectionConfig
from cdm_exporter.polling.run_counts import RunTally
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Simulator, SimulatorSettings

#: (period in simulated minutes, share of the jobs)
PERIODS = ((5, 0.1), (15, 0.2), (60, 0.4), (360, 0.3))
FAIL_PROBABILITY = 0.2
HISTORY_SIZE = 1000
SCRAPE_INTERVAL = 15.0

ENDPOINTS = ("job_status", "submissions", "list_jobs")

JobKey = tuple[str, str]  # (cluster_id, job_name)
Tracked = tuple[int, dict[JobKey, list[tuple[int, float]]]]


@dataclass(frozen=True)
class Scrape:
    at: float  # clock time after the scrape
    tallies: dict[JobKey, RunTally]  # every job's run tally then
    calls: dict[str, int]  # the simulator's request counts per endpoint before it


@dataclass
class Result:
    jobs: int
    minutes: float
    ended_per_minute: float = 0.0
    calls_per_minute: dict[str, float] = field(default_factory=dict)
    max_common_per_minute: int = 0
    throttled: int = 0
    baselined: int = 0  # jobs with a counting baseline when the measurement began
    tracked: int = 0  # runs that ended during the measurement, of jobs with a baseline
    lags: list[float] = field(default_factory=list)  # end -> counted, per tracked run counted
    uncounted: int = 0  # tracked runs still not counted at the end of the drain
    behind_total: list[int] = field(default_factory=list)  # per scrape, over all jobs
    behind_worst_job: list[int] = field(default_factory=list)  # per scrape, the job most behind


def make_world(jobs: int, seed: int, latency_ms: float, clock: FlowingClock) -> Simulator:
    clusters = max(1, math.ceil(jobs / JOBS_PER_CLUSTER))
    sim = Simulator(
        SimulatorSettings(
            clusters=clusters,
            jobs=0,
            seed=seed,
            latency_ms=latency_ms,
            rate_limit=120,
            history_size=HISTORY_SIZE,
            clock=clock,
        )
    )
    world = sim.world
    rnd = random.Random(seed)
    ids = [c.id for c in world.clusters()]
    for cluster_id in ids:
        world.set_cluster_status(cluster_id, "200")
    periods = [minutes for minutes, _ in PERIODS]
    weights = [share for _, share in PERIODS]
    for i in range(jobs):
        period = rnd.choices(periods, weights)[0] * 60.0
        name = f"job_{i:05d}"
        world.add_job(
            ids[i % clusters], name, scheduled=True, period=period, fail_probability=FAIL_PROBABILITY
        )
    sim.start()
    return sim


def tallies(exporter: Exporter) -> dict[JobKey, RunTally]:
    return {
        (cluster.cluster.id, job.name): job.tally
        for target in exporter.snapshot().targets
        for cluster in target.clusters
        for job in cluster.jobs
        if job.tally is not None
    }


def counted(tally: RunTally | None, sid: int) -> bool:
    return tally is not None and (sid <= tally.settled or sid in tally.counted)


def scrape(sim: Simulator, clock: FlowingClock, args: argparse.Namespace) -> list[Scrape]:
    """Scrape every 15 s through warm-up, measurement and drain; the tallies after each scrape."""
    collection = CollectionConfig()
    timeout = SCRAPE_TIMEOUT - collection.scrape_timeout_offset
    exporter = Exporter(sim_config(sim, collection), wall=clock, mono=clock, pacing="caller")
    total = round((args.warmup + args.minutes + args.drain) * 60 / SCRAPE_INTERVAL)
    start = clock()
    seen = []
    try:
        for i in range(total):
            pace_until(exporter, clock, start + i * SCRAPE_INTERVAL)
            calls = {e: sim.stats.count(e) for e in ENDPOINTS}
            exporter.collect(timeout)
            seen.append(Scrape(clock(), tallies(exporter), calls))
        pace_until(exporter, clock, start + total * SCRAPE_INTERVAL)
    finally:
        exporter.close()
    return seen


def tracked_runs(sim: Simulator, baseline: dict[JobKey, RunTally], since: float, until: float) -> Tracked:
    """(runs that ended in [since, until), those of them tracked: of jobs counted since before)."""
    tracked: dict[JobKey, list[tuple[int, float]]] = {}
    ended = 0
    for cluster in sim.world.clusters():
        for job in sim.world.jobs(cluster.id):
            key = (cluster.id, job.name)
            for run in sim.world.history(cluster.id, job.name, limit=HISTORY_SIZE).runs:
                if run.end is None or not since <= run.end < until:
                    continue
                ended += 1
                tally = baseline.get(key)
                if tally is not None and run.end > tally.since:
                    tracked.setdefault(key, []).append((run.submission_id, run.end))
    return ended, tracked


def run_size(jobs: int, args: argparse.Namespace) -> Result:
    clock = FlowingClock()
    sim = make_world(jobs, args.seed, args.latency_ms, clock)
    try:
        seen = scrape(sim, clock, args)
    finally:
        sim.stop()
    measure_from = seen[0].at + args.warmup * 60
    measure_to = measure_from + args.minutes * 60
    result = Result(jobs, args.minutes, throttled=sim.stats.throttled)
    first = next(s for s in seen if s.at >= measure_from)
    minutes = args.minutes + args.drain
    result.calls_per_minute = {e: (sim.stats.count(e) - first.calls[e]) / minutes for e in ENDPOINTS}
    peak, _ = policy_stats(sim, args.warmup + minutes)
    result.max_common_per_minute = peak["common"]
    result.baselined = len(first.tallies)
    ended, tracked = tracked_runs(sim, first.tallies, measure_from, measure_to)
    result.ended_per_minute = ended / args.minutes
    result.tracked = sum(len(runs) for runs in tracked.values())
    for key, runs in tracked.items():
        for sid, end in runs:
            when = next((s.at for s in seen if s.at >= end and counted(s.tallies.get(key), sid)), None)
            if when is None:
                result.uncounted += 1
            else:
                result.lags.append(when - end)
    for s in seen:
        if measure_from <= s.at < measure_to:
            behind = [
                sum(1 for sid, end in runs if end <= s.at and not counted(s.tallies.get(key), sid))
                for key, runs in tracked.items()
            ]
            result.behind_total.append(sum(behind))
            result.behind_worst_job.append(max(behind, default=0))
    return result


def report(results: list[Result]) -> str:
    calls = table(
        [
            "jobs",
            "runs ended/min",
            "job_status/min",
            "submissions/min",
            "list_jobs/min",
            "common max/min",
            "429s",
        ],
        [
            [
                f"{r.jobs:,}",
                f"{r.ended_per_minute:.1f}",
                f"{r.calls_per_minute['job_status']:.1f}",
                f"{r.calls_per_minute['submissions']:.1f}",
                f"{r.calls_per_minute['list_jobs']:.1f}",
                str(r.max_common_per_minute),
                f"{r.throttled:,}",
            ]
            for r in results
        ],
    )
    lag = table(
        [
            "jobs",
            "jobs with a baseline",
            "runs tracked",
            "end → counted p50",
            "p95",
            "max",
            "runs behind, all jobs: mean / max",
            "worst job: max",
            "not counted after the drain",
        ],
        [
            [
                f"{r.jobs:,}",
                f"{r.baselined:,}",
                f"{r.tracked:,}",
                fmt_seconds(percentile(r.lags, 50)),
                fmt_seconds(percentile(r.lags, 95)),
                fmt_seconds(max(r.lags, default=math.nan)),
                f"{sum(r.behind_total) / max(1, len(r.behind_total)):.0f} / {max(r.behind_total, default=0)}",
                str(max(r.behind_worst_job, default=0)),
                f"{r.uncounted:,}",
            ]
            for r in results
        ],
    )
    return calls + "\n\n" + lag


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000], help="jobs in total")
    parser.add_argument("--warmup", type=float, default=20.0, help="simulated minutes before measuring")
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated minutes measured")
    parser.add_argument("--drain", type=float, default=15.0, help="simulated minutes after measuring")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="latency added to every API answer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 jobs, 5 + 10 + 5 minutes")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.warmup, args.minutes, args.drain = [100], 5.0, 10.0, 5.0
    logging.basicConfig(level=logging.CRITICAL)
    facts = machine_facts()  # before the run: the commit that ran
    began = time.monotonic()
    results = []
    for jobs in args.sizes:
        t0 = time.monotonic()
        results.append(run_size(jobs, args))
        print(f"# {jobs} jobs: {time.monotonic() - t0:.0f} s real", file=sys.stderr, flush=True)
    print(
        f"Machine: {facts}; API latency {args.latency_ms:g} ms; seed {args.seed}; "
        f"warm-up {args.warmup:g} min, measured {args.minutes:g} min, drain {args.drain:g} min.\n"
    )
    print(report(results))
    print(f"\nTotal run time: {time.monotonic() - began:.0f} s real.")


if __name__ == "__main__":
    main()
