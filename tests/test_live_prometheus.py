"""End to end against a real Prometheus: CDM simulator -> cdm-exporter -> Prometheus (tests/live_stack.py).

Two stacks, one per module fixture, each with its own simulator, exporter and Prometheus scraping every
second:

``monitored``
    A healthy project (3 normal clusters, 12 generated jobs each, simulated time 5x faster; found by a
    ``projects: all`` target, so the discovery series are there too) plus jobs
    put into known states before the exporter starts: one that SUCCEEDED, one that FAILED after an
    earlier success, long runs, a job scheduled every few seconds whose runs often fail. Prometheus loads
    prometheus/recording.yml and alerts.yml unchanged. Issue 3: job status, progress and the counters of a
    finished run as PromQL sees them agree with the simulator; promtool finds nothing in the real
    exposition. Issues 5 and 15: every dashboard query (All and a concrete selection) and template
    variable returns data, the run history panels included; the API error panel, empty while nothing
    fails, fills with injected 429s and 500s; every metric name the dashboard and rules use is exported.

``alerting``
    A small project whose only job runs, a copy of alerts.yml with every ``for:`` set to 0s (alerts fire
    at the first evaluation instead of minutes later) and a scrape target that never answers: a failed
    run fires CdmJobFailed with its error summary, a rejected credential or a failing cluster list
    CdmExporterApiDown, HTTP 429s CdmExporterThrottled, a stopped cluster CdmClusterNotNormal and
    CdmClusterUnreachable, the dead target CdmExporterDown, and (added last) a scheduled job that never
    succeeds CdmJobNeverSucceeded and CdmJobFailureRatioHigh.

``current``
    An exporter with ``collection.status_series: current`` (only the current status's
    ``cdm_job_status`` series) under the unchanged rules and dashboard: every dashboard query has data,
    the status code rule reads each job right, and a failed run fires CdmJobFailed.

The last test guards the changed-job reserve of the poller's status priorities. Waits poll
against deadlines.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from live_stack import (
    SCRAPE_JOB,
    LiveStack,
    StackError,
    fast_alert_rules,
    grafana_regex,
    job_list_entry,
    live_stack,
    make_clusters_normal,
    resolve_variables,
    run_job,
    run_job_end,
    sample_names,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import (
    DASHBOARD_PATH,
    RULE_FILES,
    RULES_DIR,
    Alert,
    DashboardQuery,
    PrometheusServer,
    Sample,
    ScrapeJob,
    dashboard_queries,
    free_port,
    label_values_query,
    promtool_check_metrics,
    require_prometheus_tools,
)
from test_dashboard_static import selectors

from cdm_exporter.config import CollectionConfig
from cdm_exporter.simulator import ClusterView, Fault, JobView, RunView, Simulator, SimulatorSettings

pytestmark = pytest.mark.prometheus

# Simulated time runs 5x faster: generated runs start and end during the test, boots last seconds.
TIME_SCALE = 5.0
SHORT_RUN = 5.0  # simulated seconds: a run that is over after 1 s
LONG_RUN = 3000.0  # simulated seconds: 10 minutes, longer than this module runs
JOB_LIST_INTERVAL = 10.0  # the exporter's job list refresh (3 clusters x 3 job types per round)
MAX_BOOT = 20.0  # simulated seconds a run may stay BOOTING or PENDING (the simulator draws up to 16.8)

SUCCEEDED_PREFIX = "live_succeeded"  # see add_succeeded_runs
FAILED_JOB = "live_failed"  # FAILED, after an earlier SUCCEEDED run
RUNNING_PREFIX = "live_running"  # see start_writing_run
# scheduled every FREQUENT_PERIOD simulated seconds, half of its runs fail: the run history panels need
# runs that end while Prometheus watches
FREQUENT_JOB = "live_frequent"
FREQUENT_PERIOD = 30.0
# run until the exporter has seen them RUNNING, then end (test_runs_that_end_while_others_run_are_fetched)
STARVED_FAILS = "live_starved_fails"
STARVED_SUCCEEDS = "live_starved_succeeds"
# the only job of the alerting stack; its name needs quoting and regex escaping (CdmJobFailed's annotation
# queries the error summary by job name, the dashboard selects jobs by regex)
ALERTING_JOB = "orders sync (daily) 数据/100%"
GONE_SCRAPE_JOB = "cdm-exporter-gone"  # a scrape job of the alerting stack whose target never answers

# Series names of the dashboard and rules that Prometheus writes itself, and the optional per-job
# override users define in a rules file of their own (prometheus/recording.yml documents it).
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "ALERTS", "ALERTS_FOR_STATE"})
USER_SERIES = frozenset({"cdm_job:success_max_age_seconds:override", "cdm_job:failure_ratio_max:override"})

# Dashboard queries that are empty by nature while nothing goes wrong (title -> what makes them show).
NEEDS_API_ERRORS = frozenset({"API errors and throttling"})
NEEDS_FIRING_JOB_ALERT = frozenset({"CDM job alerts"})  # the annotation; checked in the alerting stack

# A run's counters as the exporter names them -> the RunView field with the simulator's value.
RUN_GAUGES: Mapping[str, str] = {
    "cdm_job_read_rows": "rows_read",
    "cdm_job_written_rows": "rows_written",
    "cdm_job_skipped_rows": "rows_skipped",
    "cdm_job_read_bytes": "bytes_read",
    "cdm_job_written_bytes": "bytes_written",
    "cdm_job_total_size_bytes": "total_size",
    "cdm_job_read_files": "files_read",
    "cdm_job_written_files": "files_written",
    "cdm_job_skipped_files": "files_skipped",
    "cdm_job_total_files": "total_files",
    "cdm_job_write_rows": "write_rows",
    "cdm_job_update_rows": "update_rows",
    "cdm_job_delete_rows": "delete_rows",
    "cdm_job_submission_id": "submission_id",
    "cdm_job_execute_timestamp_seconds": "start",
    "cdm_job_creation_timestamp_seconds": "start",
    "cdm_job_last_update_timestamp_seconds": "last_update",
}
ERROR_SUMMARY_MAX = 256  # the exporter cuts error_summary labels to this length


class StarvedJob(AssertionError):
    """The exporter never fetched the status of a job whose run ended (the expected failure)."""


@dataclass(frozen=True)
class Finished:
    name: str
    run: RunView


@dataclass(frozen=True)
class KnownJobs:
    """Jobs of the monitored stack in states set before the exporter started."""

    cluster: ClusterView
    running: str  # a job in a long run whose job list entries carry row counters
    frequent: str  # a scheduled job whose runs end every few seconds, half of them failed
    succeeded: dict[str, Finished]  # COUNTER_CASES case -> a job whose only run SUCCEEDED
    earlier_success: RunView  # the first run of FAILED_JOB
    failed: RunView  # the latest run of FAILED_JOB


@dataclass(frozen=True)
class Monitored:
    stack: LiveStack
    jobs: KnownJobs
    started: float  # wall time the exporter started: state older than this it saw from the start

    @property
    def prom(self) -> PrometheusServer:
        return self.stack.prometheus

    @property
    def sim(self) -> Simulator:
        return self.stack.sim


def start_writing_run(sim: Simulator, cluster_id: str) -> str:
    """Start a long run of a new job whose job list entry carries row counters; returns its name.

    While a run is under way only the job list reports its rows and bytes (ShowJobStatus has counters
    once it SUCCEEDED), and the simulator leaves them out of some entries, as CDM may: the rows and
    bytes per second panels need a job that has them."""
    for attempt in range(1, 11):
        name = f"{RUNNING_PREFIX}_{attempt}"
        sim.world.add_job(cluster_id, name)
        sim.world.start_run(cluster_id, name, outcome="SUCCEEDED", duration=LONG_RUN)
        if "rows_written" in job_list_entry(sim, cluster_id, name):
            return name
    raise AssertionError("no job list entry with row counters in 10 runs")


# What the counters of the SUCCEEDED runs must tell apart. In most runs rows read and written are
# equal, and update/delete rows or files are 0, so a mixed-up field would go unnoticed.
COUNTER_CASES: Mapping[str, Callable[[RunView], bool]] = {
    "rows skipped": lambda run: run.rows_skipped > 0,  # rows and bytes read != written
    "incremental": lambda run: run.update_rows > 0 and run.delete_rows > 0,
    "files": lambda run: run.files_read > 0,
}


def add_succeeded_runs(sim: Simulator, cluster_id: str, candidates: int = 30) -> dict[str, Finished]:
    """Jobs whose only run SUCCEEDED, one for each of COUNTER_CASES: runs of ``candidates`` new jobs
    (what each moves is drawn from the simulator's seed), the first to match each case kept, the
    other jobs deleted."""
    names = [f"{SUCCEEDED_PREFIX}_{i}" for i in range(1, candidates + 1)]
    for name in names:
        sim.world.add_job(cluster_id, name)
        sim.world.start_run(cluster_id, name, outcome="SUCCEEDED", duration=SHORT_RUN)
    runs = {name: run_job_end(sim, cluster_id, name) for name in names}
    chosen: dict[str, Finished] = {}
    for case, matches in COUNTER_CASES.items():
        taken = {f.name for f in chosen.values()}
        found = [Finished(n, run) for n, run in runs.items() if n not in taken and matches(run)]
        if not found:
            raise AssertionError(f"no run with {case} among {candidates}: raise candidates")
        chosen[case] = found[0]
    kept = {f.name for f in chosen.values()}
    for name in names:
        if name not in kept:
            sim.world.delete_job(cluster_id, name)
    return chosen


def add_known_jobs(sim: Simulator) -> KnownJobs:
    cluster = sim.world.clusters()[0]
    succeeded = add_succeeded_runs(sim, cluster.id)
    for name in (FAILED_JOB, STARVED_FAILS, STARVED_SUCCEEDS):
        sim.world.add_job(cluster.id, name)
    earlier_success = run_job(sim, cluster.id, FAILED_JOB, "SUCCEEDED", SHORT_RUN)
    failed = run_job(sim, cluster.id, FAILED_JOB, "FAILED", SHORT_RUN)
    for name in (STARVED_FAILS, STARVED_SUCCEEDS):
        sim.world.start_run(cluster.id, name, outcome="SUCCEEDED", duration=LONG_RUN)
    running = start_writing_run(sim, cluster.id)
    sim.world.add_job(cluster.id, FREQUENT_JOB, scheduled=True, period=FREQUENT_PERIOD, fail_probability=0.5)
    return KnownJobs(cluster, running, FREQUENT_JOB, succeeded, earlier_success, failed)


def end_runs_unseen(monitored: Monitored) -> dict[str, RunView]:
    """End the runs of STARVED_FAILS (FAILED) and STARVED_SUCCEEDS (SUCCEEDED), once Prometheus shows
    both RUNNING, so that the exporter learns it from its job list, not from a status fetch: their
    status calls fail from just before the end until the exporter's list shows it (a fetch in between
    would show how they ended, whatever the exporter does after the list). Returns the ended runs."""
    prom, sim, cluster_id = monitored.prom, monitored.sim, monitored.jobs.cluster.id
    outcomes = {STARVED_FAILS: "FAILED", STARVED_SUCCEEDS: "SUCCEEDED"}
    for name in outcomes:
        prom.wait_for_query(f'cdm_job_status{{job_name="{name}", status="RUNNING"}} == 1')
    faults = [sim.add_fault(Fault(endpoint="job_status", job_name=name, status=503)) for name in outcomes]
    try:
        ended: dict[str, RunView] = {}
        for name, outcome in outcomes.items():
            sim.world.finish_run(cluster_id, name, outcome)
            run = sim.world.job(cluster_id, name).latest
            assert run is not None
            assert run.status == outcome
            ended[name] = run
        wait_until(
            lambda: True if list_shows(monitored, outcomes) else None,
            2 * JOB_LIST_INTERVAL + 10,
            lambda: "the exporter's job list to show the runs ended",
        )
    finally:
        for fault in faults:
            sim.remove_fault(fault)
    return ended


def list_shows(monitored: Monitored, statuses: Mapping[str, str]) -> bool:
    """Whether the exporter's last job list (not a status it fetched) gives these jobs these statuses."""
    listed = {
        job.name: job.summary.status
        for target in monitored.stack.service.exporter.snapshot().targets
        for cluster in target.clusters
        for job in cluster.jobs
    }
    return all(listed.get(name) == status for name, status in statuses.items())


