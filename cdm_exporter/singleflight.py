"""Single flight: concurrent callers share one run of a piece of work instead of each starting their own.

Used for a target's collection (concurrent scrapes share one) and for an IAM token request
(concurrent API calls share one). It imports nothing of the package, so every layer can use it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class FlightTimeout(TimeoutError):
    """A caller's timeout passed while it waited for the run it joined; that run goes on."""


def _same(error: BaseException) -> BaseException:
    return error


class SingleFlight(Generic[T]):
    """The first caller runs ``work``; callers arriving meanwhile wait for that run's outcome.

    :meth:`do` runs the work in the calling thread; :meth:`start` runs it on a thread of its own
    and hands back the run's future, so that waiting for it holds no worker anyone else needs.
    Both join a run in flight, however it was started.

    A waiting caller gives up at its own timeout (:class:`FlightTimeout`), so that a caller
    with a short deadline is never held hostage by a slower one already in flight. The run's
    error reaches every waiter of :meth:`do` as ``waiter_error(error)``: by default the same
    instance, which a caller that hands errors on may replace by a copy per waiter (one instance
    raised in several threads has its ``__traceback__`` rewritten concurrently). ``on_join`` is
    called when a caller joins a run in flight (tests synchronise on it).
    """

    def __init__(
        self,
        *,
        waiter_error: Callable[[BaseException], BaseException] = _same,
        on_join: Callable[[], None] | None = None,
    ) -> None:
        self._waiter_error = waiter_error
        self._on_join = on_join
        self._lock = threading.Lock()
        self._current: Future[T] | None = None
        self._runs = 0

    @property
    def runs(self) -> int:
        """How many times work actually ran."""
        with self._lock:
            return self._runs

    @property
    def in_flight(self) -> bool:
        """Whether a run is under way now."""
        with self._lock:
            return self._current is not None

    def do(self, work: Callable[[], T], timeout: float | None = None) -> T:
        """Run ``work``, or wait at most ``timeout`` seconds (None: no limit) for the run in flight."""
        flight, leader = self._join_or_lead()
        if leader:
            return self._lead(flight, work)
        try:
            error = flight.exception(None if timeout is None else max(0.0, timeout))
        except FutureTimeout:
            raise FlightTimeout("the run in flight did not end within the timeout") from None
        if error is not None:
            raise self._waiter_error(error)
        return flight.result()

    def start(self, work: Callable[[], T], name: str) -> Future[T]:
        """Start ``work`` on a thread named ``name`` unless a run is in flight; that run's future
        either way.

        Callers wait on the future with their own timeout, so waiting costs no pool thread:
        however many callers wait for a run that hangs, nothing else queues behind them. Threads
        stay bounded, one per flight at most. ``work``'s exception is logged (every caller may have
        stopped waiting) and set on the future.
        """
        flight, leader = self._join_or_lead()
        if leader:
            threading.Thread(
                target=self._run_started, args=(flight, work, name), name=name, daemon=True
            ).start()
        return flight

    def _join_or_lead(self) -> tuple[Future[T], bool]:
        with self._lock:
            flight = self._current
            if flight is None:
                flight = self._current = Future()
                flight.set_running_or_notify_cancel()  # a caller cannot cancel a run others share
                self._runs += 1
                return flight, True
        if self._on_join is not None:
            self._on_join()
        return flight, False

    def _lead(self, flight: Future[T], work: Callable[[], T]) -> T:
        try:
            result = work()
        except BaseException as error:
            self._end(flight)
            flight.set_exception(error)
            raise
        self._end(flight)
        flight.set_result(result)
        return result

    def _run_started(self, flight: Future[T], work: Callable[[], T], name: str) -> None:
        try:
            result = work()
        except BaseException as error:
            log.exception("%s failed", name)  # logged before any caller can see the outcome
            self._end(flight)
            flight.set_exception(error)
            return
        self._end(flight)
        flight.set_result(result)

    def _end(self, flight: Future[T]) -> None:
        """Before the outcome is set: a caller arriving from now on starts a fresh run."""
        with self._lock:
            if self._current is flight:
                self._current = None
