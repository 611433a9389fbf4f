"""The Prometheus test harness itself, against a real Prometheus and a tiny prometheus_client server.

One Prometheus for the module (startup and the first scrape take ~6 s): it scrapes a loopback
prometheus_client server that exposes a test gauge and a small, realistic set of contract series
(README.md, "Metrics"), with prometheus/recording.yml and prometheus/alerts.yml loaded. Every query of
the Grafana dashboard then runs against it, which catches evaluation errors (many-to-many matches,
duplicate label sets) that a parse check cannot.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_server import (
    RULE_FILES,
    PrometheusError,
    PrometheusServer,
    Sample,
    ScrapeJob,
    dashboard_queries,
    promtool_check_metrics,
    require_prometheus_tools,
)

pytestmark = pytest.mark.prometheus

PROJECT = {"project_id": "0123456789abcdef0123456789abcdef", "region": "cn-north-4"}
CLUSTER = {"cluster_id": "bae65496-643e-47ca-84af-948672de7eeb", "cluster_name": "cdm-c018"}
STATUSES = ("BOOTING", "FAILURE_ON_SUBMIT", "RUNNING", "SUCCEEDED", "FAILED", "UNKNOWN", "NEVER_EXECUTED")
CLUSTER_STATUSES = (
    "creating",
    "normal",
    "failed",
    "create_failed",
    "restarting",
    "frozen",
    "stopped",
    "stopping",
)
JOBS = {"jdbc2hive": "RUNNING", "es_css": "SUCCEEDED", "obs2obs-03": "PENDING", "mysql2obs": "FAILED"}
ERROR_SUMMARY = "Cdm.0901: Failed to connect to the database"
JOB_INFO_LABELS = (
    "job_type",
    "external_id",
    "creation_user",
    "last_update_user",
    "incremental",
    "execute_auto",
    "delete_after_run",
    "stopping_increment",
    "from_connector",
    "to_connector",
    "from_link",
    "to_link",
)


#: the share of their runs that fail, of the jobs with run counters
FAILURE_SHARES = {"es_css": 0.1, "mysql2obs": 0.2}  # below CdmJobFailureRatioHigh's 0.25


class RunCounters(Collector):
    """cdm_job_runs_total and cdm_job_run_failures_total that grow with time, as run counters of
    jobs that run and fail do: a run a second, FAILURE_SHARES of them failed."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        elapsed = time.monotonic() - self.start
        labels = [*CLUSTER, "job_name"]
        runs = CounterMetricFamily("cdm_job_runs", "Runs that ended.", labels=labels)
        failures = CounterMetricFamily("cdm_job_run_failures", "Runs that failed.", labels=labels)
        for job_name, share in FAILURE_SHARES.items():
            runs.add_metric([*CLUSTER.values(), job_name], elapsed)
            failures.add_metric([*CLUSTER.values(), job_name], elapsed * share)
        yield runs
        yield failures


@dataclass
class Exposition:
    registry: CollectorRegistry
    value: Gauge
    address: str


def job_gauge(registry: CollectorRegistry, name: str, *extra: str) -> Gauge:
    return Gauge(
        name,
        f"{name} of the latest run.",
        ["cluster_id", "cluster_name", "job_name", *extra],
        registry=registry,
    )