@pytest.fixture(scope="module")
def monitored() -> Iterator[Monitored]:
    require_prometheus_tools()
    settings = SimulatorSettings(clusters=3, jobs=12, time_scale=TIME_SCALE)
    with Simulator(settings) as sim:
        make_clusters_normal(sim)
        jobs = add_known_jobs(sim)
        started = time.time()
        collection = CollectionConfig(job_list_interval=JOB_LIST_INTERVAL)
        # found by account-wide discovery, so that its series are exported too
        with live_stack(sim, RULE_FILES, collection=collection, discovery=True) as stack:
            stack.prometheus.wait_for_target_up(SCRAPE_JOB)
            yield Monitored(stack, jobs, started)


# --- helpers -----------------------------------------------------------------------------------------


def by_job(samples: list[Sample]) -> dict[tuple[str, str], list[Sample]]:
    grouped: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        grouped.setdefault((s.labels["cluster_id"], s.labels["job_name"]), []).append(s)
    return grouped


def job_series(prom: PrometheusServer, cluster_id: str, job_name: str) -> dict[str, Sample]:
    """Every cdm_job_* series of one job without extra labels (status, info, error), by name."""
    samples = prom.query(f'{{__name__=~"cdm_job_.+", cluster_id="{cluster_id}", job_name="{job_name}"}}')
    return {s.labels["__name__"]: s for s in samples if s.labels["__name__"] not in _LABELLED_JOB_SERIES}


