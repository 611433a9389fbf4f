"""Concurrent callers share one run of the work.

Callers are synchronised on events and on the flight's ``on_join`` hook, never on sleeps: a
test knows a caller has joined the run in flight because the flight told it so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from cdm_exporter.singleflight import FlightTimeout, SingleFlight

WAIT = 10.0  # only ever reached when the code is wrong


class Joins:
    """Counts the callers that joined a run in flight; ``wait(n)`` blocks until n did."""

    def __init__(self) -> None:
        self._joined = threading.Semaphore(0)

    def __call__(self) -> None:
        self._joined.release()

    def wait(self, n: int) -> None:
        for _ in range(n):
            assert self._joined.acquire(timeout=WAIT), "a caller never joined"


def blocked_work(
    result: str, runs: list[int], started: threading.Event, release: threading.Event
) -> Callable[[], str]:
    def work() -> str:
        runs.append(1)
        started.set()
        assert release.wait(WAIT)
        return result

    return work


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_five_concurrent_callers_cause_one_run_and_share_its_result() -> None:
    joins = Joins()
    flight: SingleFlight[str] = SingleFlight(on_join=joins)
    runs: list[int] = []
    started, release = threading.Event(), threading.Event()
    work = blocked_work("fresh", runs, started, release)
    results: list[str] = []
    threads = [start(lambda: results.append(flight.do(work, WAIT)))]
    assert started.wait(WAIT)
    threads += [start(lambda: results.append(flight.do(work, WAIT))) for _ in range(4)]
    joins.wait(4)  # all four are waiting for the first caller's run
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert runs == [1]
    assert results == ["fresh"] * 5
    assert flight.runs == 1
    assert not flight.in_flight
    assert flight.do(lambda: "again") == "again"  # a later call runs again
    assert flight.runs == 2


def test_a_waiter_gives_up_at_its_own_timeout_and_the_run_goes_on() -> None:
    flight: SingleFlight[str] = SingleFlight()
    runs: list[int] = []
    started, release = threading.Event(), threading.Event()
    work = blocked_work("late", runs, started, release)
    results: list[str] = []
    leader = start(lambda: results.append(flight.do(work, WAIT)))
    assert started.wait(WAIT)
    assert flight.in_flight
    with pytest.raises(FlightTimeout):
        flight.do(work, timeout=0.0)  # no time left: does not wait, does not start a second run
    release.set()
    leader.join(WAIT)
    assert runs == [1]
    assert results == ["late"]


@pytest.mark.parametrize("copied", [False, True], ids=["same-error", "error-per-waiter"])
def test_the_leaders_error_reaches_the_waiters(copied: bool) -> None:
    joins = Joins()

    def copy(error: BaseException) -> BaseException:
        return RuntimeError(*map(str, error.args))

    flight: SingleFlight[None] = SingleFlight(on_join=joins, **({"waiter_error": copy} if copied else {}))
    runs: list[int] = []
    started, release = threading.Event(), threading.Event()

    def broken() -> None:
        runs.append(1)
        started.set()
        assert release.wait(WAIT)
        raise RuntimeError("boom")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flight.do(broken, WAIT)
        except RuntimeError as error:
            errors.append(error)

    first = start(call)
    assert started.wait(WAIT)
    second = start(call)
    joins.wait(1)  # the second caller joined the flight before it ends
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert runs == [1]  # one run, whose error both callers saw
    assert [str(e) for e in errors] == ["boom", "boom"]
    assert (errors[0] is errors[1]) is not copied
    assert not flight.in_flight  # a failed run does not block the next


def test_started_work_runs_once_on_its_own_thread_and_callers_only_hold_its_future() -> None:
    joins = Joins()
    flight: SingleFlight[None] = SingleFlight(on_join=joins)
    release = threading.Event()
    runs: list[str] = []

    def work() -> None:
        runs.append(threading.current_thread().name)
        assert release.wait(WAIT)

    futures = [flight.start(work, name="flight-worker") for _ in range(50)]
    joins.wait(49)
    assert len({id(f) for f in futures}) == 1  # fifty callers, one run
    assert sum(1 for t in threading.enumerate() if t.name == "flight-worker") == 1
    assert not futures[0].cancel()  # no caller can cancel the run the others wait for
    with pytest.raises(FutureTimeout):
        futures[0].result(timeout=0.05)  # a caller's own deadline, while the run goes on
    release.set()
    futures[0].result(timeout=WAIT)
    assert runs == ["flight-worker"]
    again = flight.start(lambda: runs.append("again"), name="flight-worker")
    assert again is not futures[0]
    again.result(timeout=WAIT)
    assert runs[-1] == "again" and flight.runs == 2


def test_a_started_run_and_a_called_one_are_the_same_flight() -> None:
    joins = Joins()
    flight: SingleFlight[str] = SingleFlight(on_join=joins)
    runs: list[int] = []
    started, release = threading.Event(), threading.Event()
    future = flight.start(blocked_work("started", runs, started, release), name="flight-worker")
    assert started.wait(WAIT)
    results: list[str] = []
    caller = start(lambda: results.append(flight.do(lambda: "called", WAIT)))
    joins.wait(1)  # the caller joined the started run instead of running its own work
    release.set()
    caller.join(WAIT)
    assert results == ["started"] and future.result(WAIT) == "started" and runs == [1]


def test_a_started_runs_error_reaches_its_future_and_the_log(caplog: pytest.LogCaptureFixture) -> None:
    def work() -> None:
        raise ValueError("boom")

    caplog.set_level(logging.ERROR)
    flight: SingleFlight[None] = SingleFlight()
    future = flight.start(work, name="flight-worker")
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=WAIT)
    assert [r.getMessage() for r in caplog.records] == ["flight-worker failed"]
    assert flight.start(lambda: None, name="flight-worker").result(WAIT) is None  # not stuck
