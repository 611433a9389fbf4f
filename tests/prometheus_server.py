"""Test harness: a real Prometheus server (and promtool) for tests.

Usage::

    with PrometheusServer([ScrapeJob("cdm-exporter", ["127.0.0.1:9792"])],
                          rule_files=[RULES_DIR / "recording.yml"]) as prom:
        prom.wait_for_target_up("cdm-exporter")
        samples = prom.query('cdm_up{region="cn-north-4"}')

The server listens on 127.0.0.1 on a free port, with a temporary config file and data directory that are
removed on stop, and a short scrape and evaluation interval (1 s by default). Prometheus 2.42 waits about
5 s before its first scrape, so wait with ``wait_for_target_up`` / ``wait_for_query`` (they poll against
a deadline) rather than sleeping.

Binaries: ``/usr/bin/prometheus`` and ``/usr/bin/promtool`` (Debian package ``prometheus``), or the paths
in ``$PROMETHEUS_BIN`` / ``$PROMTOOL_BIN``. ``require_prometheus_tools()`` skips the calling test when they
are missing, or fails it when ``$CI`` is set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = REPO_ROOT / "prometheus"
RULE_FILES = (RULES_DIR / "recording.yml", RULES_DIR / "alerts.yml")
DASHBOARD_PATH = REPO_ROOT / "grafana" / "cdm-exporter.json"

PROMETHEUS_BIN = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
PROMTOOL_BIN = Path(os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool"))

T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus failed to start, answered with an error, or a wait timed out."""


def missing_prometheus_tools() -> list[str]:
    """The required binaries that are not installed (empty when both are there)."""
    return [str(p) for p in (PROMETHEUS_BIN, PROMTOOL_BIN) if not (p.is_file() and os.access(p, os.X_OK))]


