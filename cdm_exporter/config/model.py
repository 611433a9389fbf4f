"""The validated, immutable configuration the rest of cdm-exporter runs on.

Each dataclass checks its own value invariants (formats, ranges, cross-field rules) in
``__post_init__`` and raises :class:`ConfigError` keyed by its *own* field name
(``region``, ``types[1]``); the loader, which knows where the object sits in the file, prefixes
the path (``targets[0].region``). So an object built by hand (the demo, a test) is held to the
same rules as one read from YAML. Types, unknown keys and secret sources are the loader's job.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal, get_args
from urllib.parse import urlsplit

from cdm_exporter.api.secret import Secret

from .errors import ConfigError, did_you_mean

#: The job types ShowJobs can list; each is queried separately (docs/api-notes.md, "Job list").
JOB_TYPES: tuple[str, ...] = ("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB")

#: Requests per minute CDM allows per user and API policy (docs/api-notes.md, "Rate limits").
API_LIMIT_PER_MINUTE = 120
#: Budgets above this leave too little room for anything else using the same user.
BUDGET_WARN_ABOVE = 110

#: ``collection.status_series``: a ``cdm_job_status`` series for every documented status (1 for
#: the current one, 0 for the others: the contract), or only for the current status (a seventh
#: of the series, for many jobs)
StatusSeries = Literal["all", "current"]
STATUS_SERIES: tuple[StatusSeries, ...] = get_args(StatusSeries)

_PROJECT_ID = re.compile(r"[0-9a-fA-F]{32}")
# Huawei Cloud's cn-north-4 and ap-southeast-1, and the partner clouds' eu-de and eu-ch2 (with
# explicit endpoints): lower-case words joined by "-"; anything else is a typo or a host name.
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}")
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
# Hostnames, including docker/compose style names with "_"; IP literals are checked apart.
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_UNSAFE_URL_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

DAY = 86400.0

#: IAM's global endpoint, which the SDK uses for account-wide calls when no region picks another
#: (docs/api-notes.md, "IAM projects")
GLOBAL_IAM_ENDPOINT = "https://iam.myhuaweicloud.com"
#: where a discovered project's region ID goes in a ``projects`` target's endpoint template
REGION_PLACEHOLDER = "{region}"
#: the CDM endpoint of each discovered region, as :func:`default_endpoint` derives it
DEFAULT_ENDPOINT_TEMPLATE = f"https://cdm.{REGION_PLACEHOLDER}.myhuaweicloud.com"
#: what one API budget covers: one per credential (the safe reading), or one per credential and region
BUDGET_SCOPES: tuple[str, ...] = ("credential", "region")
#: a project name as IAM allows it (letters, digits, "-", "_"; at most 64), plus glob characters
_PROJECT_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]{1,64}")


def default_endpoint(region: str) -> str:
    """The CDM endpoint Huawei's SDK derives for ``region`` (docs/api-notes.md, "Endpoints and hosts")."""
    return f"https://cdm.{region}.myhuaweicloud.com"


def default_iam_endpoint(region: str) -> str:
    """The regional IAM endpoint (docs/api-notes.md, "Endpoints and hosts")."""
    return f"https://iam.{region}.myhuaweicloud.com"


def is_region_id(text: str) -> bool:
    """Whether ``text`` has the shape of a region ID (``cn-north-4``, ``eu-de``)."""
    return _REGION.fullmatch(text) is not None


def project_region(project_name: str) -> str | None:
    """The region of an IAM project: its name (``cn-north-4``) or the part before the first ``_``
    of a sub-project (``cn-north-4_analytics``); ``None`` when the name names no region."""
    head = project_name.split("_", 1)[0]
    return head if is_region_id(head) else None


def endpoint_problem(url: str) -> str | None:
    """Why ``url`` is not ``http(s)://host[:port]``, or ``None`` when it is.

    The URL itself is never echoed: a user may have put ``user:password@`` in it.
    """
    expected = "expected http(s)://host[:port] with nothing after the port"
    if _UNSAFE_URL_CHARS.search(url):
        # urlsplit silently drops tabs and newlines; the client would not.
        return f"{expected}; it contains whitespace or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{expected}; {exc}"
    if parts.scheme not in ("http", "https") or not url.lower().startswith(f"{parts.scheme}://"):
        return f"{expected}; the scheme must be https:// or http://"
    if "@" in parts.netloc:
        return f"{expected}; credentials in the URL are not allowed (put them under auth)"
    host = parts.hostname or ""
    if not host:
        return f"{expected}; the host is missing"
    if port == 0:
        return f"{expected}; port 0 is not a usable port"
    if not _is_ip(host) and not _HOSTNAME.fullmatch(host):
        return f"{expected}; {host!r} is not a valid host name"
    if parts.path or parts.query or parts.fragment or "?" in url or "#" in url:
        return f"{expected}; remove the path, query or fragment (the API paths are added by the exporter)"
    return None


