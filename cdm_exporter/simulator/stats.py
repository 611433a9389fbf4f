"""What the simulator saw: request counts, throttling, per-minute load and a request log.

Tests and benchmarks read these to check a client's behaviour: that it stayed within its API
budget (``max_per_minute``), that it sent a job name encoded exactly once (``log`` keeps the
raw path), how often it was throttled (``throttled``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from cdm_exporter.simulator.ratelimit import WINDOW_SECONDS

LOG_LIMIT = 100_000
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class RequestRecord:
    """One request as received: ``path`` and ``query`` are raw (still percent-encoded)."""

    method: str
    path: str
    query: str
    endpoint: str
    user: str
    time: float


class SimulatorStats:
    """Thread-safe counters; every property returns a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: dict[tuple[str, str], int] = {}
            self._responses: dict[tuple[str, int], int] = {}
            self._throttled = 0
            self._per_minute: dict[tuple[str, str, int], int] = {}
            self._max_per_minute: dict[tuple[str, str], int] = {}
            self._windows: dict[tuple[str, str], deque[float]] = {}
            self._log: deque[RequestRecord] = deque(maxlen=LOG_LIMIT)

    # --- recording --------------------------------------------------------------------------

    def record_request(self, record: RequestRecord) -> None:
        with self._lock:
            key = (record.endpoint, record.user)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._log.append(record)

    def record_response(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, status)
            self._responses[key] = self._responses.get(key, 0) + 1

    def record_throttled(self) -> None:
        with self._lock:
            self._throttled += 1

    def record_policy_request(self, policy: str, user: str, now: float) -> None:
        """Every request that reaches a rate-limit policy, admitted or not."""
        with self._lock:
            minute = math.floor(now / WINDOW_SECONDS)
            bucket = (policy, user, minute)
            self._per_minute[bucket] = self._per_minute.get(bucket, 0) + 1
            window = self._windows.setdefault((policy, user), deque())
            window.append(now)
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            key = (policy, user)
            self._max_per_minute[key] = max(self._max_per_minute.get(key, 0), len(window))

    # --- reading ----------------------------------------------------------------------------

    @property
    def requests(self) -> dict[tuple[str, str], int]:
        """Requests per (endpoint, user); ``user`` is ``anonymous`` before authentication."""
        with self._lock:
            return dict(self._requests)

    @property
    def responses(self) -> dict[tuple[str, int], int]:
        """Responses per (endpoint, HTTP status)."""
        with self._lock:
            return dict(self._responses)

    @property
    def throttled(self) -> int:
        """429s sent by the rate limiter (not by injected faults)."""
        with self._lock:
            return self._throttled

    @property
    def per_minute(self) -> dict[tuple[str, str, int], int]:
        """Requests per (policy, user, minute number = floor(epoch / 60))."""
        with self._lock:
            return dict(self._per_minute)

    @property
    def max_per_minute(self) -> dict[tuple[str, str], int]:
        """Most requests seen in any rolling 60 s, per (policy, user)."""
        with self._lock:
            return dict(self._max_per_minute)

    @property
    def log(self) -> list[RequestRecord]:
        """The last requests received (at most 100 000), oldest first."""
        with self._lock:
            return list(self._log)

    def count(self, endpoint: str | None = None, user: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (e, u), n in self._requests.items()
                if (endpoint is None or e == endpoint) and (user is None or u == user)
            )

    def paths(self, endpoint: str | None = None) -> list[str]:
        """Raw request paths received, optionally for one endpoint."""
        return [r.path for r in self.log if endpoint is None or r.endpoint == endpoint]

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON-able data (for the admin API)."""
        with self._lock:
            return {
                "requests": [{"endpoint": e, "user": u, "count": n} for (e, u), n in self._requests.items()],
                "responses": [
                    {"endpoint": e, "status": s, "count": n} for (e, s), n in self._responses.items()
                ],
                "throttled": self._throttled,
                "max_per_minute": [
                    {"policy": p, "user": u, "max": n} for (p, u), n in self._max_per_minute.items()
                ],
                "per_minute": [
                    {"policy": p, "user": u, "minute": m, "count": n}
                    for (p, u, m), n in self._per_minute.items()
                ],
                "log": [asdict(r) for r in list(self._log)[-1000:]],
            }