def contract_series(registry: CollectorRegistry) -> None:
    """What cdm-exporter would expose for one cluster with four jobs (one of each kind of state)."""
    now = time.time()
    status = job_gauge(registry, "cdm_job_status", "status")
    info = job_gauge(registry, "cdm_job_info", *JOB_INFO_LABELS)
    refreshed = job_gauge(registry, "cdm_job_refresh_timestamp_seconds")
    for job_name, current in JOBS.items():
        for s in (*STATUSES, current):
            status.labels(**CLUSTER, job_name=job_name, status=s).set(1 if s == current else 0)
        info_labels = dict.fromkeys(JOB_INFO_LABELS, "") | {"job_type": "NORMAL_JOB", "execute_auto": "true"}
        info.labels(**CLUSTER, job_name=job_name, **info_labels).set(1)
        refreshed.labels(**CLUSTER, job_name=job_name).set(now - 30)
    job = {**CLUSTER, "job_name": "jdbc2hive"}
    done = {**CLUSTER, "job_name": "es_css"}
    job_gauge(registry, "cdm_job_progress_ratio").labels(**job).set(0.42)
    for name, running, finished in (
        ("cdm_job_read_rows", 420, 1000),
        ("cdm_job_written_rows", 400, 998),
        ("cdm_job_written_bytes", 4 << 20, 10 << 20),
        ("cdm_job_execute_timestamp_seconds", now - 600, now - 7200),
    ):
        gauge = job_gauge(registry, name)
        gauge.labels(**job).set(running)
        gauge.labels(**done).set(finished)
    job_gauge(registry, "cdm_job_last_success_timestamp_seconds").labels(**done).set(now - 3600)
    history = job_gauge(registry, "cdm_job_history_timestamp_seconds")
    duration = job_gauge(registry, "cdm_job_last_run_duration_seconds")
    for job_name, seconds in (("es_css", 180.0), ("mysql2obs", 60.0)):
        history.labels(**CLUSTER, job_name=job_name).set(now - 60)
        duration.labels(**CLUSTER, job_name=job_name).set(seconds)
    job_gauge(registry, "cdm_job_last_failure_timestamp_seconds").labels(**CLUSTER, job_name="mysql2obs").set(
        now - 120
    )
    registry.register(RunCounters())
    job_gauge(registry, "cdm_job_error_info", "error_summary").labels(
        **CLUSTER, job_name="mysql2obs", error_summary=ERROR_SUMMARY
    ).set(1)
    Gauge(
        "cdm_cluster_info", "Cluster.", [*CLUSTER, "project_id", "region", "version"], registry=registry
    ).labels(**CLUSTER, **PROJECT, version="2.10.0").set(1)
    cluster_status = Gauge("cdm_cluster_status", "Cluster status.", [*CLUSTER, "status"], registry=registry)
    for s in CLUSTER_STATUSES:
        cluster_status.labels(**CLUSTER, status=s).set(1 if s == "normal" else 0)
    Gauge("cdm_cluster_up", "Job list worked.", list(CLUSTER), registry=registry).labels(**CLUSTER).set(1)
    # cdm_up 0: the API is down for this project (makes CdmExporterApiDown pending).
    Gauge("cdm_up", "Collection worked.", list(PROJECT), registry=registry).labels(**PROJECT).set(0)
    Gauge("cdm_scrape_duration_seconds", "Collection time.", registry=registry).set(0.8)
    # the project was found by a projects target, and is not set aside
    Gauge("cdm_project_info", "Project.", [*PROJECT, "project_name"], registry=registry).labels(
        **PROJECT, project_name=PROJECT["region"]
    ).set(1)
    unavailable = Gauge("cdm_project_unavailable", "Set aside.", [*PROJECT, "reason"], registry=registry)
    for reason in ("not_offered", "forbidden"):
        unavailable.labels(**PROJECT, reason=reason).set(0)
    Gauge("cdm_project_discovery_up", "Listing worked.", ["target"], registry=registry).labels(
        target="account"
    ).set(1)
    budget = Gauge("cdm_api_budget_remaining", "Budget.", [*PROJECT, "policy"], registry=registry)
    budget.labels(**PROJECT, policy="job_status").set(87)
    budget.labels(**PROJECT, policy="common").set(95)
    requests = Counter("cdm_api_requests", "API calls.", ["endpoint", "code"], registry=registry)
    latency = Histogram("cdm_api_request_duration_seconds", "API latency.", ["endpoint"], registry=registry)
    for endpoint, code in (("list_jobs", "200"), ("job_status", "200"), ("job_status", "429")):
        requests.labels(endpoint=endpoint, code=code).inc(5)
        latency.labels(endpoint=endpoint).observe(0.12)
    Gauge("cdm_exporter_build_info", "Version.", ["version"], registry=registry).labels(version="0.1.0").set(
        1
    )