def is_plain_http_to_remote(url: str) -> bool:
    """True for ``http://`` to anything but loopback: credentials would cross a network unencrypted."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    return not (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_range(key: str, value: float, low: float, high: float, unit: str = "") -> None:
    # "not low <= value <= high" also rejects NaN, which compares false to everything.
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low:g} and {high:g}{unit}, got {value:g}{unit}")


# Each auth mode's ``sources``: where its settings were read from, in the order of its fields:
# configuration keys (``targets[0].auth.aksk.secret_key_file``) or environment variables
# (``HUAWEICLOUD_SDK_SK``). Messages about a refused credential name them; empty for a
# configuration built in code. Not compared: reordering the targets of a reloaded file does not
# make a target new.


@dataclass(frozen=True)
class TokenAuthConfig:
    """A ready IAM token (``X-Auth-Token``); it expires after 24 h and is not refreshed."""

    token: Secret
    sources: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class PasswordAuthConfig:
    """IAM user name and password, exchanged for a project-scoped token (docs/api-notes.md, "IAM token")."""

    domain: str
    user: str
    password: Secret
    sources: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class AkSkAuthConfig:
    """An access key pair for request signing (docs/api-notes.md, "AK/SK signing"); a security token
    makes it temporary."""

    access_key: str
    secret_key: Secret
    security_token: Secret | None = None
    sources: tuple[str, ...] = field(default=(), compare=False)


AuthConfig = TokenAuthConfig | PasswordAuthConfig | AkSkAuthConfig


@dataclass(frozen=True)
class JobsFilter:
    """Which jobs of a cluster to watch: glob include/exclude on the name, and the job types to list."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    types: tuple[str, ...] = JOB_TYPES

    def __post_init__(self) -> None:
        if not self.types:
            raise ConfigError("types", f"must list at least one job type of {', '.join(JOB_TYPES)}")
        for index, job_type in enumerate(self.types):
            if job_type not in JOB_TYPES:
                raise ConfigError(
                    f"types[{index}]",
                    f"unknown job type {job_type!r}; expected one of {', '.join(JOB_TYPES)}"
                    + did_you_mean(job_type, JOB_TYPES),
                )

    def matches(self, job_name: str) -> bool:
        """Whether ``job_name`` is watched: matches an include (or there is none) and no exclude.

        Matching is case-sensitive on every platform (``fnmatchcase``), like job names.
        """
        if any(fnmatch.fnmatchcase(job_name, pattern) for pattern in self.exclude):
            return False
        return not self.include or any(fnmatch.fnmatchcase(job_name, p) for p in self.include)


@dataclass(frozen=True)
class ProjectSelection:
    """Which projects a ``projects`` target polls: every one the credential may use (``all``),
    or those in the listed regions or whose name matches one of the listed globs.

    An entry shaped like a region ID (``cn-north-4``) selects the region's project and all its
    sub-projects; any other entry is a case-sensitive glob on the project name (``*_prod``,
    ``cn-north-4_etl*``).
    """

    all_projects: bool = False
    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.all_projects and self.patterns:
            raise ConfigError("", "is either all or a list of regions and globs, not both")
        if not self.all_projects and not self.patterns:
            raise ConfigError("", "must list at least one region ID or project-name glob, or be all")
        for index, pattern in enumerate(self.patterns):
            if pattern == "all":
                raise ConfigError(f"[{index}]", "write projects: all (not in a list) to poll every project")
            if not _PROJECT_PATTERN.fullmatch(pattern):
                raise ConfigError(
                    f"[{index}]",
                    f"{pattern!r} is neither a region ID (like cn-north-4) nor a project-name glob "
                    "(up to 64 letters, digits, - and _, with * ? [ ] as wildcards)",
                )

    def selects(self, project_name: str, region: str) -> bool:
        if self.all_projects:
            return True
        return any(
            pattern == region if is_region_id(pattern) else fnmatch.fnmatchcase(project_name, pattern)
            for pattern in self.patterns
        )


