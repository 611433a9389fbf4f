"""Rate limiters that keep the exporter inside CDM's per-user API rate limits.

CDM counts requests per IAM user and API policy over a rolling minute: ``job_status``
(ShowJobStatus alone) and ``common`` (ListClusters, ShowJobs, ShowSubmissions); see
:mod:`cdm_exporter.api.endpoints`. Each limiter is two rules at once:

- a rolling-minute window, the hard cap: never more than ``rate_per_minute`` requests in any
  minute, so the default 100/min stays below the 120 the API allows whatever the scrape
  pattern. The exporter's minute is a second longer than the API's (``WINDOW_MARGIN_SECONDS``),
  so that two requests sent a minute apart never arrive within one minute there;
- a token bucket refilling at the same rate, which paces the requests: one every 0.61 s at
  100/min (the pace the window sustains). A new bucket holds a whole minute's budget (the first
  minute after start is as fast as the cap allows), and tokens never exceed what the window
  would admit (but one, the next request's): saved up while the window is full, they would be
  spent in one burst when it empties and fill it again at once, a burst-and-stall cycle every
  minute.

Between scrapes the poller spends the budget one call at a time, :meth:`TokenBucket.spacing`
apart, so the whole budget is used at an even pace.

A 429 empties the bucket and pauses it, so a throttled exporter backs off instead of retrying.

The buckets outlive configuration reloads: a reload that changes the rates changes the buckets in
place (:meth:`Budgets.set_per_minute`), so the requests of the last minute still count against the
new rate and no reload, however frequent, opens a fresh minute's worth of requests. A reload that
changes ``budget_scope`` replaces the buckets (``id@region`` for ``id``, or back,
:meth:`Budgets.rescope`); each new one starts with the requests its credential sent in the last
minute under the old scope.

Where the rolling minute is kept is pluggable (:class:`WindowStore`): in memory by default
(:class:`LocalWindows`); in the state file, so that a restarted process counts what the previous
one sent; or in Redis, shared by replicas (``cdm_exporter.storage``). The token bucket's pacing
stays in the process (from the calls this process counts); the window is the promise and may
live elsewhere.
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
#: a request reaches the API some time after the exporter sends it (connection, TLS, network, a
#: busy CPU): the exporter's window is this much longer than the API's
WINDOW_MARGIN_SECONDS = 1.0
#: how long the exporter counts a request against the rolling minute, in every window store
COUNTED_WINDOW_SECONDS = WINDOW_SECONDS + WINDOW_MARGIN_SECONDS
#: tokens are counted in floating point: this much short of one still is one
_ROUNDING = 1e-9


def leaves_at(sent: float) -> float:
    """When a request sent at ``sent`` leaves the window."""
    return sent + COUNTED_WINDOW_SECONDS


def has_left(sent: float, now: float) -> bool:
    """Whether a request sent at ``sent`` no longer counts at ``now``. The one expression for it,
    so that a bucket and its window never disagree by a rounding error."""
    return leaves_at(sent) <= now


@dataclass(frozen=True, slots=True)
class BudgetKey:
    identity: str  # the credential's non-secret identity: the API counts per user
    policy: Policy


class RollingWindow(Protocol):
    """The requests one budget key sent in the last :data:`COUNTED_WINDOW_SECONDS`: the hard cap.

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
        while self._sent and has_left(self._sent[0], now):
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
        self.limit = int(rate_per_minute)  # requests in any window
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute)
        self._window: RollingWindow = window if window is not None else LocalWindow(clock)
        # Send times (on ``clock``) of the requests this bucket counts, in order: the pacing math
        # runs on them, and a scope change hands them to the new buckets whatever window is in
        # use. ``_carried`` are those that went through a bucket of the same credential under the
        # old scope: they count here only, not in this bucket's window.
        self._sent: deque[float] = deque()
        self._carried: deque[float] = deque()
        self._clock = clock
        self._tokens = self.capacity if initial is None else initial
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    # --- the pacing math (callers hold the lock) ---------------------------------------------

    def _forget_left(self, now: float) -> None:
        for sent in (self._sent, self._carried):
            while sent and has_left(sent[0], now):
                sent.popleft()

    def _room(self) -> int:
        """Requests the window admits now as this process counts them (after :meth:`_forget_left`)."""
        return max(0, self.limit - len(self._sent))

    def _window_room(self) -> float:
        """Room in the window itself, which may count other processes' requests too; tokens never
        exceed it (but one, the next request's)."""
        room = self._window.room(self.limit - len(self._carried))
        self._tokens = min(self._tokens, max(1.0, room))
        return room

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
            leaves = leaves_at(sent)
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
        return now if excess < 0 else leaves_at(self._sent[excess])

    # --- public ------------------------------------------------------------------------------

    def set_rate(self, rate_per_minute: float, capacity: float | None = None) -> None:
        """Change the rate (a reload); what was sent in the last minute still counts against it."""
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        with self._lock:
            self._refill(self._clock())  # tokens earned so far were earned at the old rate
            self.rate_per_minute = rate_per_minute
            self.rate_per_second = rate_per_minute / 60.0
            self.limit = int(rate_per_minute)
            self.capacity = capacity if capacity is not None else max(1.0, rate_per_minute)
            self._tokens = min(self._tokens, self.capacity, max(1.0, float(self._room())))

    def try_acquire(self) -> bool:
        """Take one token if the bucket and the rolling minute allow it now; never waits."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            self._refill(now)
            if (
                self._tokens >= 1.0 - _ROUNDING
                and self._room() >= 1
                and self._window_room() >= 1.0
                and self._window.take(self.limit - len(self._carried))
            ):
                self._tokens = max(0.0, self._tokens - 1.0)
                self._sent.append(now)
                return True
            return False

    def next_token_at(self) -> float:
        """When :meth:`try_acquire` can next succeed (monotonic time; now when it can now), as far
        as this process knows: a window shared with other processes may still say no then."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            accrues_from = max(now, self._paused_until)
            token = accrues_from + max(0.0, 1.0 - self._tokens) / self.rate_per_second
            return max(token, self._window_opens(now))

    def spacing(self) -> float:
        """Seconds to the next call that spend the budget evenly: one per ``61 / rate`` s (the
        pace the window sustains: at ``60 / rate`` s, every minute's last call would wait a
        second for the window), and slower while a burst (a start, a scrape) has filled much of
        the window: then the room left, and the call after it, are spread until the window's
        oldest call leaves it (that call goes as it leaves), instead of spent at once and followed
        by a stall until the burst leaves the window. (Spread over the room alone, a window one
        call short of full kept its pace one call short for good: 59 calls a minute at 60.)"""
        with self._lock:
            now = self._clock()
            self._refill(now)
            room = self._room()
            base = COUNTED_WINDOW_SECONDS / max(1, self.limit)
            if not self._sent or room <= 0:
                return base
            return max(base, (leaves_at(self._sent[0]) - now) / (room + 1))

    def sent_in_window(self) -> list[float]:
        """When the requests this bucket counts were sent, in the last minute (monotonic)."""
        with self._lock:
            self._forget_left(self._clock())
            return list(self._sent)

    def count_sent(self, times: list[float]) -> None:
        """Count requests sent through another bucket of the same credential (a scope change)."""
        with self._lock:
            self._carried = deque(sorted([*self._carried, *times]))
            self._sent = deque(sorted([*self._sent, *times]))
            self._forget_left(self._clock())
            self._tokens = min(self._tokens, max(1.0, float(self._room())))

    def refund(self) -> None:
        """Give back the token of a request that was never sent."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + 1.0)
            self._window.give_back()
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
            room = min(float(self._room()), self._window_room())
            return max(0.0, min(self._tokens, room))


def budget_identity(identity: str, region: str, scope: str) -> str:
    """Whose budget a target spends: its credential's, shared across regions (``credential``, the
    safe reading of the per-user limit, docs/api-notes.md "Rate limits"), or its credential's in
    its region (``region``)."""
    return f"{identity}@{region}" if scope == "region" else identity


def _same_credential(a: str, b: str) -> bool:
    """Whether budget identities ``a`` and ``b`` are one credential's, under either scope."""
    return a == b or a.rpartition("@")[0] == b or b.rpartition("@")[0] == a


