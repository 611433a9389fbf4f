"""Time and peak memory of one scrape served from known state, against bare generate_latest.

    python bench/scrape_cost.py [--jobs 100 1000 10000] [--repeat 5]

For each size, builds the state of N jobs (5 % running, the rest finished with full counters) and
measures (median of --repeat runs):
- ``exporter``: CdmCollector mapping the state to families plus ``generate_latest`` rendering them;
- ``bare``: ``generate_latest`` of the very same samples, pre-built (the library's floor);
and the peak memory (tracemalloc) allocated during one exporter scrape. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from cdm_exporter.api.models import Cluster, Counters, JobSummary, Submission
from cdm_exporter.metrics.collector import CdmCollector, families
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry

JOBS_PER_CLUSTER = 500


def make_snapshot(jobs: int) -> Snapshot:
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
    return Snapshot((target,), telemetry.snapshot(), 0.5)


class Prebuilt(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def median_seconds(registry: CollectorRegistry, repeat: int) -> tuple[float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = len(generate_latest(registry))
        times.append(time.perf_counter() - start)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        "| jobs | samples | body | exporter scrape | bare generate_latest "
        "| exporter / sample | bare / sample | peak memory |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for jobs in args.jobs:
        snapshot = make_snapshot(jobs)
        ours = CollectorRegistry()
        ours.register(CdmCollector(lambda snapshot=snapshot: snapshot))  # type: ignore[misc]
        prebuilt = families(snapshot)
        samples = sum(len(m.samples) for m in prebuilt)
        bare = CollectorRegistry()
        bare.register(Prebuilt(prebuilt))
        ours_s, size = median_seconds(ours, args.repeat)
        bare_s, _ = median_seconds(bare, args.repeat)
        tracemalloc.start()
        generate_latest(ours)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(
            f"| {jobs:,} | {samples:,} | {size / 1e6:.1f} MB | {ours_s * 1e3:.0f} ms | {bare_s * 1e3:.0f} ms "
            f"| {ours_s / samples * 1e6:.2f} µs | {bare_s / samples * 1e6:.2f} µs | {peak / 2**20:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
