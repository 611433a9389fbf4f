"""The Exporter across reloads, against the simulator over real HTTP.

The exporter's monotonic clock is a ManualClock that stands still unless a test moves it, so a
whole test is one rolling minute of the budget however long the machine takes to run it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from exporter_stack import wait_until
from sim_targets import sim_target

from cdm_exporter.config import BudgetConfig, CollectionConfig, Config, JobsFilter
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

BUDGET = 10
COMMON = ("list_clusters", "list_jobs", "submissions")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    clock = ManualClock()
    with Simulator(SimulatorSettings(clusters=2, jobs=20, rate_limit=0, clock=clock)) as simulator:
        yield simulator


@pytest.fixture
def mono() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_exporter(mono: ManualClock) -> Iterator[Callable[[Config], Exporter]]:
    made: list[Exporter] = []

    def make(config: Config) -> Exporter:
        exporter = Exporter(config, mono=mono, pacing="off")
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.close()


def alternating_configs(sim: Simulator, budget: int = BUDGET) -> tuple[Config, Config]:
    """Two configurations that differ only in ``collection`` (not in the budget)."""
    collection = CollectionConfig(
        budget_per_minute=BudgetConfig(job_status=budget, common=budget),
        discovery_interval=0,
        job_list_interval=0,
        history_interval=0,
    )
    target = replace(sim_target(sim), jobs=JobsFilter(types=("NORMAL_JOB",)))
    a = Config(targets=(target,), collection=collection)
    b = replace(a, collection=replace(collection, concurrency=2, discovery_interval=1, read_timeout=5))
    return a, b


def job_count(exporter: Exporter) -> int:
    return sum(len(c.jobs) for t in exporter.snapshot().targets for c in t.clusters)


def common_calls(sim: Simulator) -> int:
    return sum(sim.stats.count(endpoint) for endpoint in COMMON)


def test_what_was_spent_stays_spent_across_any_number_of_reloads(
    sim: Simulator, make_exporter: Callable[[Config], Exporter], mono: ManualClock
) -> None:
    a, b = alternating_configs(sim)
    exporter = make_exporter(a)
    exporter.collect(5.0)
    jobs = job_count(exporter)
    assert jobs > 0
    for round_ in range(12):
        exporter.apply(b if round_ % 2 == 0 else a)
        # only the collection settings changed: the targets keep what they know
        assert job_count(exporter) == jobs
        exporter.collect(2.0)
    # one rolling minute (the clock stood still): never more calls than one minute's budget,
    # although twelve reloads each built new pollers
    assert 0 < sim.stats.count("job_status") <= BUDGET
    assert 0 < common_calls(sim) <= BUDGET
    spent = sim.stats.count("job_status")
    # a reload that raises the budget: still the same rolling minute, so the calls already made
    # count against the new budget too
    exporter.apply(replace(a, collection=replace(a.collection, budget_per_minute=BudgetConfig(20, 20))))
    mono.advance(30)  # half a minute: the buckets refill, the first calls are still in the window
    for _ in range(3):
        exporter.collect(2.0)
        exporter.apply(replace(a, collection=replace(a.collection, budget_per_minute=BudgetConfig(20, 20))))
    assert spent < sim.stats.count("job_status") <= 20
    assert common_calls(sim) <= 20


def test_a_reload_during_a_collection_logs_no_error_and_stalls_nothing(
    sim: Simulator, make_exporter: Callable[[Config], Exporter], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = alternating_configs(sim, budget=100)
    exporter = make_exporter(a)
    exporter.collect(5.0)
    sim.add_fault(Fault(endpoint="list_jobs", kind="hang"))
    listed = sim.stats.count("list_jobs")
    caplog.set_level(logging.WARNING)
    collecting = threading.Thread(target=exporter.collect, args=(1.5,))
    collecting.start()
    wait_until(lambda: sim.stats.count("list_jobs") > listed, 10, "the job lists were never asked for")
    exporter.apply(b)  # closes the poller whose refresh is waiting for the hanging lists
    collecting.join(20)
    assert not collecting.is_alive()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
    sim.clear_faults()
    exporter.collect(5.0)
    assert job_count(exporter) > 0


def test_a_reload_that_changes_the_budget_scope_still_counts_the_last_minute(
    sim: Simulator, make_exporter: Callable[[Config], Exporter], mono: ManualClock
) -> None:
    a, _ = alternating_configs(sim)
    exporter = make_exporter(a)
    exporter.collect(5.0)
    mono.advance(30)  # the bucket refills: the minute's budget is spent in two halves
    exporter.collect(5.0)
    spent = sim.stats.count("job_status")
    assert spent > BUDGET // 2
    for round_ in range(6):  # credential, region, credential, ...: new buckets each time
        scope = "region" if round_ % 2 == 0 else "credential"
        exporter.apply(replace(a, collection=replace(a.collection, budget_scope=scope)))
        exporter.collect(2.0)
    # one rolling minute: the calls under either scope add up to one budget
    assert spent <= sim.stats.count("job_status") <= BUDGET
    assert common_calls(sim) <= BUDGET
