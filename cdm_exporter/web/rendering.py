"""Concurrent scrapes of the same exposition share one rendering.

Rendering tens of thousands of jobs costs seconds of CPU and tens of megabytes, and every
concurrent scrape used to render its own copy. Renderings are keyed by what makes their bytes
differ (the targets, the format, gzip). At most one rendering per key runs at a time. A scrape
whose data was ready (its collection ended) before the running rendering started, or at most
:data:`SHARE_WINDOW` after, shares that rendering; one whose data came later waits for the *next*
rendering, which starts when the running one ends and serves every such scrape. So no scrape gets
bytes more than a second older than its own collection, and at most two bodies per key are alive
at once, however many scrapes wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: seconds a caller's data may be newer than a running rendering it shares: scrapes that arrive
#: together reach the renderer milliseconds apart, each after its own (usually empty) collection,
#: and a second of results landing in the background is well within a scrape interval
SHARE_WINDOW = 1.0


@dataclass
class _Slot(Generic[T]):
    running: Future[T] | None = None
    started: float = 0.0  # when the running rendering started (monotonic)
    pending: Future[T] | None = None


class SharedRenderer(Generic[T]):
    """``render(key, produce)``: ``produce()``'s result (a body), shared with concurrent callers
    of ``key``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot[T]] = {}
        self.renderings = 0  # how many times produce() actually ran; for tests and benchmarks

    def render(self, key: Hashable, produce: Callable[[], T], ready_at: float | None = None) -> T:
        """``ready_at``: when the caller's data was complete (default: now)."""
        ready_at = self._clock() if ready_at is None else ready_at
        with self._lock:
            slot = self._slots.setdefault(key, _Slot[T]())
            if slot.running is None:
                mine = slot.running = Future()
                slot.started = self._clock()
                before = None
            elif slot.started >= ready_at - SHARE_WINDOW:
                shared = slot.running  # started after this caller's data was ready, or just before
                before = mine = None
            elif slot.pending is None:
                mine = slot.pending = Future()
                before = slot.running
            else:
                shared = slot.pending  # the next rendering is already promised: share it
                before = mine = None
        if mine is None:
            return shared.result()
        if before is not None:
            before.exception()  # the running one ended (and handed its slot to this one)
            with self._lock:
                slot.started = self._clock()
        try:
            with self._lock:
                self.renderings += 1
            body = produce()
        except BaseException as error:
            self._hand_over(key, slot)
            mine.set_exception(error)
            raise
        self._hand_over(key, slot)
        mine.set_result(body)
        return body

    def _hand_over(self, key: Hashable, slot: _Slot[T]) -> None:
        """The running rendering ends: the pending one (if any) becomes the running one."""
        with self._lock:
            slot.running, slot.pending = slot.pending, None
            if slot.running is None:
                self._slots.pop(key, None)
