"""Concurrent scrapes of the same exposition share one rendering.

Rendering tens of thousands of jobs costs seconds of CPU and tens of megabytes, and every
concurrent scrape used to render its own copy. Renderings are keyed by what makes their bytes
differ (the targets, the format, gzip). At most one rendering per key runs at a time; a scrape
that arrives while one runs waits for the *next* one, which starts when the running one ends and
serves every scrape that arrived meanwhile. So no scrape gets bytes rendered before its own
collection ended, and at most two bodies per key are alive at once, however many scrapes wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass


@dataclass
class _Slot:
    running: Future[bytes] | None = None
    pending: Future[bytes] | None = None


class SharedRenderer:
    """``render(key, produce)``: ``produce()``'s bytes, shared with concurrent callers of ``key``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}
        self.renderings = 0  # how many times produce() actually ran; for tests and benchmarks

    def render(self, key: Hashable, produce: Callable[[], bytes]) -> bytes:
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            if slot.running is None:
                mine = slot.running = Future()
                before = None
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

    def _hand_over(self, key: Hashable, slot: _Slot) -> None:
        """The running rendering ends: the pending one (if any) becomes the running one."""
        with self._lock:
            slot.running, slot.pending = slot.pending, None
            if slot.running is None:
                self._slots.pop(key, None)
