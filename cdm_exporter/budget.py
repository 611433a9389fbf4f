"""Token buckets that keep the exporter inside CDM's per-user API rate limits.

CDM counts requests per IAM user and API policy over a rolling minute (``cdm-api.md`` section 5):
``job_status`` (ShowJobStatus alone) and ``common`` (ListClusters, ShowJobs, ShowSubmissions).
A bucket refills at ``rate_per_minute`` and holds at most a sixth of a minute's worth, so that in
any 60 s window at most ``rate * 7/6`` requests go out: 116 for the default 100/min, below the 120
the API allows. A 429 empties the bucket and pauses it, so a throttled exporter backs off instead
of retrying.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

POLICIES: tuple[str, ...] = ("job_status", "common")

#: which policy each API endpoint draws from (IAM token requests are not limited by CDM)
ENDPOINT_POLICY: dict[str, str] = {
    "list_clusters": "common",
    "list_jobs": "common",
    "submissions": "common",
    "job_status": "job_status",
}

#: how long a bucket pauses after a 429 (Huawei advises retrying after 2-5 s)
THROTTLE_PAUSE_SECONDS = 5.0


class TokenBucket:
    """A thread-safe token bucket; one token is one API request."""

    def __init__(
        self,
        rate_per_minute: float,
        *,
        capacity: float | None = None,
        initial: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_second = rate_per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute / 6.0)
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

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if they are there now; never waits."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            self._refill(now)
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def refund(self, tokens: float = 1.0) -> None:
        """Give back tokens taken for a request that was never sent."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + tokens)

    def throttled(self, pause: float = THROTTLE_PAUSE_SECONDS) -> None:
        """The API answered 429: spend everything and pause refilling for ``pause`` seconds."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens = 0.0
            self._paused_until = max(self._paused_until, now + pause)

    def available(self) -> float:
        """Tokens that could be taken now (0 while paused)."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return 0.0
            self._refill(now)
            return self._tokens


@dataclass(frozen=True, slots=True)
class BudgetKey:
    identity: str  # the credential's non-secret identity: the API counts per user
    policy: str


class Budgets:
    """Buckets per credential and policy, shared by every target that uses the same credential."""

    def __init__(
        self,
        per_minute: dict[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        full_minute: bool = False,
    ) -> None:
        self._per_minute = dict(per_minute)
        self._clock = clock
        # a one-shot run (``check``) may spend a whole minute's budget at once: nothing else
        # of ours runs in that minute
        self._full_minute = full_minute
        self._buckets: dict[BudgetKey, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, identity: str, policy: str) -> TokenBucket:
        key = BudgetKey(identity, policy)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                rate = float(self._per_minute[policy])
                capacity = rate if self._full_minute else None
                bucket = TokenBucket(rate, capacity=capacity, clock=self._clock)
                self._buckets[key] = bucket
            return bucket

    def for_endpoint(self, identity: str, endpoint: str) -> TokenBucket:
        return self.bucket(identity, ENDPOINT_POLICY[endpoint])