@dataclass(frozen=True)
class TargetConfig:
    """One CDM project in one region, with its credentials and what to watch there.

    With ``projects`` it is instead every project its credential may use (or a selection of
    them), found through IAM; ``project_id`` and ``region`` are then empty, ``endpoint`` is a
    template holding ``{region}``, and ``region_endpoints`` overrides it for single regions.
    """

    name: str
    region: str
    project_id: str
    endpoint: str
    iam_endpoint: str
    auth: AuthConfig
    clusters: tuple[str, ...] = ()
    jobs: JobsFilter = field(default_factory=JobsFilter)
    ca_bundle: str | None = None
    tls_insecure_skip_verify: bool = False
    projects: ProjectSelection | None = None
    region_endpoints: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.projects is not None:
            self._check_discovery()
        else:
            self._check_project()
        if not _TARGET_NAME.fullmatch(self.name):
            raise ConfigError(
                "name",
                f"{self.name!r} is not a valid target name; use up to 128 letters, digits and "
                "_ . : / -, starting with a letter or digit",
            )
        for key in ("endpoint", "iam_endpoint"):
            url = getattr(self, key)
            if key == "endpoint" and self.projects is not None:
                url = url.replace(REGION_PLACEHOLDER, "cn-north-4")  # a template: check one region's URL
            problem = endpoint_problem(url)
            if problem:
                raise ConfigError(key, problem)
        for index, cluster in enumerate(self.clusters):
            if not cluster:
                raise ConfigError(f"clusters[{index}]", "must not be empty")
        if self.ca_bundle == "":
            raise ConfigError("ca_bundle", "must not be empty")
        if self.ca_bundle is not None and self.tls_insecure_skip_verify:
            raise ConfigError(
                "tls_insecure_skip_verify",
                "contradicts ca_bundle (a CA bundle is only used to verify); remove one of them",
            )

    def _check_discovery(self) -> None:
        if self.project_id:
            raise ConfigError("projects", "give either project_id or projects, not both")
        if self.region:
            raise ConfigError(
                "region",
                "is not used with projects: each discovered project is polled in its own region "
                "(iam_endpoint chooses the IAM endpoint); remove it",
            )
        if REGION_PLACEHOLDER not in self.endpoint:
            raise ConfigError(
                "endpoint",
                f"with projects, the endpoint is a template for every region: write {REGION_PLACEHOLDER} "
                f"where the region ID goes, like {DEFAULT_ENDPOINT_TEMPLATE} "
                "(region_endpoints sets the endpoint of one region)",
            )
        for region, url in self.region_endpoints:
            if not _REGION.fullmatch(region):
                raise ConfigError(
                    f"region_endpoints[{region!r}]",
                    "is not a region ID; expected lower-case words joined by '-', like cn-north-4",
                )
            problem = endpoint_problem(url)
            if problem:
                raise ConfigError(f"region_endpoints.{region}", problem)

    def _check_project(self) -> None:
        # Region and project first: the endpoints are derived from the region and the name from
        # the project ID, so their errors would otherwise hide the one the user has to fix.
        if not _REGION.fullmatch(self.region):
            raise ConfigError(
                "region",
                f"{self.region!r} is not a region ID; expected lower-case words joined by '-', "
                "like cn-north-4, ap-southeast-1 or eu-de",
            )
        if not _PROJECT_ID.fullmatch(self.project_id):
            raise ConfigError(
                "project_id",
                f"{self.project_id!r} is not a project ID; expected 32 hexadecimal characters "
                "(IAM console > My Credentials > Projects)",
            )
        if self.region_endpoints:
            raise ConfigError(
                "region_endpoints",
                "is only used with projects (one CDM endpoint per discovered region); "
                "a target with a project_id has one endpoint",
            )

    def endpoint_for(self, region: str) -> str:
        """The CDM endpoint of a discovered project in ``region`` (a ``projects`` target)."""
        return dict(self.region_endpoints).get(region) or self.endpoint.replace(REGION_PLACEHOLDER, region)

    def cluster_selected(self, cluster_id: str, cluster_name: str) -> bool:
        """Whether a cluster is watched: ``clusters`` is empty or names its id or its name."""
        return not self.clusters or cluster_id in self.clusters or cluster_name in self.clusters


