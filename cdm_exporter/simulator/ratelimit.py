"""API-gateway flow control: per user, per policy, requests per rolling minute.

CDM's read APIs fall into two shared policies (docs/api-notes.md, "Rate limits"): ``job_status``
(ShowJobStatus alone) and ``common`` (ListClusters, ShowClusterDetail, ShowJobs,
ShowSubmissions).  Each user gets ``limit`` requests per rolling 60 s in each policy; a request
over the limit is refused with 429 and does not use up budget.  IAM token requests are not
subject to these policies.
"""

from __future__ import annotations

import threading
from collections import deque

WINDOW_SECONDS = 60.0

POLICY_OF_ENDPOINT = {
    "job_status": "job_status",
    "list_clusters": "common",
    "cluster_detail": "common",
    "list_jobs": "common",
    "submissions": "common",
}


class RateLimiter:
    """Sliding-window limiter; ``limit`` 0 means unlimited. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._admitted: dict[tuple[str, str], deque[float]] = {}

    def admit(self, policy: str, user: str, now: float) -> bool:
        """Count the request and return True, or return False when over the limit."""
        if self.limit <= 0:
            return True
        with self._lock:
            window = self._admitted.setdefault((policy, user), deque())
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.limit:
                return False
            window.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._admitted.clear()