@pytest.fixture(scope="module")
def exposition() -> Iterator[Exposition]:
    registry = CollectorRegistry()
    value = Gauge("harness_test_value", "A value set by the test.", registry=registry)
    value.set(42.5)
    contract_series(registry)
    server: WSGIServer
    thread: threading.Thread
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield Exposition(registry, value, f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prom(exposition: Exposition) -> Iterator[PrometheusServer]:
    require_prometheus_tools()
    with PrometheusServer([ScrapeJob("cdm-exporter", [exposition.address])], RULE_FILES) as server:
        server.wait_for_target_up("cdm-exporter")
        yield server


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples}


def test_query_returns_the_scraped_value(prom: PrometheusServer, exposition: Exposition) -> None:
    (sample,) = prom.query("harness_test_value")
    assert sample.value == 42.5
    assert sample.name == "harness_test_value"
    assert sample.labels["job"] == "cdm-exporter"
    assert sample.labels["instance"] == exposition.address


def test_query_follows_a_changed_value(prom: PrometheusServer, exposition: Exposition) -> None:
    exposition.value.set(-7.25)
    try:
        (sample,) = prom.wait_for_query("harness_test_value", lambda s: len(s) == 1 and s[0].value == -7.25)
        assert sample.value == -7.25
    finally:
        exposition.value.set(42.5)


def test_scalar_results_and_query_errors(prom: PrometheusServer) -> None:
    (sample,) = prom.query("scalar(vector(3))")
    assert sample.labels == {}
    assert sample.value == 3
    assert math.isnan(prom.query("scalar(absent_metric_xyz)")[0].value)
    with pytest.raises(PrometheusError, match="parse error"):
        prom.query("sum(")


def test_query_range_and_label_values(prom: PrometheusServer) -> None:
    (now,) = prom.query("time()")
    (series,) = prom.query_range("harness_test_value", now.value - 2, now.value, 1)
    assert len(series.points) >= 1
    assert prom.label_values("job_name", 'cdm_job_status{cluster_name="cdm-c018"}') == sorted(JOBS)


def test_recording_rules_load_and_evaluate(prom: PrometheusServer) -> None:
    groups = prom.wait_for_rules_evaluated()
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"cluster:cdm_job_status:sum", "cluster_job:cdm_job_status:code", "CdmJobFailed"} <= names
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert broken == []

    counts = prom.wait_for_query('cluster:cdm_job_status:sum{cluster_name="cdm-c018"}', lambda s: len(s) >= 8)
    expected = dict.fromkeys(STATUSES, 0.0) | {
        "RUNNING": 1.0,
        "SUCCEEDED": 1.0,
        "PENDING": 1.0,
        "FAILED": 1.0,
    }
    assert by_label(counts, "status") == expected

    codes = prom.wait_for_query("cluster_job:cdm_job_status:code", lambda s: len(s) == 4)
    assert by_label(codes, "job_name") == {"jdbc2hive": 3, "es_css": 4, "obs2obs-03": 0, "mysql2obs": 5}


def test_alerts_lists_pending_alerts(prom: PrometheusServer) -> None:
    (api_down,) = prom.wait_for_alert("CdmExporterApiDown")
    assert api_down.state == "pending"  # for: 5m
    assert api_down.labels["region"] == "cn-north-4"
    assert api_down.labels["severity"] == "critical"
    assert PROJECT["project_id"] in api_down.annotations["summary"]
    # The error summary comes from a query in the annotation template.
    (failed,) = prom.wait_for_alert("CdmJobFailed", "pending")
    assert failed.labels["job_name"] == "mysql2obs"
    assert f"Error summary: {ERROR_SUMMARY}." in failed.annotations["description"]
    # mysql2obs is scheduled, its history was read, a run ended, and no success is known
    (never,) = [a for a in prom.alerts() if a.name == "CdmJobNeverSucceeded"]
    assert (never.labels["job_name"], never.state) == ("mysql2obs", "pending")  # for: 1h
    # Nothing else: in particular CdmJobStuck must not take a just-appeared RUNNING series for 30 minutes.
    assert {a.name for a in prom.alerts()} == {"CdmExporterApiDown", "CdmJobFailed", "CdmJobNeverSucceeded"}


