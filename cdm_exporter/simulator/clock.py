"""A controllable clock for tests and benchmarks.

``SimulatorSettings.clock`` is any ``Callable[[], float]`` returning epoch seconds; the world
model, token expiry and the rate-limit windows all read it, so a test that owns the clock owns
time.  ``ManualClock`` is the obvious such callable: it stands still until told to move.
"""

from __future__ import annotations

import threading


class ManualClock:
    """Epoch seconds that only change through :meth:`advance` or :meth:`set`. Thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward (or backward, for a negative value) and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)
