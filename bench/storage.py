"""What the file state store costs: writing and reading the known state of N jobs.

    python bench/storage.py [--jobs 1000 5000] [--repeat 3]

For each size, builds N finished jobs with full counters (the collector benchmark's state), and
measures (median of --repeat runs), through the real code (records, StateSync, the SQLite file):
- ``first write``: every record written (a leader's first write after start);
- ``steady write``: one background write when 1 % of the jobs changed;
- ``restore``: a new process reading the file back into its poller before its first scrape;
and the file's size. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

from scrape_cost import make_snapshot

from cdm_exporter.polling.persistence import RecordItem, RecordKey, StateSync
from cdm_exporter.polling.records import Clocks, Record
from cdm_exporter.polling.state import JobState, job_from_record, job_record
from cdm_exporter.storage.file_store import FileStore

CLOCKS = Clocks()


class Jobs:
    """A record source of N job states (what the exporter's pollers are, without the API)."""

    def __init__(self, jobs: dict[RecordKey, JobState]) -> None:
        self.jobs = jobs
        self.restored = 0

    def records(self) -> Iterable[RecordItem]:
        return [(key, job, partial(job_record, job, CLOCKS)) for key, job in self.jobs.items()]

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> None:
        self.restored = sum(job_from_record(r, CLOCKS) is not None for r in records.values() if r is not None)


def state(jobs: int) -> dict[RecordKey, JobState]:
    return {
        ("job", "bench", cluster.cluster.id, job.name): job
        for target in make_snapshot(jobs).targets
        for cluster in target.clusters
        for job in cluster.jobs
    }


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(jobs: int, repeat: int) -> tuple[float, float, float, int]:
    first, steady, restore, size = [], [], [], 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "state.db"
            source = Jobs(state(jobs))
            store = FileStore(path)
            sync = StateSync(store, source, interval=3600)
            first.append(timed(sync.sync))
            keys = list(source.jobs)[::100]
            for key in keys:
                source.jobs[key] = replace(source.jobs[key], refreshed_at=time.time())
            steady.append(timed(sync.sync))
            store.close()
            size = path.stat().st_size + sum(p.stat().st_size for p in Path(directory).glob("state.db-*"))
            reader = Jobs({})
            again = FileStore(path)
            restore.append(timed(StateSync(again, reader).restore))
            again.close()
            assert reader.restored == jobs, (reader.restored, jobs)
    return statistics.median(first), statistics.median(steady), statistics.median(restore), size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("| jobs | first write | steady write (1 % changed) | restore at start | file size |")
    print("|---:|---:|---:|---:|---:|")
    for jobs in args.jobs:
        first, steady, restore, size = measure(jobs, args.repeat)
        print(
            f"| {jobs} | {first * 1000:.0f} ms | {steady * 1000:.1f} ms | {restore * 1000:.0f} ms "
            f"| {size / 1024:.0f} KiB |"
        )


if __name__ == "__main__":
    main()