# Queries that are empty on this static exposition: rates of counters that do not change (filtered by
# "> 0") and the annotation of firing job alerts.
MAY_BE_EMPTY = {"panel_13_A", "panel_14_A", "panel_35_A", "annotation_0"}


def test_every_dashboard_query_runs(prom: PrometheusServer) -> None:
    prom.wait_for_rules_evaluated()
    prom.wait_for_query("count_over_time(harness_test_value[1m]) >= 3")
    (now,) = prom.query("time()")
    empty = []
    queries = dashboard_queries()
    assert len(queries) > 30
    for q in queries:
        expr = q.substituted(".*", interval="1m")
        try:
            samples = prom.query(expr)
            prom.query_range(expr, now.value - 20, now.value, 2)
        except PrometheusError as err:
            pytest.fail(f"{q.where} ({q.title}): {err}")
        if not samples:
            empty.append(q.where)
    assert set(empty) <= MAY_BE_EMPTY, [q for q in queries if q.where in set(empty) - MAY_BE_EMPTY]


def test_dashboard_values(prom: PrometheusServer) -> None:
    """A few panels, as the dashboard asks them, give the numbers the exposition implies."""
    queries = {q.where: q.substituted(".*", interval="1m") for q in dashboard_queries()}

    def single(where: str) -> float:
        (sample,) = prom.query(queries[where])
        return sample.value

    assert single("panel_3_A") == 1  # running now: jdbc2hive
    assert single("panel_4_A") == 1  # failed now: mysql2obs
    assert single("panel_5_A") == 0  # clusters not normal
    assert by_label(prom.query(queries["panel_11_A"]), "job_name") == dict.fromkeys(JOBS, 1.0)
    assert {s.labels["status"] for s in prom.query(queries["panel_11_A"])} == set(JOBS.values())
    assert by_label(prom.query(queries["panel_11_B"]), "job_name") == {"jdbc2hive": 0.42}
    (since_success,) = prom.query(queries["panel_11_G"])
    assert 3600 <= since_success.value < 3700
    (error,) = prom.query(queries["panel_11_H"])
    assert error.labels["error_summary"] == ERROR_SUMMARY
    assert by_label(prom.query(queries["panel_12_A"]), "job_name") == {"jdbc2hive": 0.42}
    timeline = by_label(prom.query(queries["panel_15_A"]), "job_name")
    assert timeline == {"jdbc2hive": 3, "es_css": 4, "obs2obs-03": 0, "mysql2obs": 5}
    assert single("panel_21_D") == 4  # jobs on the cluster
    # run history: the failure ratio of each job with run counters, and of the cluster
    assert by_label(prom.query(queries["panel_44_A"]), "job_name") == pytest.approx(FAILURE_SHARES)
    assert single("panel_45_A") == pytest.approx(sum(FAILURE_SHARES.values()) / len(FAILURE_SHARES))
    assert by_label(prom.query(queries["panel_47_A"]), "job_name") == {"es_css": 180.0, "mysql2obs": 60.0}
    assert {s.labels["cluster_name"]: s.value for s in prom.query(queries["panel_46_A"])} == {
        "cdm-c018": 180.0
    }
    assert prom.label_values("cluster_name", queries["variable_cluster"]) == ["cdm-c018"]
    assert prom.label_values("job_name", queries["variable_job"]) == sorted(JOBS)


def test_promtool_check_metrics(exposition: Exposition) -> None:
    require_prometheus_tools()
    ok, output = promtool_check_metrics(generate_latest(exposition.registry).decode())
    assert ok, output
    ok, output = promtool_check_metrics("# TYPE cdm_up gauge\ncdm_up{region=\n")
    assert not ok
    assert output
