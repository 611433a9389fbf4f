"""Counts and latencies of the exporter's own API calls, kept per target.

The client reports every HTTP call through an observer callback (it imports no Prometheus
code); this module keeps the numbers so that the collector can expose them as
``cdm_api_requests_total`` and ``cdm_api_request_duration_seconds``, for all targets on
``/metrics`` or for one on ``/probe``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdm_exporter.api.endpoints import ENDPOINT_POLICY, Endpoint

#: latency buckets (seconds) for a cloud API answering in tens to thousands of milliseconds
DURATION_BUCKETS: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Histogram:
    """Cumulative-on-read histogram of one endpoint's latency."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def merged(self, other: Histogram) -> Histogram:
        return Histogram(
            [a + b for a, b in zip(self.counts, other.counts, strict=True)], self.total + other.total
        )

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as the exposition format wants them, ending with ``+Inf``."""
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, DURATION_BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass(frozen=True)
class TelemetrySnapshot:
    requests: dict[tuple[Endpoint, str], int]  # (endpoint, code) -> count
    durations: dict[Endpoint, Histogram]  # endpoint -> latency

    @staticmethod
    def merge(snapshots: Iterable[TelemetrySnapshot]) -> TelemetrySnapshot:
        requests: dict[tuple[Endpoint, str], int] = {}
        durations: dict[Endpoint, Histogram] = {}
        for snap in snapshots:
            for key, count in snap.requests.items():
                requests[key] = requests.get(key, 0) + count
            for endpoint, hist in snap.durations.items():
                durations[endpoint] = durations[endpoint].merged(hist) if endpoint in durations else hist
        return TelemetrySnapshot(requests, durations)


class ApiTelemetry:
    """Thread-safe store fed by the client's observer callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # throttling starts at 0, so that rate() sees the first 429s (a series that appears with
        # its first increment has no earlier sample to rate against)
        self._requests: dict[tuple[Endpoint, str], int] = {
            (endpoint, "429"): 0
            for endpoint in ENDPOINT_POLICY  # the CDM calls
        }
        self._durations: dict[Endpoint, Histogram] = {}

    def observe(self, endpoint: Endpoint, code: str, seconds: float) -> None:
        with self._lock:
            self._requests[(endpoint, code)] = self._requests.get((endpoint, code), 0) + 1
            self._durations.setdefault(endpoint, Histogram()).observe(seconds)

    def snapshot(self) -> TelemetrySnapshot:
        with self._lock:
            return TelemetrySnapshot(
                dict(self._requests),
                {ep: Histogram(list(h.counts), h.total) for ep, h in self._durations.items()},
            )

    def count(self, endpoint: Endpoint, code: str | None = None) -> int:
        """Requests made to ``endpoint`` (with ``code`` when given); for logs and tests."""
        with self._lock:
            return sum(n for (ep, c), n in self._requests.items() if ep == endpoint and code in (None, c))
