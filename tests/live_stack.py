"""A live monitoring stack for tests: CDM simulator -> cdm-exporter -> a real Prometheus, on 127.0.0.1.

    with Simulator(SimulatorSettings(clusters=3, jobs=12)) as sim, live_stack(sim, RULE_FILES) as stack:
        stack.prometheus.wait_for_target_up(SCRAPE_JOB)
        stack.prometheus.query('cdm_job_status{status="FAILED"} == 1')

The simulator and the exporter run in this process (background threads), Prometheus as a subprocess
(``tests/prometheus_server.py``). Everything listens on a free port and is stopped when the ``with``
block ends. Also here: Grafana-style template variable substitution, a copy of the alert rules with
short ``for:`` durations, and small helpers to put simulated jobs into a known state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import GRAFANA_INTERVALS, RULES_DIR, TEMPLATE_VARIABLE, PrometheusServer, ScrapeJob
from sim_targets import sim_account_target, sim_target

from cdm_exporter.cli.service import Service
from cdm_exporter.config import CollectionConfig, Config
from cdm_exporter.simulator import RunView, Simulator
from cdm_exporter.web.http_server import HTTPServer

#: the scrape job name; the rules and the dashboard select the exporter with job=~".*cdm.*"
SCRAPE_JOB = "cdm-exporter"
#: what Prometheus announces in X-Prometheus-Scrape-Timeout-Seconds when we scrape by hand
MANUAL_SCRAPE_TIMEOUT = 5.0
#: the status code of a normal CDM cluster
NORMAL_CLUSTER = "200"

T = TypeVar("T")


class StackError(AssertionError):
    """A wait on the stack timed out (an AssertionError, so pytest reports it as a test failure)."""


def wait_until(check: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:
    """Call ``check`` until it returns something other than None; raise StackError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout} s waiting for {describe()}")
        time.sleep(0.2)


@dataclass
class LiveStack:
    sim: Simulator
    service: Service
    http: HTTPServer
    prometheus: PrometheusServer

    @property
    def address(self) -> str:
        """The exporter's ``host:port``, Prometheus' ``instance`` label."""
        return f"127.0.0.1:{self.http.port}"

    def scrape(self) -> str:
        """``/metrics`` as Prometheus gets it (text format, with a scrape timeout announced)."""
        response = requests.get(
            self.http.url("/metrics"),
            headers={"X-Prometheus-Scrape-Timeout-Seconds": str(MANUAL_SCRAPE_TIMEOUT)},
            timeout=MANUAL_SCRAPE_TIMEOUT + 5,
        )
        response.raise_for_status()
        return response.text


def exporter_config(
    sim: Simulator, collection: CollectionConfig | None = None, *, discovery: bool = False
) -> Config:
    """One target on ``sim`` with its static token (with ``discovery``, a ``projects: all`` target
    for its account); job lists every 5 s unless ``collection`` says."""
    return Config(
        targets=(sim_account_target(sim) if discovery else sim_target(sim),),
        collection=collection or CollectionConfig(job_list_interval=5.0),
    )


@contextmanager
def live_stack(
    sim: Simulator,
    rule_files: Iterable[Path | str] = (),
    *,
    collection: CollectionConfig | None = None,
    extra_scrape_jobs: Sequence[ScrapeJob] = (),
    discovery: bool = False,
) -> Iterator[LiveStack]:
    """Start an exporter on the running simulator ``sim`` and a Prometheus scraping it every second
    (job SCRAPE_JOB, plus ``extra_scrape_jobs``) with ``rule_files`` loaded; both are stopped when the
    block ends (the simulator is the caller's). ``discovery``: see :func:`exporter_config`."""
    with ExitStack() as stack:
        service = Service(exporter_config(sim, collection, discovery=discovery))
        http = service.start("127.0.0.1:0")
        stack.callback(service.stop)
        scrape_jobs = [ScrapeJob(SCRAPE_JOB, [f"127.0.0.1:{http.port}"]), *extra_scrape_jobs]
        prometheus = PrometheusServer(scrape_jobs, rule_files)
        stack.enter_context(prometheus)
        yield LiveStack(sim, service, http, prometheus)


# --- the simulated world ---------------------------------------------------------------------------


def make_clusters_normal(sim: Simulator) -> None:
    """Every cluster normal: a healthy project, where no job list fails."""
    for cluster in sim.world.clusters():
        sim.world.set_cluster_status(cluster.id, NORMAL_CLUSTER)


def run_job(
    sim: Simulator, cluster_id: str, name: str, outcome: str, duration: float, timeout: float = 10.0
) -> RunView:
    """Start a run of job ``name`` that ends with ``outcome`` after ``duration`` simulated seconds and
    wait until it has ended; returns the finished run."""
    sim.world.start_run(cluster_id, name, outcome=outcome, duration=duration)
    return run_job_end(sim, cluster_id, name, timeout)


def run_job_end(sim: Simulator, cluster_id: str, name: str, timeout: float = 10.0) -> RunView:
    """Wait until the latest run of job ``name`` has ended; returns it."""

    def finished() -> RunView | None:
        latest = sim.world.job(cluster_id, name).latest
        return latest if latest is not None and latest.finished else None

    return wait_until(finished, timeout, lambda: f"the run of {name} to end")


def job_list_entry(
    sim: Simulator, cluster_id: str, name: str, job_type: str = "NORMAL_JOB"
) -> dict[str, Any]:
    """The job's entry in ShowJobs (``cdm/job/all``), asked of the simulator as the exporter asks it."""
    response = requests.get(
        f"{sim.url}/v1.1/{sim.settings.project_id}/clusters/{cluster_id}/cdm/job/all",
        params={"jobType": job_type, "page_no": "1", "page_size": "100"},
        headers={"X-Auth-Token": sim.settings.token},
        timeout=10,
    )
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["jobs"]
    found = [entry for entry in entries if entry["name"] == name]
    if len(found) != 1:
        raise LookupError(f"{name} is not on the first page of {job_type} jobs of cluster {cluster_id}")
    return found[0]


# --- alert rules with short for: durations ---------------------------------------------------------


def fast_alert_rules(directory: Path, for_duration: str = "0s") -> Path:
    """A copy of prometheus/alerts.yml in ``directory`` with every ``for:`` set to ``for_duration``, so
    an alert fires at the first evaluation its expression holds instead of minutes later."""
    document: dict[str, Any] = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    alerts = [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]
    if not alerts:
        raise ValueError("prometheus/alerts.yml has no alert rules")
    for rule in alerts:
        rule["for"] = for_duration
    path = directory / "alerts.fast.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


# --- Grafana template variables --------------------------------------------------------------------


def grafana_regex(values: Sequence[str]) -> str:
    """A multi-value variable as Grafana puts it into a regex matcher: one value escaped, several as
    ``(a|b)``. Values are escaped the way Grafana's Prometheus data source escapes them."""
    if not values:
        raise ValueError("a selection needs at least one value")
    escaped = [re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", v.replace("\\", "\\" * 4)) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def resolve_variables(expr: str, selection: Mapping[str, str], interval: str = "5m") -> str:
    """``expr`` with each ``$variable`` replaced from ``selection`` (already regex-formatted values,
    ``.*`` for All) and $__rate_interval etc. set to ``interval``; an unknown variable is an error."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in selection:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return selection[name]

    return TEMPLATE_VARIABLE.sub(value, GRAFANA_INTERVALS.sub(interval, expr))


# --- exposition ------------------------------------------------------------------------------------


def sample_names(exposition: str) -> set[str]:
    """Names of the samples of a text exposition (``_total``, ``_bucket`` etc. included): the series
    names PromQL sees."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}
