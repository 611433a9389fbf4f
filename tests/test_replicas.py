"""Two replicas sharing Redis, as real processes (``cdm-exporter serve --storage.redis-url``).

Against the simulator with its real rate limit (120 calls per minute per user and policy) and a
budget of 100 per policy, with more jobs than that budget can refresh, so that each replica alone
would spend all of it (and two, unshared, would be throttled). Each test runs for more than a
rolling minute of real time (several simulated minutes: the simulator's jobs run 60 times
faster) while both replicas are scraped every half second, as two Prometheus servers would.
Real time cannot be injected into processes whose rolling minute is kept by Redis' clock, so each
phase lasts only as long as its point needs (said where it is waited for):

* one budget: in no rolling minute do the two together exceed it, and nothing is throttled;
* one state: the replica that does not poll serves the same job, cluster and target series;
* the polling replica killed (SIGKILL): the other polls within one lease period;
* Redis stopped and started: every scrape answers 200, the budget holds, each replica says so
  (``cdm_exporter_storage_up 0``), both poll on their share, and one leads again after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exporter_stack import Exposition
from storage_stack import (
    ExporterProcess,
    RedisServer,
    assert_within_budget,
    eventually,
    job_series,
    require_redis_server,
    write_config,
)

from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings

BUDGET = 100
LEASE = 3.0  # seconds; --storage.lease-period (15 s by default)
SCRAPE_EVERY = 0.5


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=2, jobs=40, time_scale=60)) as simulator:
        yield simulator


def start_replicas(tmp_path: Path, sim: Simulator, redis_server: RedisServer) -> list[ExporterProcess]:
    config = write_config(tmp_path / "c.yml", sim, {"job_list_interval": "5s", "history_interval": "0s"})
    flags = [
        "--storage.redis-url",
        redis_server.url,
        "--storage.lease-period",
        f"{LEASE:g}s",
        "--storage.write-interval",
        "500ms",
        "--storage.redis-replicas",
        "2",
    ]
    replicas = [ExporterProcess(config, flags, tmp_path / f"replica{i}.log") for i in range(2)]
    for replica in replicas:
        replica.wait_serving()
    return replicas


def scrape_all(replicas: list[ExporterProcess]) -> list[Exposition]:
    """One scrape of each; every one must answer 200."""
    expositions = []
    for replica in replicas:
        status, exposition = replica.scrape()
        assert status == 200, f"replica on port {replica.port} answered {status}"
        expositions.append(exposition)
    return expositions


def scrape_for(replicas: list[ExporterProcess], seconds: float) -> list[list[Exposition]]:
    rounds = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        rounds.append(scrape_all(replicas))
        time.sleep(SCRAPE_EVERY)
    return rounds


def leader_of(expositions: list[Exposition]) -> list[float]:
    """``cdm_exporter_leader`` of each (-1 when absent, which it never should be)."""
    values = [e.value("cdm_exporter_leader") for e in expositions]
    return [-1.0 if value is None else value for value in values]


def test_two_replicas_share_one_budget_and_one_state_and_one_takes_over(
    tmp_path: Path, sim: Simulator, redis_server: RedisServer
) -> None:
    replicas = start_replicas(tmp_path, sim, redis_server)
    try:
        eventually(lambda: sorted(leader_of(scrape_all(replicas))) == [0.0, 1.0], 30, "one leader")
        # The leader's new bucket holds a whole minute: it spends what the shared window admits at
        # once, then paces the rest, so the window is soon full (what "the budget was the limit"
        # asserts), and stays so until the first calls leave it, 61 s after they were sent.
        # Ten lease periods of exactly one leader; the rolling minute is crossed below.
        rounds = scrape_for(replicas, 35)
        for expositions in rounds:
            assert sorted(leader_of(expositions)) == [0.0, 1.0], "exactly one replica polls"
            assert [e.value("cdm_exporter_storage_up") for e in expositions] == [1.0, 1.0]
        worst = assert_within_budget(sim, BUDGET)
        assert worst[("job_status", sim.settings.iam_user)] >= BUDGET * 0.8, "the budget was the limit"

        # one state: with the API down nothing changes any more, and the follower catches up
        leader_index = leader_of(rounds[-1]).index(1.0)
        leader, follower = replicas[leader_index], replicas[1 - leader_index]
        sim.add_fault(Fault("*", status=503))
        leader.scrape()

        def same_state() -> bool:
            shared = job_series(leader.scrape()[1])
            return bool(shared) and job_series(follower.scrape()[1]) == shared

        eventually(same_state, 30, "the follower to serve the leader's state", every=0.5)
        jobs = len(follower.scrape()[1].select("cdm_job_info"))
        assert jobs == 80  # every job, on both (scraped every 0.5 s, the budget goes to running jobs)
        sim.clear_faults()

        # the leader dies: the other polls within one lease period
        before = sim.stats.count("job_status")
        leader.kill()
        killed = time.monotonic()

        def polls() -> bool:
            return follower.scrape()[1].value("cdm_exporter_leader") == 1.0

        eventually(polls, 30, "the surviving replica to poll", every=0.1)
        took_over = time.monotonic() - killed
        # The dead leader's calls fill the shared window: the survivor's first status call waits
        # until the oldest of them leave it, a minute after the leader began, so it also shows the
        # window rolls (one that never dropped a call would keep the survivor silent for ever).
        # A survivor that ignored the dead leader's calls would call at once, over the budget.
        eventually(lambda: sim.stats.count("job_status") > before, 60, "status calls from the survivor")
        print(f"take-over after {took_over:.2f} s (lease period {LEASE:g} s)")
        # one lease period, plus what a loaded two-core machine adds to scheduling and scraping
        assert took_over <= LEASE + 1.5
        scrape_for([follower], 5)
        assert_within_budget(sim, BUDGET)
    finally:
        for replica in replicas:
            replica.stop()


def test_redis_stopped_and_started_no_failed_scrape_no_budget_breach(
    tmp_path: Path, sim: Simulator, redis_server: RedisServer
) -> None:
    replicas = start_replicas(tmp_path, sim, redis_server)
    try:
        eventually(lambda: sorted(leader_of(scrape_all(replicas))) == [0.0, 1.0], 30, "one leader")
        # the leader spends much of the budget at once: a replica polling on its share before the
        # leader's calls left the rolling minute would take the pair over it
        scrape_for(replicas, 5)

        redis_server.stop()
        stopped = time.monotonic()
        eventually(
            lambda: [e.value("cdm_exporter_storage_up") for e in scrape_all(replicas)] == [0.0, 0.0],
            30,
            "both replicas to report the store down",
        )
        calls_at_outage = sim.stats.count("job_status")
        # each replica sends nothing for a counted minute and a lease period (64 s), then polls on its share
        rounds = scrape_for(replicas, 75 - (time.monotonic() - stopped))
        assert all(leader_of(expositions) == [1.0, 1.0] for expositions in rounds[-10:]), "both poll"
        polled_alone = sim.stats.count("job_status") - calls_at_outage
        assert polled_alone > 0, "the replicas polled on their shares"
        assert_within_budget(sim, BUDGET)

        redis_server.start()
        eventually(
            lambda: [e.value("cdm_exporter_storage_up") for e in scrape_all(replicas)] == [1.0, 1.0],
            30,
            "both replicas to reach Redis again",
        )
        eventually(lambda: sorted(leader_of(scrape_all(replicas))) == [0.0, 1.0], 30, "one leader again")
        # a few lease periods under the new leader: every scrape still answers, the budget holds
        scrape_for(replicas, 10)
        worst = assert_within_budget(sim, BUDGET)
        print(f"outage: {polled_alone} status calls on shares; most in a rolling minute: {worst}")
        for replica in replicas:
            assert "Redis unreachable" in replica.log()
            assert "Redis reachable again" in replica.log()
    finally:
        for replica in replicas:
            replica.stop()