class Budgets:
    """Buckets per credential and policy, shared by every target that uses the same credential."""

    def __init__(
        self,
        per_minute: Mapping[Policy, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        windows: WindowStore | None = None,
    ) -> None:
        self._per_minute = dict(per_minute)
        self._clock = clock
        self._windows: WindowStore = windows if windows is not None else LocalWindows(clock)
        self._buckets: dict[BudgetKey, TokenBucket] = {}
        self._before_rescope: dict[BudgetKey, list[float]] = {}  # the last minute before rescope()
        self._lock = threading.Lock()

    def bucket(self, identity: str, policy: Policy) -> TokenBucket:
        key = BudgetKey(identity, policy)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                rate = float(self._per_minute[policy])
                bucket = TokenBucket(rate, clock=self._clock, window=self._windows.window(key))
                for old, sent in self._before_rescope.items():
                    if old.policy == policy and _same_credential(old.identity, identity):
                        bucket.count_sent(sent)
                self._buckets[key] = bucket
            return bucket

    def rescope(self) -> None:
        """``budget_scope`` changed: new buckets from now on, each counting what its credential
        sent in the last minute under the old scope (with ``region``, every region's bucket counts
        everything the credential sent: which region a call went to was not kept)."""
        with self._lock:
            since = self._clock() - COUNTED_WINDOW_SECONDS
            before = {key: [t for t in sent if t > since] for key, sent in self._before_rescope.items()}
            for key, bucket in self._buckets.items():  # a second rescope within the minute adds up
                before[key] = before.get(key, []) + bucket.sent_in_window()
            self._before_rescope = {key: sent for key, sent in before.items() if sent}
            self._buckets = {}

    def set_per_minute(self, per_minute: Mapping[Policy, int]) -> None:
        """New rates for every bucket, present and future, keeping what each has spent."""
        with self._lock:
            self._per_minute = dict(per_minute)
            for key, bucket in self._buckets.items():
                rate = float(self._per_minute[key.policy])
                bucket.set_rate(rate)

    def for_endpoint(self, identity: str, endpoint: Endpoint) -> TokenBucket:
        return self.bucket(identity, ENDPOINT_POLICY[endpoint])
