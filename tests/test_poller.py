"""Budgeted incremental polling against the simulator over real HTTP (docs/architecture.md,
"Polling within the API budget").

Time is a shared manual clock: the simulator's rate-limit windows and job lifecycle, and the
exporter's budgets and refresh timestamps, all read it, so minutes of polling run in seconds
while every API call is real. The simulator reads it through a :class:`StoppableClock`, which a
test can stop: the simulated world stands still (no run starts or ends) while the exporter's time
goes on and it catches up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fake_api import MINUTE
from sim_targets import sim_target

from cdm_exporter.config import BudgetConfig, CollectionConfig, Config
from cdm_exporter.polling.state import JobState
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, ManualClock, RunView, Simulator, SimulatorSettings

SCRAPE_INTERVAL = 15.0
FAILED = ("FAILED", "FAILURE_ON_SUBMIT")


class StoppableClock:
    """``clock`` until :meth:`stop`, then the time it was stopped at."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.stopped_at: float | None = None

    def __call__(self) -> float:
        now = self.clock()
        return now if self.stopped_at is None else min(now, self.stopped_at)

    def stop(self) -> None:
        self.stopped_at = self.clock()


@dataclass
class Stack:
    sim: Simulator
    exporter: Exporter
    clock: ManualClock
    sim_clock: StoppableClock

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
        sim_clock = StoppableClock(clock)
        sim = Simulator(SimulatorSettings(clock=sim_clock, **(settings or {})))  # type: ignore[arg-type]
        sim.start("127.0.0.1", 0)
        exporter = Exporter(make_config(sim, **collection), wall=clock, mono=clock, pacing="off")
        stack = Stack(sim, exporter, clock, sim_clock)
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


def test_a_job_type_every_cluster_refuses_is_skipped_and_retried_hourly(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        {"clusters": 2, "jobs": 12, "rate_limit": 0, "refused_job_types": ("SCENARIO_JOB",)},
        job_list_interval=60.0,
    )

    def scenario_lists() -> int:
        return sum(1 for r in stack.sim.stats.log if "jobType=SCENARIO_JOB" in r.query)

    stack.scrape()
    assert scenario_lists() == 2  # once per cluster
    for _ in range(20):  # twenty minutes of lists
        stack.scrape(advance=60.0)
    assert scenario_lists() == 2
    views = stack.exporter.snapshot().targets[0].clusters
    assert all(view.up and view.unsupported_types == ("SCENARIO_JOB",) for view in views)
    listed = {name for _, name in stack.jobs()}
    expected = {
        job.name
        for cluster in stack.sim.world.clusters()
        for job in stack.sim.world.jobs(cluster.id)
        if job.job_type != "SCENARIO_JOB"
    }
    assert listed == expected
    stack.scrape(advance=3600.0)
    assert scenario_lists() == 4  # tried again after an hour, still refused


def test_last_success_from_a_shuffled_history_longer_than_a_page(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 0, "rate_limit": 0, "history_order": "shuffled", "history_size": 40},
        job_list_interval=0.0,
        history_interval=0.0,
    )
    cluster_id = stack.cluster_id()
    world = stack.sim.world
    world.add_job(cluster_id, "busy")
    stack.scrape()
    ends = []
    for n in range(25):  # 25 runs while nobody watched, the last success among them early on
        outcome = "SUCCEEDED" if n in (3, 7, 11) else "FAILED"
        world.start_run(cluster_id, "busy", outcome=outcome, duration=600)
        stack.clock.advance(5)
        world.finish_run(cluster_id, "busy", outcome)
        if outcome == "SUCCEEDED":
            ends.append(stack.clock())
        stack.clock.advance(5)
    calls = stack.sim.stats.count("submissions")
    stack.scrape()  # sees the latest run (failed) and that runs were missed
    stack.scrape()  # reads the history, page after page: nothing says the newest come first
    job = stack.jobs()[(cluster_id, "busy")]
    assert job.status == "FAILED"
    assert job.last_success == pytest.approx(ends[-1], abs=1.0)
    assert stack.sim.stats.count("submissions") - calls == 3  # 25 runs: three pages of 10


