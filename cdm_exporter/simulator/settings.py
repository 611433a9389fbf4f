"""Settings of one simulated CDM + IAM account: a primary project in one region, and optionally
more projects and regions (``extra_projects``, ``regions_without_cdm``).

Every knob the simulator has lives here, frozen, so a ``Simulator`` is fully described by its
settings plus the mutations made to its world afterwards.  Defaults are the documented test
credentials: they guard nothing real.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdm_exporter.simulator.generate import JOB_TYPES

DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_REGION = "cn-north-4"
DEFAULT_TOKEN = "sim-token"  # noqa: S105 - a documented test credential
DEFAULT_ACCESS_KEY = "SIMAK"
DEFAULT_SECRET_KEY = "SIMSK"  # noqa: S105 - a documented test credential
DEFAULT_IAM_DOMAIN = "sim-domain"
DEFAULT_IAM_USER = "sim-user"
DEFAULT_IAM_PASSWORD = "sim-password"  # noqa: S105 - a documented test credential

HISTORY_ORDERS = ("newest-first", "oldest-first", "shuffled")

# A path segment must not be able to smuggle another path in: project ids are plain tokens.
_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class SimulatorSettings:
    """What to simulate and which credentials to accept.

    ``clock`` returns epoch seconds; it drives simulated time, token expiry and rate-limit
    windows (X-Sdk-Date skew is checked against the real wall clock, like the gateway does).
    ``time_scale`` speeds simulated job time up relative to ``clock``.  ``rate_limit`` is the
    per-user, per-policy limit per rolling minute, counted across all regions; 0 disables
    throttling.  ``extra_projects`` names more IAM projects (``ap-southeast-1``,
    ``cn-north-4_analytics``), each with ``clusters`` clusters of ``jobs`` jobs; their regions are
    served on ports of their own.  ``regions_without_cdm`` are regions (with their default
    project) whose gateway offers no CDM API.
    ``refused_job_types``: job types every cluster answers a list of with 400 ``Cdm.0014``, as
    a cluster of a version that does not know them (the newest ShowJobs reference has no
    SCENARIO_JOB). ``history_order``: the order of ShowSubmissions' runs, which nothing
    documents: ``newest-first``, ``oldest-first`` or ``shuffled`` (a fixed permutation per job).
    """

    project_id: str = DEFAULT_PROJECT_ID
    region: str = DEFAULT_REGION
    clusters: int = 2
    jobs: int = 10
    seed: int = 1
    latency_ms: float = 0.0
    rate_limit: int = 120
    time_scale: float = 1.0
    token_ttl_seconds: float = 24 * 3600.0
    token: str = DEFAULT_TOKEN
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = DEFAULT_SECRET_KEY
    iam_domain: str = DEFAULT_IAM_DOMAIN
    iam_user: str = DEFAULT_IAM_USER
    iam_password: str = DEFAULT_IAM_PASSWORD
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    history_size: int = 20
    odd_job_names: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    signature_max_skew_seconds: float = 15 * 60.0
    refused_job_types: tuple[str, ...] = ()
    history_order: str = "newest-first"
    extra_projects: tuple[str, ...] = ()
    regions_without_cdm: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in self.extra_projects:
            if not _PROJECT_NAME.match(name) or name == self.region:
                problems.append(
                    f"extra project {name!r} must be a new project name (letters, digits, '-', '_')"
                )
        if len(set(self.extra_projects)) != len(self.extra_projects):
            problems.append("extra_projects lists a project twice")
        for region in self.regions_without_cdm:
            if not region or "/" in region or "_" in region or region == self.region:
                problems.append(f"region without CDM {region!r} must be a region other than {self.region!r}")
        if not _PROJECT_ID.match(self.project_id):
            problems.append(f"project_id must be letters, digits, '-' or '_', got {self.project_id!r}")
        if not self.region or "/" in self.region:
            problems.append(f"region must be a non-empty name without '/', got {self.region!r}")
        for name in ("clusters", "jobs", "rate_limit"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.latency_ms < 0:
            problems.append(f"latency_ms must be >= 0, got {self.latency_ms}")
        if not self.time_scale > 0:
            problems.append(f"time_scale must be > 0, got {self.time_scale}")
        if not self.token_ttl_seconds > 0:
            problems.append(f"token_ttl_seconds must be > 0, got {self.token_ttl_seconds}")
        if self.history_size < 1:
            problems.append(f"history_size must be >= 1, got {self.history_size}")
        if (self.certfile is None) != (self.keyfile is None):
            problems.append("certfile and keyfile must be given together")
        for name in ("token", "access_key", "secret_key", "iam_domain", "iam_user", "iam_password"):
            if not getattr(self, name):
                problems.append(f"{name} must not be empty")
        unknown = [t for t in self.refused_job_types if t not in JOB_TYPES]
        if unknown:
            problems.append(f"refused_job_types must be of {', '.join(JOB_TYPES)}, got {unknown[0]!r}")
        if self.history_order not in HISTORY_ORDERS:
            problems.append(
                f"history_order must be one of {', '.join(HISTORY_ORDERS)}, got {self.history_order!r}"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tls(self) -> bool:
        return self.certfile is not None
