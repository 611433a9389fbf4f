"""Time and peak memory of one scrape served from known state, against bare generate_latest.

    python bench/scrape_cost.py [--jobs 100 1000 10000] [--repeat 5] [--status-series all current]

For each size and ``collection.status_series``, builds the state of N jobs (5 % running, the
rest finished with full counters) and measures, alternating the two so that both see the same
machine load (median of --repeat runs each, CPU time of this process: the machine is shared):
- ``exporter``: what a scrape costs in the exporter: CdmCollector mapping the state to families
  and ``metrics.exposition.render`` writing them (``generate_latest`` on a commit before it);
- ``bare``: ``generate_latest`` of the very same samples, pre-built in lists (the library's floor);
and the peak memory (tracemalloc) allocated during one exporter scrape, uncompressed and
gzip-compressed as Prometheus asks, and during one bare ``generate_latest`` (the pre-built
samples not counted). Prints a markdown table with the machine, load and commit.
"""

from __future__ import annotations

import argparse
import functools
import gzip as gzip_module
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator

from common import machine_facts
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from cdm_exporter.api.models import Cluster, Counters, JobSummary, Submission
from cdm_exporter.metrics.collector import CdmCollector, families
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry

JOBS_PER_CLUSTER = 500


def make_snapshot(jobs: int, status_series: str = "all") -> Snapshot:
    clusters = []
    for c in range(max(1, jobs // JOBS_PER_CLUSTER)):
        cluster = Cluster(id=f"cluster-{c:04d}", name=f"cdm-{c}", status="200", version="2.10")
        states = []
        for j in range(min(jobs, JOBS_PER_CLUSTER)):
            running = j % 20 == 0
            summary = JobSummary(
                name=f"job-{c}-{j}",
                job_type="NORMAL_JOB",
                status="RUNNING" if running else "SUCCEEDED",
                from_connector="generic-jdbc-connector",
                to_connector="obs-connector",
                from_link="mysql",
                to_link="obs",
            )
            run = Submission(
                job_name=summary.name,
                status=summary.status,
                progress=42.0 if running else 100.0,
                submission_id=j,
                external_id=f"job_{j}",
                creation_user="ops",
                last_update_user="ops",
                creation_date=1.7e9,
                execute_date=1.7e9 + 1,
                last_update_date=1.7e9 + 60,
                is_incrementing=False,
                is_stopping_increment="",
                is_execute_auto=True,
                is_delete_job=False,
                write_rows=j,
                update_rows=0,
                delete_rows=0,
                counters=None if running else Counters(*(range(j, j + 10))),
            )
            states.append(JobState(cluster.id, summary, run, 1.7e9 + 61, summary.change_key, 1.7e9 + 60))
        clusters.append(ClusterView(cluster, True, tuple(states), None))
    telemetry = ApiTelemetry()
    for endpoint in ("list_jobs", "job_status"):
        telemetry.observe(endpoint, "200", 0.1)
    target = TargetView(
        "bench", "0" * 32, "cn-north-4", True, tuple(clusters), None, {"job_status": 10, "common": 10}
    )
    snapshot = Snapshot((target,), telemetry.snapshot(), 0.5)
    if status_series != "all":  # a commit from before the option has only "all"
        snapshot = Snapshot((target,), telemetry.snapshot(), 0.5, status_series=status_series)  # type: ignore[arg-type]
    return snapshot


class Prebuilt(Collector):
    """The same families with every sample made beforehand, in plain lists."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = []
        for metric in metrics:
            copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            copy.samples = list(metric.samples)
            self.metrics.append(copy)

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def scrape(registry: CollectorRegistry, gzip: bool = False) -> int:
    """One scrape's body as the exporter writes it; its length."""
    try:
        from cdm_exporter.metrics.exposition import render
    except ImportError:  # a commit from before it: the library's encoder, then gzip
        body = generate_latest(registry)
        return len(gzip_module.compress(body, compresslevel=6) if gzip else body)
    return render(registry, "", gzip=gzip).length


def timed(work: Callable[[], int]) -> tuple[float, int]:
    start = time.process_time()
    size = work()
    return time.process_time() - start, size


def peak_mib(work: Callable[[], object]) -> float:
    tracemalloc.start()
    work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--status-series", nargs="+", default=["all", "current"])
    args = parser.parse_args()
    print(f"Machine: {machine_facts()}; load average {os.getloadavg()[0]:.1f} before.\n")
    print(
        "| jobs | status_series | samples | body | exporter scrape (CPU) | bare generate_latest (CPU) "
        "| exporter / bare | peak memory exporter | exporter gzip | bare |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for jobs in args.jobs:
        for status_series in args.status_series:
            snapshot = make_snapshot(jobs, status_series)
            ours = CollectorRegistry()
            ours.register(CdmCollector(lambda snapshot=snapshot: snapshot))  # type: ignore[misc]
            prebuilt = Prebuilt(families(snapshot))
            samples = sum(len(m.samples) for m in prebuilt.metrics)
            bare = CollectorRegistry()
            bare.register(prebuilt)

            def exporter(ours: CollectorRegistry = ours) -> int:
                return scrape(ours)

            def library(bare: CollectorRegistry = bare) -> int:
                return len(generate_latest(bare))

            ours_times, bare_times = [], []
            size = 0
            for _ in range(args.repeat):  # alternating: both see the same load
                seconds, size = timed(exporter)
                ours_times.append(seconds)
                bare_times.append(timed(library)[0])
            ours_s, bare_s = statistics.median(ours_times), statistics.median(bare_times)
            print(
                f"| {jobs:,} | {status_series} | {samples:,} | {size / 1e6:.1f} MB | {ours_s * 1e3:.0f} ms "
                f"| {bare_s * 1e3:.0f} ms | {ours_s / bare_s:.2f} | {peak_mib(exporter):.0f} MiB "
                f"| {peak_mib(functools.partial(scrape, ours, gzip=True)):.0f} MiB "
                f"| {peak_mib(library):.0f} MiB |",
                flush=True,
            )
    print(f"\nLoad average {os.getloadavg()[0]:.1f} after.")


if __name__ == "__main__":
    main()
