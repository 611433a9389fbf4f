"""The Redis store in-process, on a real redis-server started by the test (loopback, no persistence).

The lease, the fenced state writes and the followers' reads, the shared budget with its
heartbeats, and what a replica cut off from Redis may spend (its monotonic clock injected, so the
minute it must wait passes without sleeping). Replicas as real processes: ``test_replicas.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exporter_stack import MonoClock
from storage_stack import RedisServer, eventually

from cdm_exporter.polling.budget import COUNTED_WINDOW_SECONDS, BudgetKey
from cdm_exporter.polling.persistence import StoreError
from cdm_exporter.storage import window_name
from cdm_exporter.storage.redis_link import connect
from cdm_exporter.storage.redis_store import RedisStore
from cdm_exporter.storage.shared_budget import BUDGET_KEY

PERIOD = 1.0  # lease period: short, so that take-overs happen within the test's patience
KEY = BudgetKey("token:0123456789ab", "job_status")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def make_store(redis_server: RedisServer) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**kwargs: object) -> RedisStore:
        password = kwargs.pop("password", None)
        client = connect(redis_server.url, password=password, timeout=0.5)  # type: ignore[arg-type]
        store = RedisStore(client, lease_period=PERIOD, **kwargs)  # type: ignore[arg-type]
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def leaders(*stores: RedisStore) -> list[str]:
    return [store.me for store in stores if store.role() == "leader"]


# --- the lease ---------------------------------------------------------------------------------------


def test_one_replica_leads_and_another_takes_over_when_it_stops(
    make_store: Callable[..., RedisStore],
) -> None:
    a, b = make_store(me="a"), make_store(me="b")
    eventually(lambda: len(leaders(a, b)) == 1, 10, "one leader")
    for _ in range(20):  # and only one, while both renew and seek
        assert len(leaders(a, b)) == 1
        time.sleep(PERIOD / 10)
    first = a if a.role() == "leader" else b
    other = b if first is a else a
    assert other.role() == "follower" and other.up()
    started = time.monotonic()
    first.close()  # a clean stop releases the lease
    eventually(lambda: other.role() == "leader", 10, "the other replica to lead")
    assert time.monotonic() - started < PERIOD * 3  # generous: a loaded machine


def test_a_leader_that_stops_renewing_loses_the_lease_within_one_period(
    make_store: Callable[..., RedisStore],
) -> None:
    a = make_store(me="a")
    eventually(lambda: a.role() == "leader", 10, "a to lead")
    b = make_store(me="b")
    assert b.role() == "follower"
    a._stop.set()  # a hung process: its thread renews nothing more, it releases nothing
    a._thread.join()
    hung = time.monotonic()
    eventually(lambda: b.role() == "leader", 10, "b to lead")
    assert a.role() != "leader"  # a stopped counting itself the leader before b took over
    assert time.monotonic() - hung < PERIOD * 3


# --- shared state ----------------------------------------------------------------------------------


def test_followers_read_what_the_leader_wrote_and_a_follower_cannot_write(
    make_store: Callable[..., RedisStore],
) -> None:
    leader = make_store(me="a")
    eventually(lambda: leader.role() == "leader", 10, "a to lead")
    follower = make_store(me="b")
    leader.save({"x": {"v": 1, "n": 1}, "y": {"v": 1, "n": 2}}, [])
    everything = follower.load()
    assert everything.complete and everything.records == {"x": {"v": 1, "n": 1}, "y": {"v": 1, "n": 2}}
    leader.save({"z": {"v": 1, "n": 3}}, ["x"])
    changes = follower.load(everything.generation)
    assert not changes.complete and changes.records == {"z": {"v": 1, "n": 3}, "x": None}
    assert follower.load(changes.generation).records == {}  # nothing new
    with pytest.raises(StoreError, match="no longer holds the lease"):
        follower.save({"y": {"v": 1, "n": 99}}, [])
    assert follower.load().records["y"] == {"v": 1, "n": 2}


# --- the shared budget --------------------------------------------------------------------------------


def test_replicas_share_one_rolling_minute(make_store: Callable[..., RedisStore]) -> None:
    a, b = make_store(me="a"), make_store(me="b")
    eventually(lambda: len(leaders(a, b)) == 1, 10, "one leader")
    wa, wb = a.windows.window(KEY), b.windows.window(KEY)
    taken = 0
    for _ in range(15):
        taken += wa.take(20)
        taken += wb.take(20)
    assert taken == 20  # both replicas live: the full limit, for both together


def test_a_lapsed_heartbeat_lowers_the_limit_by_its_share(make_store: Callable[..., RedisStore]) -> None:
    alone = make_store(me="a", replicas=2)  # the other expected replica never shows up
    window = alone.windows.window(KEY)
    assert sum(window.take(20) for _ in range(30)) == 10  # it may be polling on its own share


def test_a_replica_cut_off_from_redis_waits_a_minute_then_spends_its_share(
    redis_server: RedisServer, make_store: Callable[..., RedisStore]
) -> None:
    mono = MonoClock()
    store = make_store(me="a", replicas=2, mono=mono)
    other = make_store(me="b", replicas=2)
    window = store.windows.window(KEY)
    assert sum(window.take(20) for _ in range(3)) == 3  # on Redis

    redis_server.stop()
    assert not window.take(20)  # the first failure: it cannot see what the others sent
    assert not store.up()
    mono.advance(COUNTED_WINDOW_SECONDS)
    assert store.role() == "alone"  # its lease lapsed: it polls, on its share
    assert not window.take(20)  # the others counted it live for one more period
    mono.advance(PERIOD + 0.5)
    # its share (20 / 2) less the 3 calls of its own still in the rolling minute
    assert sum(window.take(20) for _ in range(30)) == 7

    redis_server.start()  # empty: no persistence
    eventually(store.up, 10, "the store to reach Redis again")
    other_window = other.windows.window(KEY)

    def shared_calls() -> int | None:
        calls = int(redis_server.client().zcard(BUDGET_KEY.format(window_name(KEY))))
        return calls if calls >= 10 else None

    # its ten calls of the last minute are back in the shared window (the restart lost the 3)
    assert eventually(shared_calls, 10, "its calls to be in Redis again") == 10
    eventually(other.up, 10, "the other replica to reach Redis")
    assert sum(other_window.take(20) for _ in range(30)) == 10  # the rest of the minute


def test_a_password_from_the_caller_and_a_wrong_one_reported(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="s3cret-for-test") as server:
        good = RedisStore(connect(server.url, password="s3cret-for-test", timeout=0.5), lease_period=PERIOD)
        try:
            assert good.up() and good.role() == "leader"
        finally:
            good.close()
        bad = RedisStore(connect(server.url, password="wrong", timeout=0.5), lease_period=PERIOD)
        try:
            assert not bad.up() and bad.role() == "alone"
        finally:
            bad.close()