_LABELLED_JOB_SERIES = frozenset({"cdm_job_status", "cdm_job_info", "cdm_job_error_info"})


def expected_status(job: JobView) -> str:
    """What cdm_job_status says once the exporter fetched the job: the latest run's status; for a job
    that never ran, NEVER_EXECUTED when ShowJobStatus says so, else the job list's NEW."""
    if job.latest is None:
        return "NEW" if job.never_status_empty else "NEVER_EXECUTED"
    return job.latest.status


def settled(job: JobView, now: float, since: float) -> bool:
    """Whether the job's status last changed long enough ago for the exporter to have caught up (it
    reads job lists every JOB_LIST_INTERVAL), or before the exporter started."""
    run = job.latest
    if run is None:
        return True
    # a run changes status when it starts, when its boot phase ends and when it ends
    last_change = run.end if run.end is not None else run.start + MAX_BOOT / TIME_SCALE
    return last_change < since or last_change < now - JOB_LIST_INTERVAL - 5.0


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return loaded


def template_variables() -> dict[str, tuple[str, str]]:
    """name -> (selector, label) of each label_values(selector, label) variable."""
    return {
        v["name"]: label_values_query(v["definition"])
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    }


def panel_queries() -> list[DashboardQuery]:
    """Panel and annotation queries (the variables' selectors are checked through label_values)."""
    return [q for q in dashboard_queries() if not q.where.startswith("variable_")]


def panel_query(title: str, ref: str = "A") -> DashboardQuery:
    """The query ``ref`` of the panel called ``title``."""
    (query,) = [q for q in panel_queries() if q.title == title and q.where.endswith(f"_{ref}")]
    return query


def run_query(prom: PrometheusServer, query: DashboardQuery, expr: str, now: float) -> int:
    """How many series the query returns the way Grafana asks it: instant queries now, range queries
    (time series, state timelines, annotations) over the last minute. Raises on a query error."""
    if query.instant:
        return len(prom.query(expr, at=now))
    return len(prom.query_range(expr, now - 60, now, 2))


#: The ``code`` of a call that got no complete answer. A call still unanswered at the scrape deadline
#: (0.5 s here) is cut and counted so; on a loaded machine that happens with no fault at all, so only
#: the series of HTTP answers say whether the API failed.
NO_ANSWER = "error"


def api_error_series(prom: PrometheusServer, selection: Mapping[str, str]) -> set[tuple[str, str]]:
    """(endpoint, code) of every series the API error panel shows for the last minute."""
    now = time.time()
    return {
        (s.labels.get("endpoint", ""), s.labels.get("code", ""))
        for q in panel_queries()
        if q.title in NEEDS_API_ERRORS
        for s in prom.query_range(resolve_variables(q.expr, selection), now - 60, now, 2)
    }


# --- issue 3: job status, progress and counters as PromQL sees them ----------------------------------


def test_job_status_agrees_with_the_simulator(monitored: Monitored) -> None:
    prom, sim = monitored.prom, monitored.sim
    clusters = [c.id for c in sim.world.clusters()]
    total = sum(len(sim.world.jobs(cid)) for cid in clusters)

    def compare() -> tuple[dict[str, int], list[str]]:
        current = by_job(prom.query("cdm_job_status == 1"))
        now = time.time()
        compared: dict[str, int] = {}
        problems: list[str] = []
        for cluster_id in clusters:
            for job in sim.world.jobs(cluster_id):
                samples = current.get((cluster_id, job.name), [])
                if len(samples) != 1:
                    problems.append(f"{job.name}: {len(samples)} statuses are 1: {samples}")
                    continue
                if not settled(job, now, monitored.started):
                    continue
                want, got = expected_status(job), samples[0].labels["status"]
                compared[want] = compared.get(want, 0) + 1
                if got != want:
                    problems.append(f"{job.name}: Prometheus says {got}, the simulator {want}")
        return compared, problems

    def agreed() -> dict[str, int] | None:
        compared, problems = compare()
        # enough jobs compared, and every kind of state among them, not only idle jobs
        enough = sum(compared.values()) >= total // 2 and {"RUNNING", "SUCCEEDED", "FAILED"} <= set(compared)
        return compared if enough and not problems else None

    wait_until(agreed, 30, lambda: f"statuses to agree with the simulator: {compare()}")
    # every documented status has a series for every job (1 for the current one, 0 for the others)
    for status in (
        "BOOTING",
        "FAILURE_ON_SUBMIT",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "UNKNOWN",
        "NEVER_EXECUTED",
    ):
        assert len(prom.query(f'cdm_job_status{{status="{status}"}}')) == total, status


