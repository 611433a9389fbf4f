"""The world model: job lifecycles over simulated time, determinism, quirks and mutations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import requests

from cdm_exporter.simulator import (
    JobNotFound,
    JobRunning,
    ManualClock,
    NoRunInProgress,
    Simulator,
    SimulatorSettings,
    World,
)
from cdm_exporter.simulator.world import InvalidValue

START = 1_750_000_000.0


def get(sim: Simulator, path: str, **params: Any) -> requests.Response:
    return requests.get(
        sim.url + path, params=params, headers={"X-Auth-Token": sim.settings.token}, timeout=10
    )


def status_path(sim: Simulator, cid: str, name: str) -> str:
    return f"/v1.1/{sim.settings.project_id}/clusters/{cid}/cdm/job/{quote(name, safe='')}/status"


def statuses_over(world: World, clock: ManualClock, seconds: float, step: float) -> set[str]:
    seen: set[str] = set()
    for _ in range(int(seconds / step)):
        for c in world.clusters():
            for j in world.jobs(c.id):
                seen.add(j.latest.status if j.latest else "NEVER_EXECUTED")
        clock.advance(step)
    return seen


def test_lifecycle_produces_every_status() -> None:
    clock = ManualClock(START)
    world = World(SimulatorSettings(clusters=2, jobs=20, clock=clock))
    seen = statuses_over(world, clock, seconds=2 * 3600, step=20)
    assert {"BOOTING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "NEVER_EXECUTED"} <= seen


@pytest.mark.parametrize("seed", range(1, 9))
def test_fresh_world_is_lively(seed: int) -> None:
    """The demo relies on RUNNING, SUCCEEDED and FAILED being visible at once right away."""
    clock = ManualClock(START)
    world = World(SimulatorSettings(seed=seed, clock=clock))
    for _ in range(5):
        counts = world.status_counts()
        assert {"RUNNING", "SUCCEEDED", "FAILED"} <= set(counts), counts
        clock.advance(8)


def test_lively_over_http_with_the_real_clock(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator()
    statuses = set()
    for c in sim.world.clusters():
        body = get(sim, f"/v1.1/{sim.settings.project_id}/clusters/{c.id}/cdm/job/all", page_size=100).json()
        statuses |= {j["status"] for j in body["jobs"]}
    assert {"RUNNING", "SUCCEEDED", "FAILED"} <= statuses


def test_a_run_progresses_and_ends_with_counters() -> None:
    clock = ManualClock(START)
    world = World(SimulatorSettings(clock=clock))
    cid = world.clusters()[0].id
    job = world.jobs(cid)[0]  # mid-run at start (the showcase's running job)
    assert job.latest is not None and job.latest.status == "RUNNING"
    sid = job.latest.submission_id
    progress, rows = job.latest.progress, job.latest.rows_read
    while True:
        clock.advance(7)
        latest = world.job(cid, job.name).latest
        assert latest is not None and latest.submission_id == sid
        if latest.status != "RUNNING":
            break
        assert latest.progress >= progress and latest.rows_read >= rows
        assert 0 <= latest.progress < 100
        progress, rows = latest.progress, latest.rows_read
    assert latest.status == "SUCCEEDED"
    assert latest.progress == 100 and latest.rows_read > rows and latest.end is not None


def test_submission_ids_increase_one_per_run() -> None:
    clock = ManualClock(START)
    world = World(SimulatorSettings(clusters=1, jobs=3, clock=clock))
    cid = world.clusters()[0].id
    name = world.jobs(cid)[1].name
    ids: list[int] = []
    for _ in range(400):
        latest = world.job(cid, name).latest
        assert latest is not None
        if not ids or ids[-1] != latest.submission_id:
            ids.append(latest.submission_id)
        clock.advance(30)
    assert len(ids) >= 3
    assert ids == list(range(ids[0], ids[0] + len(ids)))


def test_history_keeps_the_last_runs_newest_first() -> None:
    clock = ManualClock(START)
    world = World(SimulatorSettings(clusters=1, jobs=3, history_size=7, clock=clock))
    cid = world.clusters()[0].id
    history = world.history(cid, world.jobs(cid)[1].name)
    assert history.total == 7 and history.started > 7
    ids = [r.submission_id for r in history.runs]
    assert ids == list(range(ids[0], ids[0] - 7, -1))
    starts = [r.start for r in history.runs]
    assert starts == sorted(starts, reverse=True)
    assert all(r.finished for r in history.runs[1:])
    # a test counting runs asks for more than the API keeps: the same runs, and the older ones
    longer = world.history(cid, world.jobs(cid)[1].name, limit=history.started)
    assert longer.total == history.started and len(longer.runs) == history.started
    assert longer.runs[:7] == history.runs


def _all_bodies(sim: Simulator) -> list[bytes]:
    pid = sim.settings.project_id
    bodies = [get(sim, f"/v1.1/{pid}/clusters").content]
    for c in sim.world.clusters():
        for job_type in ("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB"):
            bodies.append(get(sim, f"/v1.1/{pid}/clusters/{c.id}/cdm/job/all", jobType=job_type).content)
        for j in sim.world.jobs(c.id):
            bodies.append(get(sim, status_path(sim, c.id, j.name)).content)
            bodies.append(get(sim, f"/v1.1/{pid}/clusters/{c.id}/cdm/submissions", jname=j.name).content)
    return bodies


def test_same_seed_and_clock_give_identical_bodies(make_simulator: Callable[..., Simulator]) -> None:
    one = make_simulator(seed=42, clock=ManualClock(START), rate_limit=0)
    two = make_simulator(seed=42, clock=ManualClock(START), rate_limit=0)
    other = make_simulator(seed=43, clock=ManualClock(START), rate_limit=0)
    first = _all_bodies(one)
    assert first == _all_bodies(two)
    assert first == _all_bodies(one)  # a fixed clock gives fixed output
    assert first[0] != _all_bodies(other)[0]


def test_moving_the_clock_changes_and_restores_answers(make_simulator: Callable[..., Simulator]) -> None:
    clock = ManualClock(START)
    sim = make_simulator(clock=clock, rate_limit=0)
    before = _all_bodies(sim)
    clock.advance(600)
    assert _all_bodies(sim) != before
    clock.set(START)
    assert _all_bodies(sim) == before


def _submissions(sim: Simulator) -> list[dict[str, Any]]:
    pid = sim.settings.project_id
    subs: list[dict[str, Any]] = []
    for c in sim.world.clusters():
        for j in sim.world.jobs(c.id):
            body = get(
                sim, f"/v1.1/{pid}/clusters/{c.id}/cdm/submissions", jname=j.name, page_size=100
            ).json()
            subs += body["submissions"]
    return subs


def test_quirks_appear_and_follow_the_documented_rules(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=2, jobs=15, clock=ManualClock(START), rate_limit=0)
    subs = [s for s in _submissions(sim) if "submission-id" in s]
    assert len(subs) > 100
    keys = [("last-udpate-user" in s, "last-update-user" in s) for s in subs]
    assert {(True, False), (False, True), (True, True)} <= set(keys)
    assert {type(s["creation-date"]) for s in subs} == {int, str}
    assert {type(s["last-update-date"]) for s in subs} == {int, str}
    assert {type(s["progress"]) for s in subs} == {int, float}
    assert all(isinstance(s["isStopingIncrement"], str) for s in subs)
    assert "" in {s["isStopingIncrement"] for s in subs}
    for s in subs:
        assert ("counters" in s) == (s["status"] == "SUCCEEDED")
        failed = s["status"] in ("FAILED", "FAILURE_ON_SUBMIT")
        assert ("error-summary" in s) == failed == ("error-details" in s)
        if failed:
            assert s["progress"] == -1
            assert len(s["error-details"]) > 1000
        if s["status"] == "SUCCEEDED":
            counters = s["counters"]["org.apache.sqoop.submission.counter.SqoopCounters"]
            assert set(counters) == {
                "BYTES_READ", "BYTES_WRITTEN", "ROWS_READ", "ROWS_WRITTEN", "ROWS_WRITTEN_SKIPPED",
                "TOTAL_SIZE", "TOTAL_FILES", "FILES_READ", "FILES_WRITTEN", "FILES_SKIPPED",
            }  # fmt: skip
            assert s["progress"] == 100
    assert any(len(s.get("error-summary", "")) > 256 for s in subs)


def test_never_executed_jobs_answer_both_variants(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=3, jobs=40, clock=ManualClock(START), rate_limit=0)
    cid = sim.world.clusters()[0].id
    never = [j for j in sim.world.jobs(cid) if j.latest is None]
    assert len(never) >= 4
    answers = [get(sim, status_path(sim, cid, j.name)).json()["submissions"] for j in never]
    assert [] in answers
    filled = [a[0] for a in answers if a]
    assert filled and all(a["status"] == "NEVER_EXECUTED" and a["progress"] == -1 for a in filled)


# --- mutations --------------------------------------------------------------------------------


@pytest.fixture
def clocked() -> tuple[World, ManualClock, str]:
    clock = ManualClock(START)
    world = World(SimulatorSettings(clusters=1, jobs=5, clock=clock))
    return world, clock, world.clusters()[0].id


def test_add_start_and_finish_a_job(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    job = world.add_job(cid, "fresh", "SCENARIO_JOB")
    assert job.list_status == "NEW" and job.latest is None and not job.scheduled
    run = world.start_run(cid, "fresh", outcome="FAILED", duration=100)
    assert run.status in ("BOOTING", "PENDING")
    with pytest.raises(JobRunning):
        world.start_run(cid, "fresh")
    seen = []
    for _ in range(30):
        clock.advance(5)
        latest = world.job(cid, "fresh").latest
        assert latest is not None
        seen.append(latest.status)
    assert "RUNNING" in seen and seen[-1] == "FAILED"
    final = world.job(cid, "fresh").latest
    assert final is not None and final.error_summary and final.progress == -1
    second = world.start_run(cid, "fresh", outcome="SUCCEEDED", duration=10)
    assert second.submission_id == run.submission_id + 1
    clock.advance(11)
    latest = world.job(cid, "fresh").latest
    assert latest is not None and latest.status == "SUCCEEDED"
    assert world.history(cid, "fresh").total == 2


def test_force_current_run_to_fail_now(clocked: tuple[World, ManualClock, str]) -> None:
    world, _, cid = clocked
    name = world.jobs(cid)[0].name  # running at start
    world.set_run_outcome(cid, name, "FAILED", end_now=True)
    latest = world.job(cid, name).latest
    assert latest is not None and latest.status == "FAILED" and latest.finished
    with pytest.raises(NoRunInProgress):
        world.finish_run(cid, name, "SUCCEEDED")


def test_a_run_can_be_stopped(clocked: tuple[World, ManualClock, str]) -> None:
    world, _, cid = clocked
    name = world.jobs(cid)[0].name
    world.finish_run(cid, name, "STOPPED")
    job = world.job(cid, name)
    assert job.list_status == "STOPPED"
    assert job.latest is not None and job.latest.error_summary is None and job.latest.progress == -1


def test_force_current_run_outcome_keeps_its_end(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    name = world.jobs(cid)[0].name
    world.set_run_outcome(cid, name, "FAILED")
    latest = world.job(cid, name).latest
    assert latest is not None and latest.status == "RUNNING"
    clock.advance(400)
    latest = world.job(cid, name).latest
    assert latest is not None and latest.status == "FAILED"


def test_force_next_scheduled_run(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    name = world.jobs(cid)[1].name  # just succeeded, next run later
    first = world.job(cid, name).latest
    assert first is not None and first.status == "SUCCEEDED"
    world.set_run_outcome(cid, name, "FAILURE_ON_SUBMIT", which="next")
    latest = first
    for _ in range(200):
        clock.advance(10)
        now = world.job(cid, name).latest
        assert now is not None
        latest = now
        if latest.submission_id != first.submission_id and latest.finished:
            break
    assert latest.submission_id == first.submission_id + 1
    assert latest.status == "FAILURE_ON_SUBMIT" and latest.external_id == ""


def test_pending_outcome_goes_to_a_manual_start(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    name = world.jobs(cid)[1].name
    world.set_run_outcome(cid, name, "FAILED", which="next")
    run = world.start_run(cid, name, duration=50)
    clock.advance(60)
    latest = world.job(cid, name).latest
    assert latest is not None and latest.submission_id == run.submission_id and latest.status == "FAILED"


def test_manual_run_suppresses_overlapping_scheduled_runs(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    name = world.jobs(cid)[1].name
    before = world.history(cid, name).started
    world.start_run(cid, name, duration=3000, outcome="SUCCEEDED")
    clock.advance(2999)
    latest = world.job(cid, name).latest
    assert latest is not None and latest.status == "RUNNING" and latest.manual
    assert world.history(cid, name).started == before + 1


def test_delete_job_and_cluster_changes(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=2, jobs=3)
    pid = sim.settings.project_id
    cid = sim.world.clusters()[0].id
    name = sim.world.jobs(cid)[0].name
    sim.world.delete_job(cid, name)
    r = get(sim, status_path(sim, cid, name))
    assert r.status_code == 400 and r.json()["errCode"] in ("Cdm.0100", "Cdm.0054")
    with pytest.raises(JobNotFound):
        sim.world.delete_job(cid, name)
    sim.world.set_cluster_status(cid, "910")
    listed = {c["id"]: c for c in get(sim, f"/v1.1/{pid}/clusters").json()["clusters"]}
    assert listed[cid]["status"] == "910" and listed[cid]["statusDetail"] == "Stopping"
    assert get(sim, f"/v1.1/{pid}/clusters/{cid}/cdm/job/all").status_code == 400
    added = sim.world.add_cluster(name="late-cluster", jobs=2)
    assert added.job_count == 2
    sim.world.remove_cluster(cid)
    ids = [c["id"] for c in get(sim, f"/v1.1/{pid}/clusters").json()["clusters"]]
    assert cid not in ids and added.id in ids


def test_invalid_mutations_are_refused(clocked: tuple[World, ManualClock, str]) -> None:
    world, _, cid = clocked
    with pytest.raises(InvalidValue):
        world.add_job(cid, "x", "WEIRD_JOB")
    with pytest.raises(InvalidValue):
        world.start_run(cid, world.jobs(cid)[0].name, outcome="MAYBE")
    with pytest.raises(InvalidValue):
        world.add_job(cid, "")


def test_scheduled_added_job_runs_on_its_own(clocked: tuple[World, ManualClock, str]) -> None:
    world, clock, cid = clocked
    world.add_job(cid, "every-minute", scheduled=True, period=60, fail_probability=0.0)
    clock.advance(600)
    history = world.history(cid, "every-minute")
    assert history.started >= 9
    # fail_probability 0: no FAILED run (FAILURE_ON_SUBMIT stays possible, as on a real cluster)
    assert all(r.status in ("SUCCEEDED", "FAILURE_ON_SUBMIT") for r in history.runs[1:])