@dataclass(frozen=True)
class BudgetConfig:
    """Requests per minute the exporter may spend, per API policy (docs/api-notes.md, "Rate limits")."""

    job_status: int = 100
    common: int = 100

    def __post_init__(self) -> None:
        _check_range("job_status", self.job_status, 1, API_LIMIT_PER_MINUTE)
        _check_range("common", self.common, 1, API_LIMIT_PER_MINUTE)


@dataclass(frozen=True)
class CollectionConfig:
    """How often and how hard to ask the API. Durations are in seconds."""

    concurrency: int = 8
    budget_per_minute: BudgetConfig = field(default_factory=BudgetConfig)
    discovery_interval: float = 300.0
    job_list_interval: float = 60.0
    history_interval: float = 300.0
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    default_scrape_timeout: float = 10.0
    scrape_timeout_offset: float = 0.5
    budget_scope: str = "credential"
    unavailable_recheck_interval: float = 3600.0
    status_series: StatusSeries = "all"

    def __post_init__(self) -> None:
        if self.budget_scope not in BUDGET_SCOPES:
            raise ConfigError(
                "budget_scope",
                f"unknown budget scope {self.budget_scope!r}; expected one of {', '.join(BUDGET_SCOPES)}"
                + did_you_mean(self.budget_scope, BUDGET_SCOPES),
            )
        _check_range("unavailable_recheck_interval", self.unavailable_recheck_interval, 0, 7 * DAY, "s")
        if self.status_series not in STATUS_SERIES:
            raise ConfigError(
                "status_series",
                f"must be one of {', '.join(STATUS_SERIES)}, got {self.status_series!r}"
                + did_you_mean(str(self.status_series), STATUS_SERIES),
            )
        _check_range("concurrency", self.concurrency, 1, 64)
        # 0 is allowed for the intervals: refresh on every collection (the budget still applies).
        _check_range("discovery_interval", self.discovery_interval, 0, DAY, "s")
        _check_range("job_list_interval", self.job_list_interval, 0, DAY, "s")
        _check_range("history_interval", self.history_interval, 0, 7 * DAY, "s")
        _check_range("connect_timeout", self.connect_timeout, 0.001, 60, "s")
        _check_range("read_timeout", self.read_timeout, 0.001, 300, "s")
        _check_range("default_scrape_timeout", self.default_scrape_timeout, 0.001, 600, "s")
        _check_range("scrape_timeout_offset", self.scrape_timeout_offset, 0, 60, "s")
        if self.scrape_timeout_offset >= self.default_scrape_timeout:
            raise ConfigError(
                "scrape_timeout_offset",
                f"must be less than default_scrape_timeout ({self.default_scrape_timeout:g}s), "
                f"got {self.scrape_timeout_offset:g}s",
            )


@dataclass(frozen=True)
class Config:
    """The whole configuration: at least one target, uniquely named, and the collection settings."""

    targets: tuple[TargetConfig, ...]
    collection: CollectionConfig = field(default_factory=CollectionConfig)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("targets", "must list at least one target")
        first_index: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.name in first_index:
                hint = (
                    "; the name defaults to the project_id, so two targets of one project need a name each"
                    if target.name == target.project_id
                    else ""
                )
                raise ConfigError(
                    f"targets[{index}].name",
                    f"duplicate target name {target.name!r} (also targets[{first_index[target.name]}]){hint}",
                )
            first_index[target.name] = index

    def target(self, name: str) -> TargetConfig | None:
        """The target called ``name`` (for ``/probe?target=NAME``), or ``None``."""
        return next((t for t in self.targets if t.name == name), None)

    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret value, for :class:`cdm_exporter.logs.RedactingFilter`."""
        values: list[str] = []
        for target in self.targets:
            auth = target.auth
            if isinstance(auth, TokenAuthConfig):
                values.append(auth.token.reveal())
            elif isinstance(auth, PasswordAuthConfig):
                values.append(auth.password.reveal())
            else:
                values.append(auth.secret_key.reveal())
                if auth.security_token is not None:
                    values.append(auth.security_token.reveal())
        return tuple(dict.fromkeys(values))