def require_prometheus_tools() -> None:
    """Skip the calling test when prometheus/promtool are missing; fail instead when $CI is set."""
    missing = missing_prometheus_tools()
    if not missing:
        return
    message = (
        f"missing {', '.join(missing)}: install the Debian package 'prometheus' "
        "(apt-get install -y --no-install-recommends prometheus) or set PROMETHEUS_BIN/PROMTOOL_BIN"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def promtool(*args: str, stdin: str | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args``; never raises on a non-zero exit (check ``returncode``)."""
    return subprocess.run(
        [str(PROMTOOL_BIN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def promtool_check_metrics(text: str) -> tuple[bool, str]:
    """Lint an exposition text with ``promtool check metrics``: (passed, promtool's output)."""
    result = promtool("check", "metrics", stdin=text)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ScrapeJob:
    """One ``scrape_configs`` entry with static targets (``host:port``)."""

    job_name: str
    targets: Sequence[str]
    metrics_path: str = "/metrics"
    params: Mapping[str, Sequence[str]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    scrape_interval: float | None = None  # seconds; None = the server's global interval
    scrape_timeout: float | None = None  # seconds; None = the scrape interval

    def to_config(self, default_interval: float) -> dict[str, Any]:
        interval = self.scrape_interval or default_interval
        timeout = self.scrape_timeout or interval
        config: dict[str, Any] = {
            "job_name": self.job_name,
            "scrape_interval": _duration(interval),
            "scrape_timeout": _duration(timeout),
            "metrics_path": self.metrics_path,
            "static_configs": [{"targets": list(self.targets), "labels": dict(self.labels)}],
        }
        if self.params:
            config["params"] = {k: list(v) for k, v in self.params.items()}
        return config


@dataclass(frozen=True)
class Sample:
    """One instant-vector element (or a scalar/string result, with empty labels)."""

    labels: dict[str, str]  # includes __name__ when the series has one
    value: float
    timestamp: float

    @property
    def name(self) -> str | None:
        return self.labels.get("__name__")


@dataclass(frozen=True)
class Series:
    """One range-vector element: (timestamp, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Alert:
    """One entry of /api/v1/alerts (state is "pending" or "firing")."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: str
    active_at: str
    value: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class PrometheusServer:
    """A real Prometheus on 127.0.0.1 with a temporary config and data dir; a context manager."""

    def __init__(
        self,
        scrape_jobs: Iterable[ScrapeJob] = (),
        rule_files: Iterable[Path | str] = (),
        *,
        scrape_interval: float = 1.0,
        evaluation_interval: float = 1.0,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        binary: Path | None = None,
    ) -> None:
        self.scrape_jobs = list(scrape_jobs)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.binary = binary or PROMETHEUS_BIN
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise PrometheusError("Prometheus is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> dict[str, Any]:
        """The configuration written to the temporary config file (JSON is valid YAML)."""
        return {
            "global": {
                "scrape_interval": _duration(self.scrape_interval),
                "scrape_timeout": _duration(self.scrape_interval),
                "evaluation_interval": _duration(self.evaluation_interval),
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [job.to_config(self.scrape_interval) for job in self.scrape_jobs],
        }

    def start(self) -> None:
        """Start Prometheus and wait until it is ready; retries on a port taken in the meantime."""
        if self._proc is not None:
            raise PrometheusError("Prometheus is already started")
        self._tmp = tempfile.TemporaryDirectory(prefix="cdm-prometheus-")
        tmp = Path(self._tmp.name)
        config_file = tmp / "prometheus.yml"
        config_file.write_text(json.dumps(self.config, indent=2))
        last_error = ""
        try:
            for attempt in range(3):
                self.port = free_port()
                self._log_path = tmp / f"prometheus-{attempt}.log"
                with self._log_path.open("wb") as log:
                    self._proc = subprocess.Popen(
                        [
                            str(self.binary),
                            f"--config.file={config_file}",
                            f"--storage.tsdb.path={tmp / 'data'}",
                            f"--web.listen-address=127.0.0.1:{self.port}",
                            "--web.enable-lifecycle",
                            *self.extra_args,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=tmp,
                    )
                if self._wait_ready():
                    return
                last_error = self.log_tail()
                self._terminate()
                if "address already in use" not in last_error:
                    break
            raise PrometheusError(f"Prometheus did not become ready:\n{last_error}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate Prometheus (SIGTERM, then SIGKILL) and remove its temporary files."""
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Prometheus' own log, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        return False

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    # HTTP API --------------------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET /api/v1/<path> and return its ``data``; raises PrometheusError on an error answer."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise PrometheusError(f"GET {url}: HTTP {err.code}: {detail}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluate ``promql`` as an instant query (now, or at the Unix time ``at``)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        result_type, result = data["resultType"], data["result"]
        if result_type == "vector":
            return [Sample(dict(r["metric"]), float(r["value"][1]), float(r["value"][0])) for r in result]
        if result_type == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        if result_type == "string":
            raise PrometheusError(f"query {promql!r} returned a string: {result[1]!r}")
        raise PrometheusError(f"query {promql!r} returned a {result_type}; use query_range")

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        """Evaluate ``promql`` as a range query (what Grafana time series panels do)."""
        data = self.api(
            "query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        )
        return [
            Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def raw_samples(self, selector: str, seconds: float) -> list[Series]:
        """The samples stored for ``selector`` over the last ``seconds``, as scraped (a range
        vector selector asked as an instant query: no evaluation steps, one point a scrape)."""
        data = self.api("query", {"query": f"{selector}[{round(seconds * 1000)}ms]"})
        if data["resultType"] != "matrix":
            raise PrometheusError(f"{selector!r} is not a plain series selector")
        return [
            Series(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]
        ]

    def label_values(self, label: str, match: str | None = None) -> list[str]:
        """/api/v1/label/<label>/values, as Grafana's label_values(match, label) asks it."""
        params = {"match[]": match} if match else None
        values: list[str] = self.api(f"label/{urllib.parse.quote(label, safe='')}/values", params)
        return values

    def alerts(self) -> list[Alert]:
        """Pending and firing alerts."""
        return [
            Alert(
                labels=dict(a["labels"]),
                annotations=dict(a.get("annotations", {})),
                state=a["state"],
                active_at=a.get("activeAt", ""),
                value=a.get("value", ""),
            )
            for a in self.api("alerts")["alerts"]
        ]

    def rule_groups(self) -> list[dict[str, Any]]:
        """/api/v1/rules groups (each rule has name, query, health, lastError, type)."""
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (labels, health "up"/"down"/"unknown", lastError, scrapeUrl)."""
        active: list[dict[str, Any]] = self.api("targets", {"state": "active"})["activeTargets"]
        return active

    # waiting ---------------------------------------------------------------------------------

    def wait_for_target_up(self, job_name: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until every target (of ``job_name``, or of all jobs) has been scraped successfully."""

        def all_up() -> list[dict[str, Any]] | None:
            targets = [t for t in self.targets() if job_name is None or t["labels"].get("job") == job_name]
            if targets and all(t["health"] == "up" for t in targets):
                return targets
            return None

        return self.wait_for(all_up, timeout, lambda: f"targets of job {job_name!r} up: {self.targets()}")

    def wait_for_query(
        self,
        promql: str,
        predicate: Callable[[list[Sample]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[Sample]:
        """Poll ``promql`` until ``predicate(samples)`` holds (default: the result is not empty)."""

        def check() -> list[Sample] | None:
            samples = self.query(promql)
            return samples if predicate(samples) else None

        return self.wait_for(check, timeout, lambda: f"query {promql!r}; last result: {self.query(promql)}")

    def wait_for_rules_evaluated(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until every loaded rule has been evaluated (health not "unknown"); returns the groups."""

        def evaluated() -> list[dict[str, Any]] | None:
            groups = self.rule_groups()
            rules = [r for g in groups for r in g["rules"]]
            return groups if rules and all(r["health"] != "unknown" for r in rules) else None

        return self.wait_for(evaluated, timeout, lambda: f"rules evaluated: {self.rule_groups()}")

    def wait_for_alert(self, alertname: str, state: str | None = None, timeout: float = 30.0) -> list[Alert]:
        """Poll until alert ``alertname`` is active (in ``state`` "pending"/"firing" if given)."""

        def active() -> list[Alert] | None:
            found = [a for a in self.alerts() if a.name == alertname and state in (None, a.state)]
            return found or None

        return self.wait_for(active, timeout, lambda: f"alert {alertname} {state or ''}: {self.alerts()}")

    def wait_for(self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:
        """Call ``check`` until it returns something other than None, or raise after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise PrometheusError(f"Prometheus is not running:\n{self.log_tail()}")
            result = check()
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                raise PrometheusError(f"timed out after {timeout} s waiting for {describe()}")
            time.sleep(0.2)


def _duration(seconds: float) -> str:
    """A Prometheus duration string: 1.5 -> "1500ms"."""
    return f"{round(seconds * 1000)}ms"


# dashboard queries ------------------------------------------------------------------------------

GRAFANA_INTERVALS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\}?")
TEMPLATE_VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")


@dataclass(frozen=True)
class DashboardQuery:
    """One PromQL expression of the dashboard, as written (with $variables)."""

    where: str  # panel_<id>_<refId>, annotation_<n> or variable_<name> (usable in a record name)
    title: str
    expr: str
    instant: bool

    def substituted(self, value: str = ".*", interval: str = "5m") -> str:
        """The expression as Grafana sends it with every template variable set to ``value`` (a regex:
        All is ".*", a multi-selection "(a|b)") and $__rate_interval etc. set to ``interval``."""
        return TEMPLATE_VARIABLE.sub(value, GRAFANA_INTERVALS.sub(interval, self.expr))


def dashboard_queries(dashboard: Mapping[str, Any] | None = None) -> list[DashboardQuery]:
    """Every query of the dashboard: panel targets, annotations, and the selector of each
    label_values(selector, label) template variable."""
    if dashboard is None:
        dashboard = json.loads(DASHBOARD_PATH.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for p in (panel, *panel.get("panels", [])):
            for t in p.get("targets", []):
                where = f"panel_{p['id']}_{t['refId']}"
                queries.append(DashboardQuery(where, p["title"], t["expr"], bool(t.get("instant"))))
    for i, annotation in enumerate(dashboard["annotations"]["list"]):
        if "expr" in annotation:
            queries.append(DashboardQuery(f"annotation_{i}", annotation["name"], annotation["expr"], False))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            selector, _ = label_values_query(variable["definition"])
            queries.append(DashboardQuery(f"variable_{variable['name']}", variable["name"], selector, True))
    return queries


def label_values_query(query: str) -> tuple[str, str]:
    """label_values(selector, label) -> (selector, label)."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    if match is None:
        raise ValueError(f"not a label_values(selector, label) query: {query}")
    return match.group(1), match.group(2)