def test_a_newest_first_history_is_read_only_as_far_as_it_tells_something_new(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 0, "rate_limit": 0, "history_size": 40},
        job_list_interval=0.0,
        history_interval=0.0,
    )
    cluster_id = stack.cluster_id()
    world = stack.sim.world

    def run(outcome: str) -> None:
        world.start_run(cluster_id, "busy", outcome=outcome, duration=600)
        stack.clock.advance(5)
        world.finish_run(cluster_id, "busy", outcome)
        stack.clock.advance(5)

    world.add_job(cluster_id, "busy")
    for _ in range(20):  # before the exporter knew the job: history, not news
        run("FAILED")
    calls = stack.sim.stats.count("submissions")
    stack.scrape()  # the first sight: a failure
    stack.scrape()  # the whole history is read for a success: there is none
    assert stack.sim.stats.count("submissions") - calls == 2  # 20 runs: two pages of 10
    job = stack.jobs()[(cluster_id, "busy")]
    assert job.last_success is None and job.tally is not None and job.tally.runs == 0
    for n in range(5):  # while nobody watched; the newest success is among them
        run("SUCCEEDED" if n == 2 else "FAILED")
    calls = stack.sim.stats.count("submissions")
    stack.scrape()  # sees the latest run (failed) and that runs were missed
    stack.scrape()  # reads the history: page 1 holds the five runs, the success and the runs before
    job = stack.jobs()[(cluster_id, "busy")]
    assert job.last_success is not None
    assert job.tally is not None and (job.tally.runs, job.tally.failures) == (5, 4)
    assert stack.sim.stats.count("submissions") - calls == 1


# --- run counts over hours of simulated time ---------------------------------------------------------

#: simulated seconds per wall second in the run-count tests: a 15 s scrape interval is 2 minutes
RUN_TIME_SCALE = 8.0
#: scheduled jobs: name -> (period in simulated seconds, probability that a run fails)
FREQUENT_JOBS = {
    "every_minute": (60.0, 0.3),  # two runs end between two scrapes: most are seen only in history
    "every_2_minutes": (120.0, 0.2),
    "every_5_minutes": (300.0, 0.5),
    "every_15_minutes": (900.0, 0.2),
    "hourly": (3600.0, 0.3),
}


