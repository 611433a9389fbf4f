"""Concurrent callers share one run of the work."""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from cdm_exporter.polling.singleflight import SingleFlight


def test_five_concurrent_callers_cause_one_run() -> None:
    flight = SingleFlight()
    release = threading.Event()
    started = threading.Event()
    runs: list[int] = []

    def work() -> None:
        runs.append(1)
        started.set()
        release.wait(10)

    leaders: list[bool] = []
    threads = [threading.Thread(target=lambda: leaders.append(flight.do(work, time.monotonic() + 10)))]
    threads[0].start()
    assert started.wait(5)
    for _ in range(4):
        t = threading.Thread(target=lambda: leaders.append(flight.do(work, time.monotonic() + 10)))
        t.start()
        threads.append(t)
    release.set()
    for t in threads:
        t.join(10)
    assert runs == [1]
    assert sorted(leaders) == [False, False, False, False, True]
    assert flight.runs == 1
    flight.do(work, time.monotonic() + 1)  # a later call runs again
    assert runs == [1, 1]


def test_a_waiter_gives_up_at_its_own_deadline() -> None:
    flight = SingleFlight()
    release = threading.Event()
    started = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    leader = threading.Thread(target=flight.do, args=(slow, time.monotonic() + 10))
    leader.start()
    assert started.wait(5)
    t0 = time.monotonic()
    assert flight.do(slow, t0 + 0.2) is False
    assert time.monotonic() - t0 < 2
    release.set()
    leader.join(10)


def test_the_leaders_error_reaches_the_waiters() -> None:
    flight = SingleFlight()
    started = threading.Event()
    release = threading.Event()

    runs: list[int] = []

    def broken() -> None:
        runs.append(1)
        started.set()
        release.wait(10)
        raise RuntimeError("boom")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flight.do(broken, time.monotonic() + 10)
        except RuntimeError as error:
            errors.append(error)

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=call)
    second.start()
    time.sleep(0.3)  # let the second caller join the flight before it ends
    release.set()
    first.join(10)
    second.join(10)
    assert runs == [1]  # one run, whose error both callers saw
    assert [str(e) for e in errors] == ["boom", "boom"]


def test_started_work_runs_once_on_its_own_thread_and_callers_only_hold_its_future() -> None:
    flight = SingleFlight()
    release = threading.Event()
    runs: list[str] = []

    def work() -> None:
        runs.append(threading.current_thread().name)
        release.wait(10)

    futures = [flight.start(work, name="flight-worker") for _ in range(50)]
    assert len({id(f) for f in futures}) == 1  # fifty callers, one run
    assert sum(1 for t in threading.enumerate() if t.name == "flight-worker") == 1
    with pytest.raises(FutureTimeout):
        futures[0].result(timeout=0.05)  # a caller's own deadline, while the run goes on
    release.set()
    futures[0].result(timeout=10)
    assert runs == ["flight-worker"]
    again = flight.start(lambda: runs.append("again"), name="flight-worker")
    assert again is not futures[0]
    again.result(timeout=10)
    assert runs[-1] == "again" and flight.runs == 2


def test_a_started_runs_error_reaches_its_future() -> None:
    def work() -> None:
        raise ValueError("boom")

    future = SingleFlight().start(work, name="flight-worker")
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=10)