def test_progress_of_a_running_job(monitored: Monitored) -> None:
    prom, sim, known = monitored.prom, monitored.sim, monitored.jobs
    selector = f'cluster_id="{known.cluster.id}", job_name="{known.running}"'
    prom.wait_for_query(f'cdm_job_status{{{selector}, status="RUNNING"}} == 1')

    def progressed() -> float | None:
        samples = prom.query(f"cdm_job_progress_ratio{{{selector}}}")
        return samples[0].value if samples and samples[0].value > 0 else None

    ratio = prom.wait_for(progressed, 30, lambda: f"progress of {known.running} above 0")
    run = sim.world.job(known.cluster.id, known.running).latest
    assert run is not None
    assert not run.finished
    assert 0 < ratio < 1
    # the simulator's progress now, less what it gained since the exporter last fetched the status
    assert run.progress / 100 - 0.05 <= ratio <= run.progress / 100 + 0.01, (ratio, run.progress)
    # every job Prometheus sees RUNNING has a progress within 0..1, and no progress is outside it
    running = prom.query(
        'cdm_job_progress_ratio and on (cluster_id, job_name) (cdm_job_status{status="RUNNING"} == 1)'
    )
    assert len(running) >= 2
    assert all(0 <= s.value <= 1 for s in running), running
    assert prom.query("cdm_job_progress_ratio < 0 or cdm_job_progress_ratio > 1") == []


@pytest.mark.parametrize("case", list(COUNTER_CASES))
def test_counters_of_a_succeeded_run(monitored: Monitored, case: str) -> None:
    prom, sim, known = monitored.prom, monitored.sim, monitored.jobs
    name = known.succeeded[case].name
    (run,) = sim.world.history(known.cluster.id, name).runs
    assert run == known.succeeded[case].run
    assert COUNTER_CASES[case](run)
    assert run.status == "SUCCEEDED"
    assert run.end is not None

    def complete() -> dict[str, Sample] | None:
        series = job_series(prom, known.cluster.id, name)
        return series if set(RUN_GAUGES) <= set(series) else None

    series = prom.wait_for(
        complete, 30, lambda: f"every counter of {name}: {job_series(prom, known.cluster.id, name)}"
    )
    got = {metric: series[metric].value for metric in RUN_GAUGES}
    want = {metric: float(getattr(run, field)) for metric, field in RUN_GAUGES.items()}
    # counts exactly, timestamps to the millisecond the API has
    assert got == pytest.approx(want, rel=0, abs=0.002)
    assert series["cdm_job_progress_ratio"].value == 1.0
    assert math.isclose(series["cdm_job_last_success_timestamp_seconds"].value, run.end, abs_tol=0.002)
    assert prom.query(f'cdm_job_status{{job_name="{name}", status="SUCCEEDED"}} == 1')
    assert prom.query(f'cdm_job_error_info{{job_name="{name}"}}') == []


def test_failed_run_error_summary_and_earlier_success(monitored: Monitored) -> None:
    prom, sim, known = monitored.prom, monitored.sim, monitored.jobs
    history = sim.world.history(known.cluster.id, FAILED_JOB)
    assert [r.status for r in history.runs] == ["FAILED", "SUCCEEDED"]
    failed, earlier = history.runs
    assert failed.error_summary
    selector = f'cluster_id="{known.cluster.id}", job_name="{FAILED_JOB}"'
    (status,) = prom.wait_for_query(f'cdm_job_status{{{selector}, status="FAILED"}} == 1')
    assert status.labels["cluster_name"] == known.cluster.name
    (error,) = prom.wait_for_query(f"cdm_job_error_info{{{selector}}}")
    assert error.labels["error_summary"] == failed.error_summary[:ERROR_SUMMARY_MAX]
    # the last success comes from the run history: the run before the failed one
    assert earlier.end is not None
    (last_success,) = prom.wait_for_query(f"cdm_job_last_success_timestamp_seconds{{{selector}}}")
    assert math.isclose(last_success.value, earlier.end, abs_tol=0.002), (last_success.value, earlier.end)
    # a failed run reports no progress (-1): no series rather than a fake value
    assert prom.query(f"cdm_job_progress_ratio{{{selector}}}") == []


def test_promtool_finds_nothing_in_the_real_exposition(monitored: Monitored) -> None:
    monitored.prom.wait_for_query(f'cdm_job_error_info{{job_name="{FAILED_JOB}"}}')
    text = monitored.stack.scrape()
    assert "cdm_job_error_info{" in text
    assert "cdm_job_progress_ratio{" in text
    passed, output = promtool_check_metrics(text)
    assert passed, output
    assert output == ""


# --- issue 5: the dashboard and the rules on real data ----------------------------------------------


def test_template_variables_list_the_simulated_project(monitored: Monitored) -> None:
    prom, sim, cluster = monitored.prom, monitored.sim, monitored.jobs.cluster
    variables = template_variables()
    assert set(variables) == {"project", "region", "cluster", "job"}
    every = dict.fromkeys(variables, ".*")
    values = {
        name: prom.label_values(label, resolve_variables(selector, every))
        for name, (selector, label) in variables.items()
    }
    assert values["project"] == [sim.settings.project_id]
    assert values["region"] == [sim.settings.region]
    assert values["cluster"] == sorted(c.name for c in sim.world.clusters())
    assert values["job"] == sorted({j.name for c in sim.world.clusters() for j in sim.world.jobs(c.id)})
    # a concrete selection narrows the job list to the jobs of the chosen cluster
    chosen = every | {"cluster": grafana_regex([cluster.name])}
    selector, label = variables["job"]
    assert prom.label_values(label, resolve_variables(selector, chosen)) == sorted(
        j.name for j in sim.world.jobs(cluster.id)
    )


def selections(monitored: Monitored) -> dict[str, dict[str, str]]:
    """Template variable values: All, and one cluster with four of its jobs (running, succeeded,
    failed, frequent), as Grafana formats a multi-value selection."""
    settings, cluster = monitored.sim.settings, monitored.jobs.cluster
    return {
        "All": {"project": ".*", "region": ".*", "cluster": ".*", "job": ".*"},
        "one cluster, four jobs": {
            "project": grafana_regex([settings.project_id]),
            "region": grafana_regex([settings.region]),
            "cluster": grafana_regex([cluster.name]),
            "job": grafana_regex(
                [
                    monitored.jobs.running,
                    monitored.jobs.succeeded["files"].name,
                    FAILED_JOB,
                    monitored.jobs.frequent,
                ]
            ),
        },
    }