def test_a_refused_credential_is_tried_again_only_after_the_discovery_interval(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack({"clusters": 1, "jobs": 3, "rate_limit": 0}, discovery_interval=300.0)
    stack.scrape()
    known = set(stack.jobs())
    stack.sim.add_fault(Fault(endpoint="*", status=401))
    stack.sim.stats.reset()
    stack.clock.advance(300)  # the cluster list is due: its 401 refuses the credential
    stack.exporter.collect(10.0)
    assert stack.sim.stats.responses == {("list_clusters", 401): 1}  # nothing else sent after it
    for _ in range(19):  # 285 s of scrapes: nothing is sent with the refused credential
        stack.scrape()
    assert stack.sim.stats.responses == {("list_clusters", 401): 1}
    (target,) = stack.exporter.snapshot().targets
    assert target.up is False and target.error is not None and "HTTP 401" in target.error
    assert target.hint is not None and target.hint.startswith("check the token of target sim")
    assert set(stack.jobs()) == known  # the last known state stays
    stack.sim.clear_faults()
    stack.scrape()  # 300 s after the refusal: tried again, and it works
    (target,) = stack.exporter.snapshot().targets
    assert target.up is True and target.hint is None
    assert stack.sim.stats.count("list_clusters") == 2


def test_a_401_on_one_job_does_not_silence_the_others(make_stack: Callable[..., Stack]) -> None:
    """A job whose URL the gateway refuses (an odd name, say) is not a refused credential."""
    stack = make_stack({"clusters": 1, "jobs": 4, "rate_limit": 0})
    stack.scrape()
    names = sorted(name for _, name in stack.jobs())
    stack.sim.add_fault(Fault(endpoint="job_status", job_name=names[0], status=401))
    before = {name: job.refreshed_at for (_, name), job in stack.jobs().items()}
    for _ in range(2):
        stack.scrape(advance=60)
    after = {name: job.refreshed_at for (_, name), job in stack.jobs().items()}
    assert after[names[0]] == before[names[0]]
    assert all(after[name] != before[name] for name in names[1:])
    assert stack.sim.stats.count("list_clusters") >= 2  # the credential is checked again first


# --- run counts over hours of simulated time ---------------------------------------------------------

#: simulated seconds per wall second in the run-count tests: a 15 s scrape interval is 2 minutes
RUN_TIME_SCALE = 8.0
#: scheduled jobs: name -> (period in simulated seconds, probability that a run fails)
FREQUENT_JOBS = {
    "every_minute": (60.0, 0.3),  # two runs end between two scrapes: most are seen only in history
    "every_2_minutes": (120.0, 0.2),
    "every_5_minutes": (300.0, 0.5),
    "every_15_minutes": (900.0, 0.2),
    "hourly": (3600.0, 0.3),
}


def add_frequent_jobs(stack: Stack) -> str:
    cluster_id = stack.cluster_id()
    for name, (period, fail) in FREQUENT_JOBS.items():
        stack.sim.world.add_job(cluster_id, name, scheduled=True, period=period, fail_probability=fail)
    return cluster_id


def ended_since(stack: Stack, cluster_id: str, name: str, since: float) -> list[RunView]:
    """The runs of a job the simulator ended after wall time ``since``, from its whole history."""
    runs = stack.sim.world.history(cluster_id, name, limit=100_000).runs
    return [r for r in runs if r.finished and r.end is not None and r.end > since]


def counted(stack: Stack, cluster_id: str) -> dict[str, tuple[int, int, float]]:
    """(runs, failures, counting since) of each frequent job."""
    found = {}
    for name in FREQUENT_JOBS:
        tally = stack.jobs()[(cluster_id, name)].tally
        assert tally is not None, f"{name} has no run counts"
        found[name] = (tally.runs, tally.failures, tally.since)
    return found


def stop_and_catch_up(stack: Stack) -> None:
    """Stop the simulated world and scrape until the exporter has read what it missed: past the
    history interval, so every history read that was due has happened."""
    stack.sim_clock.stop()
    for _ in range(12):
        stack.scrape()


def assert_counts_match(stack: Stack, cluster_id: str, since: dict[str, float] | None = None) -> int:
    """Every frequent job's counters equal the runs the simulator ended after counting began (or
    after ``since``): failures included, none counted twice. Returns the runs counted."""
    total = 0
    problems = []
    for name, (runs, failures, began) in counted(stack, cluster_id).items():
        ended = ended_since(stack, cluster_id, name, since[name] if since else began)
        expected = (len(ended), sum(r.status in FAILED for r in ended))
        if (runs, failures) != expected:
            problems.append(f"{name}: counted {(runs, failures)}, the simulator ended {expected}")
        total += runs
    assert problems == []
    return total


@pytest.mark.parametrize("order", ["newest-first", "oldest-first", "shuffled"])
def test_run_counters_equal_the_runs_the_simulator_ended_over_hours(
    make_stack: Callable[..., Stack], order: str
) -> None:
    stack = make_stack(
        {
            "clusters": 1,
            "jobs": 0,
            "rate_limit": 0,
            "time_scale": RUN_TIME_SCALE,
            "history_order": order,
            "history_size": 60,
        },
        history_interval=60.0,
    )
    cluster_id = add_frequent_jobs(stack)
    scrapes = round(3 * 3600 / RUN_TIME_SCALE / SCRAPE_INTERVAL)  # three simulated hours
    for _ in range(scrapes):
        stack.scrape()
    stop_and_catch_up(stack)
    total = assert_counts_match(stack, cluster_id)
    runs, failures, _ = counted(stack, cluster_id)["every_minute"]
    # one status read per scrape sees at most one run end: the rest came from the history
    assert runs > scrapes
    assert failures > 0
    assert total > 300


def test_run_counters_go_on_across_a_reload(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 0, "rate_limit": 0, "time_scale": RUN_TIME_SCALE}, history_interval=60.0
    )
    cluster_id = add_frequent_jobs(stack)
    for _ in range(40):
        stack.scrape()
    before = counted(stack, cluster_id)
    assert sum(runs for runs, _, _ in before.values()) > 50
    # another budget: the target's poller is replaced
    stack.exporter.apply(
        make_config(stack.sim, history_interval=60.0, budget_per_minute=BudgetConfig(99, 99))
    )
    for _ in range(40):
        stack.scrape()
    stop_and_catch_up(stack)
    after = counted(stack, cluster_id)
    assert {name: since for name, (_, _, since) in after.items()} == {
        name: since for name, (_, _, since) in before.items()
    }, "counting started over at the reload"
    assert_counts_match(stack, cluster_id)


def test_a_job_deleted_and_created_again_counts_from_zero(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack(
        {"clusters": 1, "jobs": 0, "rate_limit": 0, "time_scale": RUN_TIME_SCALE}, history_interval=60.0
    )
    cluster_id = stack.cluster_id()
    world = stack.sim.world
    world.add_job(cluster_id, "recreated", scheduled=True, period=120.0, fail_probability=0.5)
    for _ in range(20):
        stack.scrape()
    old = stack.jobs()[(cluster_id, "recreated")].tally
    assert old is not None and old.runs > 5
    world.delete_job(cluster_id, "recreated")
    world.add_job(cluster_id, "recreated", scheduled=True, period=300.0, fail_probability=0.5)
    for _ in range(20):
        stack.scrape()
    stack.sim_clock.stop()
    for _ in range(12):
        stack.scrape()
    tally = stack.jobs()[(cluster_id, "recreated")].tally
    assert tally is not None and tally.since > old.since
    ended = ended_since(stack, cluster_id, "recreated", tally.since)
    assert (tally.runs, tally.failures) == (len(ended), sum(r.status in FAILED for r in ended))
    assert 0 < tally.runs < old.runs  # the new job's runs alone
