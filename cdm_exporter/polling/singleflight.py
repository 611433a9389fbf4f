"""Concurrent callers share one run of a piece of work instead of each starting their own."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

log = logging.getLogger(__name__)


class SingleFlight:
    """The first caller runs ``work``; callers arriving meanwhile wait for that run.

    A waiting caller gives up at its own deadline and serves what is known, so that a scrape
    with a short timeout is never held hostage by a slower one already in flight.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Future[None] | None = None
        self.runs = 0  # how many times work actually ran; for tests and benchmarks

    def do(self, work: Callable[[], None], deadline: float) -> bool:
        """Run or join ``work``; True when this caller ran it. Exceptions reach every waiter."""
        with self._lock:
            future = self._current
            leader = future is None
            if future is None:
                future = self._current = Future()
                self.runs += 1
        if leader:
            try:
                work()
            except BaseException as error:
                future.set_exception(error)
                raise
            else:
                future.set_result(None)
            finally:
                with self._lock:
                    self._current = None
            return True
        with contextlib.suppress(FutureTimeout):  # past our deadline: serve what is known
            future.result(timeout=max(0.0, deadline - self._clock()))
        return False

    def start(self, work: Callable[[], None], name: str) -> Future[None]:
        """Start ``work`` on a thread of its own unless a run is in flight; that run's future either way.

        Callers wait on the future with their own deadline, so waiting costs no pool thread: however
        many scrapes wait for a hanging target, no other target's run queues behind them. Threads
        stay bounded, one per flight at most. ``work``'s exception is logged and set on the future.
        """
        with self._lock:
            if self._current is not None:
                return self._current
            future: Future[None] = Future()
            self._current = future
            self.runs += 1

        def run() -> None:
            error: BaseException | None = None
            try:
                work()
            except BaseException as exc:
                log.exception("%s failed", name)
                error = exc
            with self._lock:  # before the result: a caller arriving now starts a fresh run
                self._current = None
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        threading.Thread(target=run, name=name, daemon=True).start()
        return future