def test_every_dashboard_query_returns_data(monitored: Monitored) -> None:
    prom = monitored.prom
    queries = dashboard_queries()  # panels, annotations and the template variables' selectors
    titles = {q.title for q in queries}
    assert titles >= NEEDS_API_ERRORS | NEEDS_FIRING_JOB_ALERT, "a panel these tests single out was renamed"
    healthy = [q for q in queries if q.title not in NEEDS_API_ERRORS | NEEDS_FIRING_JOB_ALERT]
    assert len(healthy) >= 30

    def empty() -> list[str]:
        now = time.time()
        return [
            f"{name}: {q.where} ({q.title}): {expr}"
            for name, selection in selections(monitored).items()
            for q in healthy
            if run_query(prom, q, expr := resolve_variables(q.expr, selection), now) == 0
        ]

    # rates need two scrapes and the recording rules an evaluation, and the run counters a run that
    # ended after the exporter's first read: the start spends most of a minute's budget at once, and
    # the rest is spread until that burst leaves the rolling minute. Poll until every query has data.
    wait_until(lambda: None if empty() else True, 90, lambda: "data for:\n" + "\n".join(empty()))

    # in a healthy project the API answers no errors: the error panel shows none until faults (at
    # most calls the scrape deadline cut, on a loaded machine)
    answered = {
        series for series in api_error_series(prom, selections(monitored)["All"]) if series[1] != NO_ANSWER
    }
    assert answered == set()


def test_api_errors_show_on_the_dashboard(monitored: Monitored) -> None:
    """Throttling (429 on ShowJobStatus) and a cluster whose job list fails (500) fill the API error
    panel and turn the health panels DOWN for that cluster."""
    prom, sim = monitored.prom, monitored.sim
    healthy, broken = sim.world.clusters()[:2]
    every = selections(monitored)["All"]
    injected = {("job_status", "429"), ("list_jobs", "500")}
    job_lists_stat = panel_query("Exporter health", "C")
    job_lists_timeline = panel_query("Cluster job lists reachable (cdm_cluster_up)")
    only_healthy = every | {"cluster": grafana_regex([healthy.name])}
    expected_lists = {c.name: 0.0 if c.id == broken.id else 1.0 for c in sim.world.clusters()}
    try:
        sim.add_fault(Fault(endpoint="job_status", status=429))
        sim.add_fault(Fault(endpoint="list_jobs", cluster_id=broken.id, status=500))

        def error_series() -> set[tuple[str, str]] | None:
            found = api_error_series(prom, every)
            return found if injected <= found else None

        found = prom.wait_for(error_series, 40, lambda: f"{injected} in the API error panel")
        # each answer under its own endpoint and code (calls cut at the deadline aside: NO_ANSWER)
        assert {series for series in found if series[1] != NO_ANSWER} == injected, found
        # the broken cluster's job list is DOWN: in the health stat with All selected, not with only
        # a healthy cluster selected, and in the job list timeline. A healthy cluster's list cut at the
        # deadline reads DOWN until its next list, so these are waited for, not read once.
        prom.wait_for_query(resolve_variables(job_lists_stat.expr, every) + " == 0")
        prom.wait_for_query(resolve_variables(job_lists_stat.expr, only_healthy) + " == 1")

        def job_lists() -> dict[str, float]:
            return {s.labels["cluster_name"]: s.value for s in prom.query(job_lists_timeline.substituted())}

        prom.wait_for(
            lambda: True if job_lists() == expected_lists else None,
            30,
            lambda: f"job lists {expected_lists}, not {job_lists()}",
        )
    finally:
        sim.clear_faults()


def test_every_scrape_succeeds_within_the_timeout(monitored: Monitored) -> None:
    """Over everything so far (faults included) Prometheus failed no scrape for anything the exporter
    did: no error answer, no exposition it refused. A scrape may time out on a loaded machine (the
    answer due 0.5 s before the 1 s timeout comes after it: test_faults and test_server pin the
    deadline itself), but not most of them."""
    prom = monitored.prom
    seconds = math.ceil(time.time() - monitored.started) + 5
    (up,) = prom.raw_samples(f'up{{job="{SCRAPE_JOB}"}}', seconds)
    (took,) = prom.raw_samples(f'scrape_duration_seconds{{job="{SCRAPE_JOB}"}}', seconds)
    assert len(up.points) >= 10
    durations = dict(took.points)  # both series have a point per scrape, at the scrape's time
    failed = {at: durations.get(at) for at, value in up.points if value == 0}
    timeout = prom.scrape_interval  # the harness' scrape timeout
    not_timed_out = {at: d for at, d in failed.items() if d is None or d < 0.9 * timeout}
    assert not_timed_out == {}, "scrapes that failed before the timeout (seconds taken, by time)"
    assert len(failed) <= len(up.points) / 2, f"{len(failed)} of {len(up.points)} scrapes timed out"


def rule_documents() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in RULE_FILES]


def test_every_metric_used_is_exported(monitored: Monitored) -> None:
    """Every series name the dashboard and the rules use is in the exporter's real output, apart from
    recording rule outputs, series Prometheus writes and the documented optional override."""
    rules = [rule for doc in rule_documents() for group in doc["groups"] for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    used: dict[str, str] = {}
    for q in dashboard_queries():
        for sel in selectors(q.expr):
            used.setdefault(sel.name, f"dashboard {q.where}")
    for rule in rules:
        where = rule.get("alert") or rule["record"]
        for sel in selectors(rule["expr"]):
            used.setdefault(sel.name, where)
        # annotation templates can query series too (CdmJobFailed reads the error summary)
        for text in rule.get("annotations", {}).values():
            for name in re.findall(r"\b(cdm_[a-z_]+)\{", text):
                used.setdefault(name, f"{where} annotation")
    assert "cdm_job_error_info" in used
    monitored.prom.wait_for_query(f'cdm_job_error_info{{job_name="{FAILED_JOB}"}}')
    exported = sample_names(monitored.stack.scrape())
    missing = {
        name: where
        for name, where in used.items()
        if name not in exported and name not in recorded | PROMETHEUS_SERIES | USER_SERIES
    }
    assert missing == {}, f"used but not exported: {missing}"
    for name in sorted({"up", "scrape_duration_seconds"} & set(used)):
        assert monitored.prom.query(f'{name}{{job="{SCRAPE_JOB}"}}'), name


def test_rules_evaluate_without_errors(monitored: Monitored) -> None:
    groups = monitored.prom.wait_for_rules_evaluated()
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert broken == []
    names = {r["name"] for g in groups for r in g["rules"]}
    want = {r.get("alert") or r["record"] for d in rule_documents() for g in d["groups"] for r in g["rules"]}
    assert names == want


# --- alerts fire in a real Prometheus -----------------------------------------------------------------


@dataclass(frozen=True)
class Alerting:
    stack: LiveStack
    cluster: ClusterView

    @property
    def prom(self) -> PrometheusServer:
        return self.stack.prometheus


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerting]:
    """A project whose only job is ALERTING_JOB (so the exporter's status budget is never short),
    alert rules with for: 0s, clusters re-listed every 2 s (so a broken cluster list shows at once),
    and a second scrape job whose target does not listen."""
    require_prometheus_tools()
    rules = (RULES_DIR / "recording.yml", fast_alert_rules(tmp_path_factory.mktemp("rules")))
    with Simulator(SimulatorSettings(clusters=2, jobs=0, time_scale=TIME_SCALE)) as sim:
        cluster = sim.world.clusters()[0]
        sim.world.add_job(cluster.id, ALERTING_JOB)
        sim.world.start_run(cluster.id, ALERTING_JOB, outcome="SUCCEEDED", duration=LONG_RUN)
        collection = CollectionConfig(job_list_interval=3.0, discovery_interval=2.0)
        gone = ScrapeJob(GONE_SCRAPE_JOB, [f"127.0.0.1:{free_port()}"])
        with live_stack(sim, rules, collection=collection, extra_scrape_jobs=[gone]) as stack:
            stack.prometheus.wait_for_target_up(SCRAPE_JOB)
            yield Alerting(stack, sim.world.cluster(cluster.id))


