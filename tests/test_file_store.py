"""The embedded state store (``--storage.path``): a SQLite file for one process.

In-process: the store on its own (records, the budget reserved ahead of the calls, corrupt and
foreign files set aside), and an exporter restarted on the same file against the simulator. The
real command line (restarts, a crash loop) is in ``test_storage_cli.py``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from exporter_stack import ExporterServer
from sim_targets import sim_target

from cdm_exporter.config import CollectionConfig, Config
from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, BudgetKey, TokenBucket
from cdm_exporter.polling.persistence import StoreError
from cdm_exporter.polling.state import JobState
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings
from cdm_exporter.storage import window_name
from cdm_exporter.storage.file_store import (
    RESERVE_SECONDS,
    SET_ASIDE_REPORT_SECONDS,
    FileStore,
)

KEY = BudgetKey("token:0123456789ab", "job_status")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state.db"


def open_store(path: Path, clock: Clock | None = None) -> FileStore:
    return FileStore(path, wall=clock or time.time)


# --- records ----------------------------------------------------------------------------------------


def test_records_survive_the_process(path: Path) -> None:
    store = open_store(path)
    store.save({"a": {"v": 1, "x": "ü"}, "b": {"v": 1}}, [])
    store.save({"c": {"v": 1}}, ["b"])
    store.close()
    again = open_store(path)
    try:
        loaded = again.load()
        assert loaded.complete and loaded.records == {"a": {"v": 1, "x": "ü"}, "c": {"v": 1}}
        assert again.up() and again.role() == "leader"
    finally:
        again.close()


def test_another_process_on_the_same_file_is_refused(path: Path) -> None:
    store = open_store(path)
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            open_store(path)
    finally:
        store.close()
    open_store(path).close()  # free again once the first is gone


def test_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a directory"):
        open_store(tmp_path / "nowhere" / "state.db")


def test_the_file_is_readable_by_its_owner_only(path: Path) -> None:
    open_store(path).close()
    assert path.stat().st_mode & 0o077 == 0


# --- corrupt and foreign files ------------------------------------------------------------------------


def foreign_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1);")
    db.close()


def newer_format(path: Path) -> None:
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()


def truncated(path: Path) -> None:
    store = open_store(path)
    store.save({f"k{i}": {"v": 1, "pad": "x" * 500} for i in range(200)}, [])
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\0" * 100)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.write_bytes(b"this is not a database\n" * 200),
        foreign_database,
        newer_format,
        truncated,
    ],
    ids=["garbage", "another application's database", "a newer format", "truncated"],
)
def test_an_unreadable_file_is_set_aside_reported_and_replaced(
    path: Path, spoil: object, caplog: pytest.LogCaptureFixture
) -> None:
    spoil(path)  # type: ignore[operator]
    original = path.read_bytes()
    clock = Clock()
    with caplog.at_level(logging.ERROR, logger="cdm_exporter.storage.file_store"):
        store = open_store(path, clock)
    try:
        aside = list(path.parent.glob("state.db.corrupt-*"))
        assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))], "the old file is kept aside"
        kept = next(p for p in aside if not p.name.endswith(("-wal", "-shm")))
        assert kept.read_bytes() == original  # moved, not touched
        assert "set aside" in caplog.text
        assert store.load().records == {}
        assert not store.up()  # cdm_exporter_storage_up 0: someone should know
        store.save({"a": {"v": 1}}, [])  # and the store works on a fresh file
        assert store.load().records == {"a": {"v": 1}}
        clock.now += SET_ASIDE_REPORT_SECONDS + 1
        assert store.up()
    finally:
        store.close()


# --- the budget's rolling minute --------------------------------------------------------------------


def test_calls_are_in_the_file_before_they_are_sent_never_fewer_nor_older(path: Path) -> None:
    clock = Clock()
    store = open_store(path, clock)
    try:
        window = store.windows.window(KEY)
        sent = []
        for _ in range(12):
            assert window.take(100)
            sent.append(clock.now)
            clock.now += 0.7
        # what a process started now would count (the file as it is, without any clean stop)
        stored = sorted(store.window_calls(window_name(KEY), 0.0))
        assert len(stored) >= len(sent)
        # every call has a stored time at or after it: none leaves the minute before it did
        assert all(s >= c for s, c in zip(stored, sorted(sent), strict=False))
        assert max(stored) <= max(sent) + RESERVE_SECONDS
    finally:
        store.close()


def test_a_restarted_process_counts_the_calls_of_the_last_minute(path: Path) -> None:
    clock = Clock()
    store = open_store(path, clock)
    bucket = TokenBucket(10, capacity=10, clock=clock, window=store.windows.window(KEY))
    assert sum(bucket.try_acquire() for _ in range(20)) == 10
    store.close()
    clock.now += 30
    again = open_store(path, clock)
    try:
        fresh = TokenBucket(10, capacity=10, clock=clock, window=again.windows.window(KEY))
        assert not fresh.try_acquire()  # a new process, a full bucket, and still nothing to spend
        assert fresh.available() == 0
        clock.now += COUNTED_WINDOW_SECONDS - 30 + RESERVE_SECONDS + 0.1
        assert fresh.try_acquire()  # once they left the rolling minute
    finally:
        again.close()


def test_a_refunded_call_stays_counted_in_the_file(path: Path) -> None:
    clock = Clock()
    store = open_store(path, clock)
    try:
        window = store.windows.window(KEY)
        assert window.take(1)
        window.give_back()
        assert window.room(1) == 1  # this process may use it again
        assert len(store.window_calls(window_name(KEY), 0.0)) >= 1  # a restart would not: never too few
    finally:
        store.close()


# --- an exporter restarted on the same file ------------------------------------------------------------


def jobs_of(exporter: Exporter) -> dict[tuple[str, str], JobState]:
    return {
        (cluster.cluster.id, job.name): job
        for target in exporter.snapshot().targets
        for cluster in target.clusters
        for job in cluster.jobs
    }


def test_a_restarted_exporter_serves_what_it_knew_before_its_first_call(
    path: Path, exporter_server: ExporterServer
) -> None:
    with Simulator(SimulatorSettings(clusters=2, jobs=6, time_scale=600, rate_limit=0)) as sim:
        config = Config(targets=(sim_target(sim),), collection=CollectionConfig(history_interval=0))
        first = Exporter(config, store=open_store(path), store_interval=0.2)
        exporter_server.mount(first)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            first.collect(5.0)
            jobs = jobs_of(first)
            succeeded = sum(j.last_success is not None for j in jobs.values())
            if jobs and succeeded >= 4 and all(j.refreshed_at is not None for j in jobs.values()):
                break
            time.sleep(0.2)
        before = exporter_server.scrape(5.0).exposition
        known = jobs_of(first)
        exporter_server.mount(None)  # closes it: the last write
        assert sum(j.last_success is not None for j in known.values()) >= 4

        sim.add_fault(Fault("*", status=503))  # the API is down: only the file can tell
        second = Exporter(config, store=open_store(path), store_interval=0.2)
        exporter_server.mount(second)
        after = exporter_server.scrape(5.0).exposition
        exporter_server.mount(None)

    for name in (
        "cdm_job_last_success_timestamp_seconds",
        "cdm_job_refresh_timestamp_seconds",
        "cdm_job_status",
        "cdm_job_read_rows",
        "cdm_job_written_rows",
        "cdm_job_submission_id",
        "cdm_cluster_info",
    ):
        assert after.select(name) == before.select(name), name
    assert len(after.select("cdm_job_last_success_timestamp_seconds")) == sum(
        j.last_success is not None for j in known.values()
    )
    assert len(after.select("cdm_job_refresh_timestamp_seconds")) == len(known)
    assert after.value("cdm_exporter_storage_up") == 1.0
    assert after.value("cdm_exporter_leader") == 1.0


def test_state_of_another_project_under_the_same_target_name_is_not_taken(path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=3, rate_limit=0)) as sim:
        config = Config(targets=(sim_target(sim),))
        first = Exporter(config, store=open_store(path), store_interval=0.2)
        first.collect(5.0)
        assert jobs_of(first)
        first.close()
        moved = Config(targets=(replace(sim_target(sim), project_id="f" * 32),))
        sim.add_fault(Fault("*", status=503))
        second = Exporter(moved, store=open_store(path), store_interval=0.2)
        try:
            assert jobs_of(second) == {}
        finally:
            second.close()


def test_a_record_that_cannot_be_read_costs_only_itself(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=4, rate_limit=0)) as sim:
        config = Config(targets=(sim_target(sim),))
        first = Exporter(config, store=open_store(path), store_interval=0.2)
        first.collect(5.0)
        first.collect(5.0)
        names = sorted(name for _, name in jobs_of(first))
        first.close()
        db = sqlite3.connect(path)
        query = "SELECT key FROM records WHERE key LIKE '[\"job\"%' ORDER BY key LIMIT 1"
        broken = db.execute(query).fetchone()[0]
        db.execute('UPDATE records SET value = \'{"v": 1, "summary": 5}\' WHERE key = ?', (broken,))
        db.commit()
        db.close()
        sim.add_fault(Fault("*", status=503))
        with caplog.at_level(logging.WARNING):
            second = Exporter(config, store=open_store(path), store_interval=0.2)
        try:
            assert len(jobs_of(second)) == len(names) - 1
            assert "could not be read" in caplog.text
        finally:
            second.close()


class Discovered:
    """A record source beside the targets (project discovery's results are the targets' own)."""

    def __init__(self, projects: dict[str, str]) -> None:
        self.projects = projects
        self.restored: dict[str, str] = {}

    def records(self) -> list[tuple[tuple[str, ...], object, Callable[[], dict[str, object]]]]:
        return [
            (("found", "sim", pid), name, partial(lambda n: {"v": 1, "name": n}, name))
            for pid, name in self.projects.items()
        ]

    def restore(self, records: Mapping[tuple[str, ...], dict[str, Any] | None], *, complete: bool) -> None:
        self.restored = {key[2]: str(r["name"]) for key, r in records.items() if r is not None}


def test_another_record_source_is_stored_and_restored_beside_the_pollers(path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=2, rate_limit=0)) as sim:
        config = Config(targets=(sim_target(sim),))
        found = Discovered({"p1": "cn-north-4", "p2": "cn-north-4_dev"})
        first = Exporter(config, store=open_store(path), store_interval=0.2, record_sources={"found": found})
        first.collect(5.0)
        first.close()
        again = Discovered({})
        second = Exporter(config, store=open_store(path), store_interval=0.2, record_sources={"found": again})
        try:
            assert again.restored == found.projects
            assert jobs_of(second)  # and the pollers' own records still went to the pollers
        finally:
            second.close()
    with pytest.raises(ValueError, match="targets'"):  # a kind the targets store is theirs
        Exporter(config, record_sources={"discovery": Discovered({})})
