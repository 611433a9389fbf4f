"""Single flight: concurrent callers share one run of a piece of work instead of each starting their own.

Used for a target's collection (concurrent scrapes share one) and for an IAM token request
(concurrent API calls share one). It imports nothing of the package, so every layer can use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class FlightTimeout(TimeoutError):
    """A caller's timeout passed while it waited for the run it joined; that run goes on."""


def _same(error: BaseException) -> BaseException:
    return error


class _Flight(Generic[T]):
    """One run in progress: its callers wait on ``done``, then read its result or error."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """The first caller runs ``work``; callers arriving meanwhile wait for that run's outcome.

    A waiting caller gives up at its own timeout (:class:`FlightTimeout`), so that a caller
    with a short deadline is never held hostage by a slower one already in flight. The run's
    error reaches every waiter as ``waiter_error(error)``: by default the same instance, which a
    caller that hands errors on may replace by a copy per waiter (one instance raised in several
    threads has its ``__traceback__`` rewritten concurrently). ``on_join`` is called when a
    caller joins a run in flight (tests synchronise on it).
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
        self._current: _Flight[T] | None = None
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
        with self._lock:
            flight = self._current
            leader = flight is None
            if flight is None:
                flight = self._current = _Flight()
                self._runs += 1
        if leader:
            return self._lead(flight, work)
        if self._on_join is not None:
            self._on_join()
        if not flight.done.wait(None if timeout is None else max(0.0, timeout)):
            raise FlightTimeout("the run in flight did not end within the timeout")
        if flight.error is not None:
            raise self._waiter_error(flight.error)
        return cast(T, flight.result)  # set before done when there is no error

    def _lead(self, flight: _Flight[T], work: Callable[[], T]) -> T:
        try:
            result = work()
        except BaseException as error:
            flight.error = error
            raise
        else:
            flight.result = result
        finally:
            with self._lock:
                self._current = None
            flight.done.set()
        return result