# --- collection.status_series: current --------------------------------------------------------------

#: job -> (its cluster, outcome of its run, the status code cluster_job:cdm_job_status:code reads);
#: the second cluster has no running or failed job
CURRENT_JOBS: Mapping[str, tuple[int, str, int]] = {
    "current_failed": (0, "FAILED", 5),
    "current_running": (0, "RUNNING", 3),
    "current_succeeded": (1, "SUCCEEDED", 4),
}


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Three jobs in known states (a failed and a succeeded run, a long run) on two clusters, rules
    with for: 0s, and an exporter exporting only the current status's series."""
    require_prometheus_tools()
    rules = (RULES_DIR / "recording.yml", fast_alert_rules(tmp_path_factory.mktemp("rules")))
    with Simulator(SimulatorSettings(clusters=2, jobs=0, time_scale=TIME_SCALE)) as sim:
        make_clusters_normal(sim)
        clusters = sim.world.clusters()
        for name, (index, outcome, _) in CURRENT_JOBS.items():
            cluster_id = clusters[index].id
            sim.world.add_job(cluster_id, name)
            if outcome == "RUNNING":
                sim.world.start_run(cluster_id, name, outcome="SUCCEEDED", duration=LONG_RUN)
            else:
                run_job(sim, cluster_id, name, outcome, SHORT_RUN)
        collection = CollectionConfig(job_list_interval=3.0, status_series="current")
        with live_stack(sim, rules, collection=collection) as stack:
            stack.prometheus.wait_for_target_up(SCRAPE_JOB)
            yield stack


def test_with_only_the_current_status_exported_the_dashboard_and_rules_work(current: LiveStack) -> None:
    prom = current.prometheus
    # the exposition: one cdm_job_status series per job, its current status, 1
    statuses = [
        (sample.labels["job_name"], sample.labels["status"], sample.value)
        for family in text_string_to_metric_families(current.scrape())
        if family.name == "cdm_job_status"
        for sample in family.samples
    ]
    assert sorted(job for job, _, _ in statuses) == sorted(CURRENT_JOBS)
    assert all(value == 1.0 for _, _, value in statuses)

    # the status code rule, which CdmJobStuck and the status timeline use
    def codes() -> dict[str, float] | None:
        found = {s.labels["job_name"]: s.value for s in prom.query("cluster_job:cdm_job_status:code")}
        return found if found == {name: code for name, (_, _, code) in CURRENT_JOBS.items()} else None

    prom.wait_for(codes, 30, lambda: f"status codes: {prom.query('cluster_job:cdm_job_status:code')}")

    # every dashboard query has data (but the API error panel, empty while nothing fails; the
    # throughput panels, which need a run whose job list entries carry row counters; the failure
    # ratios, which need runs that end while the exporter watches; and the projects panel, which
    # needs a projects target: the monitored stack has each, and none reads cdm_job_status)
    elsewhere = {
        "Rows written per second",
        "Bytes written per second",
        "Failure ratio per job",
        "Failure ratio per cluster",
        "Projects",
    }
    queries = [q for q in dashboard_queries() if q.title not in NEEDS_API_ERRORS | elsewhere]
    every = {"project": ".*", "region": ".*", "cluster": ".*", "job": ".*"}

    def empty() -> list[str]:
        now = time.time()
        return [
            f"{q.where} ({q.title}): {expr}"
            for q in queries
            if run_query(prom, q, expr := resolve_variables(q.expr, every), now) == 0
        ]

    wait_until(lambda: None if empty() else True, 30, lambda: "data for:\n" + "\n".join(empty()))
    # the clusters table counts running and failed jobs as 0 in the cluster that has none, although
    # no series says RUNNING or FAILED there
    quiet = current.sim.world.clusters()[1].name
    for ref in ("E", "F"):
        rows = {
            s.labels["cluster_name"]: s.value
            for s in prom.query(resolve_variables(panel_query("Clusters", ref).expr, every))
        }
        assert len(rows) == 2 and rows[quiet] == 0, (ref, rows)

    # and the failed run fires CdmJobFailed, the running job nothing
    prom.wait_for(
        lambda: firing(prom, "CdmJobFailed", job_name="current_failed") or None,
        30,
        lambda: f"CdmJobFailed for current_failed: {prom.alerts()}",
    )
    assert {a.labels["job_name"] for a in firing(prom, "CdmJobFailed")} == {"current_failed"}


def test_fast_alert_rules_copy(tmp_path: Path) -> None:
    original = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    copy = yaml.safe_load(fast_alert_rules(tmp_path).read_text())
    alerts = [r for g in original["groups"] for r in g["rules"]]
    fast = [r for g in copy["groups"] for r in g["rules"]]
    assert [r["alert"] for r in fast] == [r["alert"] for r in alerts]
    assert all(r.get("for") not in (None, "0s") for r in alerts), "every alert waits before firing"
    assert all(r["for"] == "0s" for r in fast)
    assert [{**r, "for": None} for r in fast] == [{**r, "for": None} for r in alerts]


