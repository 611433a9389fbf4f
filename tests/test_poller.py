"""Budgeted incremental polling against the simulator over real HTTP (docs/architecture.md,
"Polling within the API budget").

Time is a shared manual clock: the simulator's rate-limit windows and job lifecycle, and the
exporter's budgets and refresh timestamps, all read it, so minutes of polling run in seconds
while every API call is real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sim_targets import sim_target

from cdm_exporter.config import BudgetConfig, CollectionConfig, Config
from cdm_exporter.polling.budget import WINDOW_MARGIN_SECONDS, WINDOW_SECONDS
from cdm_exporter.polling.state import JobState
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

SCRAPE_INTERVAL = 15.0
MINUTE = WINDOW_SECONDS + WINDOW_MARGIN_SECONDS  # a minute as the budget counts it


@dataclass
class Stack:
    sim: Simulator
    exporter: Exporter
    clock: ManualClock

    def scrape(self, advance: float = SCRAPE_INTERVAL) -> None:
        self.clock.advance(advance)
        self.exporter.collect(10.0)

    def jobs(self) -> dict[tuple[str, str], JobState]:
        return {
            (cluster.cluster.id, job.name): job
            for target in self.exporter.snapshot().targets
            for cluster in target.clusters
            for job in cluster.jobs
        }

    def cluster_id(self, index: int = 0) -> str:
        return self.sim.world.clusters()[index].id


def make_config(sim: Simulator, **collection: object) -> Config:
    return Config(targets=(sim_target(sim),), collection=CollectionConfig(**collection))  # type: ignore[arg-type]


@pytest.fixture
def make_stack() -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(settings: dict[str, object] | None = None, **collection: object) -> Stack:
        clock = ManualClock()
        sim = Simulator(SimulatorSettings(clock=clock, **(settings or {})))  # type: ignore[arg-type]
        sim.start("127.0.0.1", 0)
        exporter = Exporter(make_config(sim, **collection), wall=clock, mono=clock, pacing="off")
        stack = Stack(sim, exporter, clock)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.exporter.close()
        stack.sim.stop()


def test_budget_is_never_exceeded_and_nothing_is_throttled_at_1000_jobs(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack({"clusters": 10, "jobs": 100, "rate_limit": 120})
    for _ in range(16):  # four minutes of 15 s scrapes
        stack.scrape()
    stats = stack.sim.stats
    assert stats.throttled == 0
    per_policy = stats.max_per_minute
    assert per_policy, "the simulator counted no requests"
    for (policy, _user), most in per_policy.items():
        assert most <= 100, (policy, most)  # the default budget, below the API's 120
    # and the budget is used: every job of a working cluster is known, and status calls ran at
    # about the budgeted rate (clusters that are not normal answer errors for their jobs)
    normal = [c for c in stack.sim.world.clusters() if c.status == "200"]
    assert len(normal) >= 5
    assert len(stack.jobs()) == sum(len(stack.sim.world.jobs(c.id)) for c in normal)
    assert stats.count("job_status") >= 3 * 100


def test_running_jobs_are_refreshed_first(make_stack: Callable[..., Stack]) -> None:
    # a tiny status budget: 12 calls a minute, fewer than there are jobs
    stack = make_stack(
        {"clusters": 1, "jobs": 0, "rate_limit": 0},
        budget_per_minute=BudgetConfig(job_status=12, common=100),
    )
    cluster_id = stack.cluster_id()
    for i in range(40):  # jobs that never ran: none is running but the two started below
        stack.sim.world.add_job(cluster_id, f"job-{i:02d}")
    for _ in range(4):  # the first minute's 12 calls go to the first 12 jobs, those never fetched
        stack.scrape()
    names = ["job-03", "job-08"]
    for name in names:
        stack.sim.world.start_run(cluster_id, name, duration=3600)
    stack.scrape(advance=MINUTE)  # the list refresh sees them start, the budget is back
    jobs = list(stack.jobs().values())
    now = stack.clock()
    assert sorted(j.name for j in jobs if j.active) == names
    fresh = {j.name for j in jobs if j.refreshed_at == now}
    assert set(names) <= fresh, "jobs never fetched were fetched before the running ones"
    assert len(fresh) <= 12  # the budget


def test_a_run_that_ends_is_read_even_while_more_jobs_run_than_the_budget_refreshes(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 3, "rate_limit": 0},
        budget_per_minute=BudgetConfig(job_status=12, common=100),  # 3 status calls per scrape
        job_list_interval=15.0,
    )
    stack.scrape()
    cluster_id = stack.cluster_id()
    world = stack.sim.world
    for i in range(8):
        world.add_job(cluster_id, f"long-{i}")
        world.start_run(cluster_id, f"long-{i}", outcome="SUCCEEDED", duration=36000)
    world.add_job(cluster_id, "short")
    world.start_run(cluster_id, "short", outcome="FAILED", duration=36000)
    for _ in range(6):  # everything fetched at least once while running
        stack.scrape()
    assert stack.jobs()[(cluster_id, "short")].current_run is not None
    world.finish_run(cluster_id, "short", "FAILED")
    stack.scrape()  # the list shows the run ended
    stack.scrape()  # a reserved call reads it, although nine jobs still wait to be refreshed
    job = stack.jobs()[(cluster_id, "short")]
    run = job.current_run
    assert run is not None and run.status == "FAILED"
    assert run.error_summary
    # and the running jobs, whose list entries change at every update, keep their fetched runs
    running = [j for (c, n), j in stack.jobs().items() if n.startswith("long-")]
    assert all(j.current_run is not None and j.current_run.status == "RUNNING" for j in running)


def test_job_that_appears_starts_and_finishes_is_seen_within_one_list_interval(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 3, "rate_limit": 0}, job_list_interval=60.0, history_interval=0.0
    )
    stack.scrape()
    cluster_id = stack.cluster_id()
    stack.sim.world.add_job(cluster_id, "brand-new")
    assert (cluster_id, "brand-new") not in stack.jobs()
    stack.scrape(advance=60.0)
    assert stack.jobs()[(cluster_id, "brand-new")].status == "NEW"

    stack.sim.world.start_run(cluster_id, "brand-new", outcome="SUCCEEDED", duration=600)
    stack.scrape(advance=60.0)
    assert stack.jobs()[(cluster_id, "brand-new")].status == "RUNNING"

    stack.sim.world.finish_run(cluster_id, "brand-new", "SUCCEEDED")
    end = stack.clock()
    stack.scrape(advance=60.0)
    job = stack.jobs()[(cluster_id, "brand-new")]
    assert job.status == "SUCCEEDED"
    assert job.last_success == pytest.approx(end, abs=1.0)


def test_vanished_jobs_and_clusters_go_away(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 2, "jobs": 4, "rate_limit": 0}, job_list_interval=60.0, discovery_interval=300.0
    )
    stack.scrape()
    first, second = stack.cluster_id(0), stack.cluster_id(1)
    victim = stack.sim.world.jobs(first)[0].name
    assert (first, victim) in stack.jobs()
    stack.sim.world.delete_job(first, victim)
    stack.scrape(advance=60.0)
    assert (first, victim) not in stack.jobs()
    assert len([k for k in stack.jobs() if k[0] == first]) == 3

    stack.sim.world.remove_cluster(second)
    stack.scrape(advance=300.0)
    assert {k[0] for k in stack.jobs()} == {first}
    clusters = [c.cluster.id for t in stack.exporter.snapshot().targets for c in t.clusters]
    assert clusters == [first]


def test_a_deleted_clusters_list_failure_is_forgotten(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 2, "jobs": 2, "rate_limit": 0}, job_list_interval=15.0, discovery_interval=300.0
    )
    first, second = stack.cluster_id(0), stack.cluster_id(1)
    stack.sim.add_fault(Fault("list_jobs", status=500, cluster_id=first))
    stack.sim.add_fault(Fault("list_jobs", status=500, cluster_id=second))
    stack.scrape()
    # the poller's failure log, where each failing scope waits for its recovery
    failures = stack.exporter._targets["sim"].poller.failures
    assert failures.failing() == [(f"list_jobs@{first}", "server"), (f"list_jobs@{second}", "server")]
    stack.sim.world.remove_cluster(second)
    stack.scrape(advance=300.0)
    # the deleted cluster will never recover: without forgetting, its entry would stay for good
    assert failures.failing() == [(f"list_jobs@{first}", "server")]


def test_last_success_is_right_across_seen_and_unseen_runs(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 1, "rate_limit": 0}, job_list_interval=0.0, history_interval=0.0
    )
    stack.scrape()
    cluster_id = stack.cluster_id()
    world = stack.sim.world
    world.add_job(cluster_id, "nightly")
    stack.scrape()
    assert stack.jobs()[(cluster_id, "nightly")].last_success is None  # never ran

    # run 1 succeeds while we watch
    world.start_run(cluster_id, "nightly", outcome="SUCCEEDED", duration=600)
    stack.scrape()
    world.finish_run(cluster_id, "nightly", "SUCCEEDED")
    first_end = stack.clock()
    stack.scrape()
    assert stack.jobs()[(cluster_id, "nightly")].last_success == pytest.approx(first_end, abs=1.0)

    # run 2 fails: last success stays at run 1
    world.start_run(cluster_id, "nightly", outcome="FAILED", duration=600)
    stack.scrape()
    world.finish_run(cluster_id, "nightly", "FAILED")
    stack.scrape()
    job = stack.jobs()[(cluster_id, "nightly")]
    assert job.status == "FAILED"
    assert job.last_success == pytest.approx(first_end, abs=1.0)

    # runs 3 (succeeds) and 4 (fails) both happen between two scrapes: only history can tell
    stack.clock.advance(5)
    world.start_run(cluster_id, "nightly", outcome="SUCCEEDED", duration=600)
    stack.clock.advance(5)
    world.finish_run(cluster_id, "nightly", "SUCCEEDED")
    unseen_end = stack.clock()
    stack.clock.advance(5)
    world.start_run(cluster_id, "nightly", outcome="FAILED", duration=600)
    stack.clock.advance(5)
    world.finish_run(cluster_id, "nightly", "FAILED")
    history_calls = stack.sim.stats.count("submissions")
    stack.scrape()  # sees run 4 failed, notices run 3 was skipped
    stack.scrape()  # reads the history
    job = stack.jobs()[(cluster_id, "nightly")]
    assert job.status == "FAILED"
    assert stack.sim.stats.count("submissions") > history_calls
    assert job.last_success == pytest.approx(unseen_end, abs=1.0)


def test_a_429_is_not_retried_and_the_job_keeps_its_last_known_state(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack({"clusters": 1, "jobs": 5, "rate_limit": 0}, job_list_interval=600.0)
    stack.scrape()
    stack.scrape()
    before = stack.jobs()
    assert all(j.refreshed_at is not None for j in before.values())
    calls = stack.sim.stats.count("job_status")
    fault = stack.sim.add_fault(Fault(endpoint="job_status", status=429, error_code="APIGW.0308"))
    stack.scrape()
    stack.sim.remove_fault(fault)
    throttled_calls = stack.sim.stats.count("job_status") - calls
    # the first 429 pauses the bucket: the requests already under way are all that go out
    assert 1 <= throttled_calls <= len(before)
    after = stack.jobs()
    for key, job in before.items():
        assert after[key].status == job.status
        assert after[key].refreshed_at == job.refreshed_at  # stale, and visibly so
    snapshot = stack.exporter.snapshot()
    assert snapshot.telemetry.requests[("job_status", "429")] == throttled_calls
    assert snapshot.targets[0].budget_remaining["job_status"] == 0
    assert snapshot.targets[0].up is True  # throttling says nothing about reachability
    stack.scrape()  # the pause (5 s) is over: fresh again
    assert all(j.refreshed_at == stack.clock() for j in stack.jobs().values())
