"""Rate limiters that keep the exporter inside CDM's per-user API rate limits.

CDM counts requests per IAM user and API policy over a rolling minute: ``job_status``
(ShowJobStatus alone) and ``common`` (ListClusters, ShowJobs, ShowSubmissions); see
:mod:`cdm_exporter.api.endpoints`. Each limiter is two rules at once:

- a rolling-minute window, the hard cap: never more than ``rate_per_minute`` requests in any
  minute, so the default 100/min stays below the 120 the API allows whatever the scrape
  pattern. The exporter's minute is a second longer than the API's (``WINDOW_MARGIN_SECONDS``),
  so that two requests sent a minute apart never arrive within one minute there;
- a token bucket refilling at the same rate, which paces the requests: one every 0.6 s at
  100/min. A new bucket holds a whole minute's budget (the first minute after start is as fast
  as the cap allows), and tokens never exceed what the window would admit (but one, the next
  request's): saved up while the window is full, they would be spent in one burst when it
  empties and fill it again at once, a burst-and-stall cycle every minute.

Between scrapes the poller spends the budget one call at a time, :meth:`TokenBucket.spacing`
apart, so the whole budget is used at an even pace.

A 429 empties the bucket and pauses it, so a throttled exporter backs off instead of retrying.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cdm_exporter.api.endpoints import ENDPOINT_POLICY, Endpoint, Policy

#: how long a bucket pauses after a 429 (Huawei advises retrying after 2-5 s)
THROTTLE_PAUSE_SECONDS = 5.0
#: the API's rate-limit window
WINDOW_SECONDS = 60.0
#: a request reaches the API some time after the exporter sends it (connection, TLS, network, a
#: busy CPU): the exporter's window is this much longer than the API's
WINDOW_MARGIN_SECONDS = 1.0
#: tokens are counted in floating point: this much short of one still is one
_ROUNDING = 1e-9


class TokenBucket:
    """A thread-safe token bucket under a rolling-minute cap; one token is one API request."""

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
        self.rate_per_minute = rate_per_minute
        self.rate_per_second = rate_per_minute / 60.0
        self.limit = int(rate_per_minute)  # requests in any window
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute)
        self._sent: deque[float] = deque()  # send times of the requests still in the window, in order
        self._clock = clock
        self._tokens = self.capacity if initial is None else initial
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    # --- the pacing math (callers hold the lock) ---------------------------------------------

    def _leaves(self, sent: float) -> float:
        """When a request sent at ``sent`` leaves the window."""
        return sent + WINDOW_SECONDS + WINDOW_MARGIN_SECONDS

    def _forget_left(self, now: float) -> None:
        while self._sent and self._leaves(self._sent[0]) <= now:
            self._sent.popleft()

    def _room(self) -> int:
        """Requests the window admits now (after :meth:`_forget_left`)."""
        return max(0, self.limit - len(self._sent))

    def _refill(self, now: float) -> None:
        """Tokens accrued since the last update, never more than the window would admit at each
        moment in between (but one): requests leaving the window make room one by one."""
        start = max(self._updated, self._paused_until)
        self._updated = max(self._updated, now)
        if now <= start:
            return
        self._forget_left(start)
        tokens, t, room = self._tokens, start, self._room()
        for sent in self._sent:
            leaves = self._leaves(sent)
            if leaves > now:
                break
            tokens = self._accrue(tokens, leaves - t, room)
            t, room = leaves, room + 1
        self._tokens = self._accrue(tokens, now - t, room)
        self._forget_left(now)

    def _accrue(self, tokens: float, seconds: float, room: int) -> float:
        return min(self.capacity, max(1.0, float(room)), tokens + seconds * self.rate_per_second)

    def _window_opens(self, now: float) -> float:
        """When the window admits one more request (after :meth:`_forget_left`)."""
        excess = len(self._sent) - self.limit
        return now if excess < 0 else self._leaves(self._sent[excess])

    # --- public ------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take one token if the bucket and the rolling minute allow it now; never waits."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            self._refill(now)
            if self._tokens >= 1.0 - _ROUNDING and self._room() >= 1:
                self._tokens = max(0.0, self._tokens - 1.0)
                self._sent.append(now)
                return True
            return False

    def next_token_at(self) -> float:
        """When :meth:`try_acquire` can next succeed (monotonic time; now when it can now)."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            accrues_from = max(now, self._paused_until)
            token = accrues_from + max(0.0, 1.0 - self._tokens) / self.rate_per_second
            return max(token, self._window_opens(now))

    def spacing(self) -> float:
        """Seconds to the next call that spend the budget evenly: one per ``60 / rate`` s, and
        slower while a burst (a start, a scrape) has filled much of the window: then the room left
        is spread until the window's oldest call leaves it, instead of spent at once and followed
        by a stall until the burst leaves the window."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            room = self._room()
            base = 1.0 / self.rate_per_second
            if not self._sent or room <= 0:
                return base
            return max(base, (self._leaves(self._sent[0]) - now) / room)

    def refund(self) -> None:
        """Give back the token of a request that was never sent."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + 1.0)
            if self._sent:
                self._sent.pop()

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
            return max(0.0, min(self._tokens, float(self._room())))


@dataclass(frozen=True, slots=True)
class BudgetKey:
    identity: str  # the credential's non-secret identity: the API counts per user
    policy: Policy


class Budgets:
    """Buckets per credential and policy, shared by every target that uses the same credential."""

    def __init__(
        self,
        per_minute: Mapping[Policy, int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_minute = dict(per_minute)
        self._clock = clock
        self._buckets: dict[BudgetKey, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, identity: str, policy: Policy) -> TokenBucket:
        key = BudgetKey(identity, policy)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(float(self._per_minute[policy]), clock=self._clock)
                self._buckets[key] = bucket
            return bucket

    def for_endpoint(self, identity: str, endpoint: Endpoint) -> TokenBucket:
        return self.bucket(identity, ENDPOINT_POLICY[endpoint])