def firing(prom: PrometheusServer, name: str, **labels: str) -> list[Alert]:
    return [
        a
        for a in prom.alerts()
        if a.name == name and a.state == "firing" and all(a.labels.get(k) == v for k, v in labels.items())
    ]


def wait_until_resolved(prom: PrometheusServer, name: str, **labels: str) -> None:
    """Poll until no alert ``name`` with these labels is pending or firing."""

    def resolved() -> bool | None:
        return (
            None
            if any(a.name == name and labels.items() <= a.labels.items() for a in prom.alerts())
            else True
        )

    prom.wait_for(resolved, 30, lambda: f"{name} {labels} to resolve: {prom.alerts()}")


def test_failed_job_fires_cdm_job_failed(alerting: Alerting) -> None:
    prom, sim, cluster = alerting.prom, alerting.stack.sim, alerting.cluster
    job = {"cluster_id": cluster.id, "cluster_name": cluster.name, "job_name": ALERTING_JOB}
    prom.wait_for_query(f'cdm_job_status{{job_name="{ALERTING_JOB}", status="RUNNING"}} == 1')
    assert firing(prom, "CdmJobFailed") == []
    sim.world.finish_run(cluster.id, ALERTING_JOB, "FAILED")
    run = sim.world.job(cluster.id, ALERTING_JOB).latest
    assert run is not None
    assert run.status == "FAILED"
    assert run.error_summary
    summary = run.error_summary[:ERROR_SUMMARY_MAX]

    def with_summary() -> Alert | None:
        found = firing(prom, "CdmJobFailed", **job)
        return found[0] if found and summary in found[0].annotations.get("description", "") else None

    alert = prom.wait_for(with_summary, 30, lambda: f"CdmJobFailed with the error summary: {prom.alerts()}")
    assert alert.labels["status"] == "FAILED"
    assert alert.labels["severity"] == "critical"
    assert alert.labels["instance"] == alerting.stack.address
    assert ALERTING_JOB in alert.annotations["summary"]
    assert cluster.name in alert.annotations["summary"]
    assert alert.annotations["runbook_url"].endswith("#cdmjobfailed")

    # the dashboard shows it: the "Firing CDM alerts" stat and the job alert annotation
    (count,) = prom.query(panel_query("Firing CDM alerts").substituted())
    assert count.value >= 1
    annotations = [q for q in panel_queries() if q.title in NEEDS_FIRING_JOB_ALERT]
    assert annotations
    every = {"project": ".*", "region": ".*", "cluster": ".*", "job": ".*"}
    chosen = every | {"cluster": grafana_regex([cluster.name]), "job": grafana_regex([ALERTING_JOB])}
    for values in every, chosen:
        for q in annotations:
            now = time.time()
            series = prom.query_range(resolve_variables(q.expr, values), now - 60, now, 2)
            assert [s.labels["job_name"] for s in series] == [ALERTING_JOB], q.expr


def test_throttling_fires_cdm_exporter_throttled(alerting: Alerting) -> None:
    prom, sim = alerting.prom, alerting.stack.sim
    assert firing(prom, "CdmExporterThrottled") == []
    fault = sim.add_fault(Fault(endpoint="job_status", status=429))
    try:
        (alert,) = prom.wait_for(
            lambda: firing(prom, "CdmExporterThrottled") or None,
            40,
            lambda: f"CdmExporterThrottled: {prom.alerts()}",
        )
    finally:
        sim.remove_fault(fault)
    assert alert.labels["endpoint"] == "job_status"
    assert alert.labels["instance"] == alerting.stack.address
    assert alert.labels["job"] == SCRAPE_JOB
    assert "job_status" in alert.annotations["description"]


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault(endpoint="*", status=401), id="credentials-rejected"),
        pytest.param(Fault(endpoint="list_clusters", status=503), id="cluster-list-fails"),
    ],
)
def test_broken_api_fires_cdm_exporter_api_down(alerting: Alerting, fault: Fault) -> None:
    prom, sim = alerting.prom, alerting.stack.sim
    settings = sim.settings
    project = {"project_id": settings.project_id, "region": settings.region}
    # not firing before the fault (a cluster list cut at the deadline on a loaded machine fires it
    # for a moment, with for: 0s)
    prom.wait_for_query("cdm_up == 1")
    wait_until_resolved(prom, "CdmExporterApiDown", **project)
    fault_id = sim.add_fault(fault)
    try:
        (alert,) = prom.wait_for(
            lambda: firing(prom, "CdmExporterApiDown", **project) or None,
            30,
            lambda: f"CdmExporterApiDown: {prom.alerts()}",
        )
    finally:
        sim.remove_fault(fault_id)
    assert alert.labels["severity"] == "critical"
    assert settings.project_id in alert.annotations["summary"]
    # the API works again: cdm_up returns to 1 and the alert resolves
    prom.wait_for_query("cdm_up == 1")
    wait_until_resolved(prom, "CdmExporterApiDown", **project)


def test_stopped_cluster_fires_cluster_alerts(alerting: Alerting) -> None:
    """A cluster that stops: CdmClusterNotNormal (its status) and CdmClusterUnreachable (its job list
    fails), the "Clusters not normal" stat counts it; all of it ends when it runs again."""
    prom, sim = alerting.prom, alerting.stack.sim
    other = next(c for c in sim.world.clusters() if c.id != alerting.cluster.id)
    cluster = {"cluster_id": other.id, "cluster_name": other.name}
    prom.wait_for_query(f'cdm_cluster_up{{cluster_id="{other.id}"}} == 1')
    stat = panel_query("Clusters not normal")
    assert prom.query(stat.substituted())[0].value == 0
    sim.world.set_cluster_status(other.id, "900")
    try:
        (not_normal,) = prom.wait_for(
            lambda: firing(prom, "CdmClusterNotNormal", **cluster) or None,
            30,
            lambda: f"CdmClusterNotNormal: {prom.alerts()}",
        )
        assert not_normal.labels["status"] == "stopped"
        assert "stopped" in not_normal.annotations["summary"]
        prom.wait_for(
            lambda: firing(prom, "CdmClusterUnreachable", **cluster) or None,
            30,
            lambda: f"CdmClusterUnreachable: {prom.alerts()}",
        )
        assert prom.query(stat.substituted())[0].value == 1
        assert prom.query(stat.substituted(grafana_regex([alerting.cluster.name])))[0].value == 0
    finally:
        sim.world.set_cluster_status(other.id, "200")
    wait_until_resolved(prom, "CdmClusterNotNormal", **cluster)
    wait_until_resolved(prom, "CdmClusterUnreachable", **cluster)


