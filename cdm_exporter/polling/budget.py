"""Rate limiters that keep the exporter inside CDM's per-user API rate limits.

CDM counts requests per IAM user and API policy over a rolling minute: ``job_status``
(ShowJobStatus alone) and ``common`` (ListClusters, ShowJobs, ShowSubmissions); see
:mod:`cdm_exporter.api.endpoints`. Each limiter is two rules at once:

- a rolling-minute window: never more than ``rate_per_minute`` requests in any 60 s, so the
  default 100/min stays below the 120 the API allows whatever the scrape pattern;
- a token bucket refilling at the same rate and holding half a minute's worth, so the budget is
  spread over the minute (fresh data every scrape) instead of spent in one burst.

A 429 empties the bucket and pauses it, so a throttled exporter backs off instead of retrying.

Where the rolling minute is kept is pluggable (:class:`WindowStore`): in memory by default
(:class:`LocalWindows`); in the state file, so that a restarted process counts what the previous
one sent; or in Redis, shared by replicas (``cdm_exporter.storage``). The token bucket's pacing
stays in the process; the window is the promise and may live elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cdm_exporter.api.endpoints import ENDPOINT_POLICY, Endpoint, Policy

#: how long a bucket pauses after a 429 (Huawei advises retrying after 2-5 s)
THROTTLE_PAUSE_SECONDS = 5.0
#: the API's rate-limit window
WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class BudgetKey:
    identity: str  # the credential's non-secret identity: the API counts per user
    policy: Policy


class RollingWindow(Protocol):
    """The requests one budget key sent in the last :data:`WINDOW_SECONDS`: the hard cap.

    ``take`` is authoritative (it may ask a file or Redis, from the thread about to call the
    API); ``room`` must be cheap and never block, since scrapes read it (it may be a cached
    count). Implementations are thread-safe.
    """

    def take(self, limit: float) -> bool:
        """Record one request sent now if fewer than ``limit`` were sent in the window."""
        ...

    def give_back(self) -> None:
        """Forget the newest request recorded by :meth:`take`: it was never sent."""
        ...

    def room(self, limit: float) -> float:
        """``limit`` less the requests of the window (negative when over)."""
        ...


class WindowStore(Protocol):
    """Where the rolling windows live: one per credential and policy."""

    def window(self, key: BudgetKey) -> RollingWindow: ...


class LocalWindow:
    """The default window: send times in memory, on the bucket's clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent: deque[float] = deque()  # times of the requests of the last minute
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - WINDOW_SECONDS:
            self._sent.popleft()

    def take(self, limit: float) -> bool:
        with self._lock:
            now = self._clock()
            self._prune(now)
            if len(self._sent) + 1 > limit:
                return False
            self._sent.append(now)
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._sent:
                self._sent.pop()

    def room(self, limit: float) -> float:
        with self._lock:
            self._prune(self._clock())
            return limit - len(self._sent)


class LocalWindows:
    """A :class:`LocalWindow` per key: what a process alone with its credential needs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    def window(self, key: BudgetKey) -> RollingWindow:
        return LocalWindow(self._clock)


class TokenBucket:
    """A thread-safe token bucket under a rolling-minute cap; one token is one API request."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        capacity: float | None = None,
        initial: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        window: RollingWindow | None = None,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_minute = rate_per_minute
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute / 2.0)
        self._window: RollingWindow = window if window is not None else LocalWindow(clock)
        self._clock = clock
        self._tokens = self.capacity if initial is None else initial
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        start = max(self._updated, self._paused_until)
        if now > start:
            self._tokens = min(self.capacity, self._tokens + (now - start) * self.rate_per_second)
        self._updated = max(self._updated, now)

    def _window_room(self) -> float:
        room = self._window.room(self.rate_per_minute)
        # Tokens never exceed what the rolling minute allows: tokens saved up while the window
        # was full would otherwise be spent in one burst when it empties, fill it again early,
        # and make a burst-and-stall cycle that repeats every minute.
        self._tokens = min(self._tokens, max(0.0, room))
        return room

    def try_acquire(self) -> bool:
        """Take one token if the bucket and the rolling minute allow it now; never waits."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            self._refill(now)
            if self._tokens >= 1.0 and self._window_room() >= 1.0 and self._window.take(self.rate_per_minute):
                self._tokens -= 1.0
                return True
            return False

    def refund(self) -> None:
        """Give back the token of a request that was never sent."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + 1.0)
            self._window.give_back()

    def throttled(self, pause: float = THROTTLE_PAUSE_SECONDS) -> None:
        """The API answered 429: spend everything and pause refilling for ``pause`` seconds."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens = 0.0
            self._paused_until = max(self._paused_until, now + pause)

    def available(self) -> float:
        """Requests that could be sent now (0 while paused)."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return 0.0
            self._refill(now)
            return max(0.0, min(self._tokens, self._window_room()))


class Budgets:
    """Buckets per credential and policy, shared by every target that uses the same credential."""

    def __init__(
        self,
        per_minute: Mapping[Policy, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        full_minute: bool = False,
        windows: WindowStore | None = None,
    ) -> None:
        self._per_minute = dict(per_minute)
        self._clock = clock
        self._windows: WindowStore = windows if windows is not None else LocalWindows(clock)
        # a one-shot run (``check``) may spend a whole minute's budget at once
        self._full_minute = full_minute
        self._buckets: dict[BudgetKey, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, identity: str, policy: Policy) -> TokenBucket:
        key = BudgetKey(identity, policy)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                rate = float(self._per_minute[policy])
                capacity = rate if self._full_minute else None
                bucket = TokenBucket(
                    rate, capacity=capacity, clock=self._clock, window=self._windows.window(key)
                )
                self._buckets[key] = bucket
            return bucket

    def for_endpoint(self, identity: str, endpoint: Endpoint) -> TokenBucket:
        return self.bucket(identity, ENDPOINT_POLICY[endpoint])