def test_unreachable_exporter_fires_cdm_exporter_down(alerting: Alerting) -> None:
    """The scrape job whose target never answers fires CdmExporterDown. (With for: 0s, a scrape of
    the live exporter that timed out on a loaded machine fires one too, for a moment.)"""
    prom = alerting.prom
    gone = {"job": GONE_SCRAPE_JOB}
    (alert,) = prom.wait_for(
        lambda: firing(prom, "CdmExporterDown", **gone) or None,
        30,
        lambda: f"CdmExporterDown: {prom.alerts()}",
    )
    assert alert.labels["severity"] == "critical"
    # the dashboard's health stat is DOWN for the scrape as a whole
    health = panel_query("Exporter health", "A")
    assert prom.query(health.substituted())[0].value == 0


def test_a_scheduled_job_that_never_succeeds_fires_the_run_history_alerts(alerting: Alerting) -> None:
    """Added after the other alerting tests, which expect ALERTING_JOB to be the only job: a scheduled
    job whose runs all fail fires CdmJobNeverSucceeded once the exporter has read its run history, and
    CdmJobFailureRatioHigh once three runs have failed; ALERTING_JOB, not scheduled, fires neither."""
    prom, sim, cluster = alerting.prom, alerting.stack.sim, alerting.cluster
    name = "never succeeds"
    # every run fails (FAILED or FAILURE_ON_SUBMIT: the simulator leaves no chance of success)
    sim.world.add_job(cluster.id, name, scheduled=True, period=20.0, fail_probability=0.98)
    job = {"cluster_id": cluster.id, "cluster_name": cluster.name, "job_name": name}
    (never,) = prom.wait_for(
        lambda: firing(prom, "CdmJobNeverSucceeded", **job) or None,
        40,
        lambda: f"CdmJobNeverSucceeded: {prom.alerts()}",
    )
    assert never.labels["severity"] == "warning"
    assert prom.query(f'cdm_job_history_timestamp_seconds{{job_name="{name}"}}')
    assert prom.query(f'cdm_job_last_success_timestamp_seconds{{job_name="{name}"}}') == []
    (ratio,) = prom.wait_for(
        lambda: firing(prom, "CdmJobFailureRatioHigh", **job) or None,
        40,
        lambda: f"CdmJobFailureRatioHigh: {prom.alerts()}",
    )
    assert ratio.annotations["description"].startswith("100% of the runs")
    (failed,) = prom.query(f'cdm_job_run_failures_total{{job_name="{name}"}}')
    (runs,) = prom.query(f'cdm_job_runs_total{{job_name="{name}"}}')
    assert failed.value == runs.value >= 3
    assert firing(prom, "CdmJobNeverSucceeded", job_name=ALERTING_JOB) == []
    assert firing(prom, "CdmJobFailureRatioHigh", job_name=ALERTING_JOB) == []


# --- last: needs the STARVED_* runs to have ended a while ago ----------------------------------------


def test_runs_that_end_while_others_run_are_fetched(monitored: Monitored) -> None:
    """Runs that end while many other jobs run: their error summary and last success must show.

    The exporter re-fetches every BOOTING/RUNNING job at every collection before any job whose job
    list entry changed. With 1 s scrapes and 100 status calls a minute, the ~10 running jobs of this
    project take every call. When a run ends, the next job list makes the status fetched while it ran
    stale (cdm_job_error_info, cdm_job_progress_ratio, cdm_job_submission_id and the run's own counters
    go away), and the job, no longer running, waits behind the running ones for ever. The error summary
    never shows (CdmJobFailed says "none reported"), nor the last success. (A fetch between the run's
    end and the next job list would show both: end_runs_unseen rules that out.)
    """
    prom = monitored.prom
    ended = end_runs_unseen(monitored)
    listed_at = time.time()  # the exporter's job list shows the runs ended, and no fetch did
    failed, succeeded = ended[STARVED_FAILS], ended[STARVED_SUCCEEDS]
    assert failed.error_summary
    assert succeeded.end is not None
    summary, end = failed.error_summary[:ERROR_SUMMARY_MAX], succeeded.end

    def missing() -> list[str]:
        problems = []
        error = prom.query(f'cdm_job_error_info{{job_name="{STARVED_FAILS}"}}')
        if [e.labels["error_summary"] for e in error] != [summary]:
            problems.append(f"{STARVED_FAILS}: cdm_job_error_info is {error}, not the run's error summary")
        success = prom.query(f'cdm_job_last_success_timestamp_seconds{{job_name="{STARVED_SUCCEEDS}"}}')
        if not (len(success) == 1 and math.isclose(success[0].value, end, abs_tol=0.002)):
            problems.append(
                f"{STARVED_SUCCEEDS}: cdm_job_last_success_timestamp_seconds is {success}, not {end:.3f}"
            )
        return problems

    def fetched() -> bool | None:
        scraped = prom.query(f'timestamp(up{{job="{SCRAPE_JOB}"}})')
        return True if scraped and scraped[0].value > listed_at and not missing() else None

    # the job list shows how they ended: this part works, and is no reason for the expected failure
    prom.wait_for_query(f'cdm_job_status{{job_name="{STARVED_FAILS}", status="FAILED"}} == 1')
    prom.wait_for_query(f'cdm_job_status{{job_name="{STARVED_SUCCEEDS}", status="SUCCEEDED"}} == 1')
    # from the list on, a scrape must show the error summary and last success: the reserve fetches one
    # a collection, and 30 s are ~50 status calls of budget, plenty to fetch two jobs even on a loaded
    # machine, where many calls are cut at the 0.5 s deadline (without the reserve, the running jobs
    # take every call however long one waits)
    try:
        wait_until(fetched, 30, lambda: "; ".join(missing()))
    except StackError as error:
        running = prom.query('count(cdm_job_status{status=~"BOOTING|RUNNING|PENDING"} == 1)')
        raise StarvedJob(
            f"{time.time() - listed_at:.0f} s after the job list showed the runs ended, with "
            f"{running[0].value if running else 0:g} jobs running: " + "; ".join(missing())
        ) from error
