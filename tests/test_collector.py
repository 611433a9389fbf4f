"""The collector maps known state to the metric contract (README.md, "Metrics"); no I/O."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cdm_exporter import __version__
from cdm_exporter.api.models import JOB_STATUSES, Cluster, JobSummary, Submission, latest, parse_submissions
from cdm_exporter.config import StatusSeries
from cdm_exporter.metrics.collector import MAX_LABEL_VALUE, CdmCollector, label_value
from cdm_exporter.polling.run_counts import RunTally
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, DiscoveryView, JobState, TargetView
from cdm_exporter.polling.telemetry import ApiTelemetry, TelemetrySnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "collector"
CLUSTER = Cluster(id="c-1", name="cdm-one", status="200", version="2.10.0")
IDS = {"cluster_id": "c-1", "cluster_name": "cdm-one"}


def job_from_fixture(name: str, summary: JobSummary | None = None, **extra: object) -> JobState:
    runs = parse_submissions(json.loads((FIXTURES / name).read_text()))
    run = latest(runs)
    assert run is not None
    summary = summary or JobSummary(name=run.job_name, job_type="NORMAL_JOB")
    return JobState(cluster_id="c-1", summary=summary, latest=run, fetched_key=summary.change_key, **extra)  # type: ignore[arg-type]


def registry_for(
    *jobs: JobState,
    up: bool | None = True,
    cluster: Cluster = CLUSTER,
    telemetry: TelemetrySnapshot | None = None,
    status_series: StatusSeries = "all",
) -> CollectorRegistry:
    target = TargetView(
        name="t",
        project_id="p" * 32,
        region="cn-north-4",
        up=up,
        clusters=(ClusterView(cluster, True, tuple(jobs), None),),
        error=None,
        budget_remaining={"job_status": 12.7, "common": 3.0},
    )
    snapshot = Snapshot((target,), telemetry or TelemetrySnapshot({}, {}), 0.25, status_series=status_series)
    registry = CollectorRegistry()
    registry.register(CdmCollector(lambda: snapshot))
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_seed_example_is_booting_at_one_percent() -> None:
    reg = registry_for(job_from_fixture("seed_booting.json"))
    job = {**IDS, "job_name": "jdbc2hive"}
    assert value(reg, "cdm_job_status", **job, status="BOOTING") == 1
    for other in JOB_STATUSES:
        if other != "BOOTING":
            assert value(reg, "cdm_job_status", **job, status=other) == 0
    assert value(reg, "cdm_job_progress_ratio", **job) == pytest.approx(0.01)
    assert value(reg, "cdm_job_creation_timestamp_seconds", **job) == pytest.approx(1536905778.725)
    # fields the API did not send are absent, never a fake 0
    assert value(reg, "cdm_job_read_rows", **job) is None
    assert value(reg, "cdm_job_submission_id", **job) is None
    assert value(reg, "cdm_job_error_info", **job, error_summary="") is None


def test_succeeded_run_exports_every_counter_and_last_success() -> None:
    reg = registry_for(
        job_from_fixture("succeeded_typo_user.json", last_success=1536916580.005, refreshed_at=1700000000.0)
    )
    job = {**IDS, "job_name": "jdbc2hive"}
    expected = {
        "cdm_job_read_rows": 1000,
        "cdm_job_written_rows": 990,
        "cdm_job_skipped_rows": 10,
        "cdm_job_read_bytes": 2048,
        "cdm_job_written_bytes": 4096,
        "cdm_job_total_size_bytes": 8192,
        "cdm_job_read_files": 3,
        "cdm_job_written_files": 2,
        "cdm_job_skipped_files": 1,
        "cdm_job_total_files": 3,
        "cdm_job_write_rows": 1000,
        "cdm_job_update_rows": 5,
        "cdm_job_delete_rows": 0,
        "cdm_job_submission_id": 7,
        "cdm_job_progress_ratio": 1.0,
        "cdm_job_execute_timestamp_seconds": 1536906583.0,
        "cdm_job_last_update_timestamp_seconds": 1536916580.005,
        "cdm_job_last_success_timestamp_seconds": 1536916580.005,
        "cdm_job_refresh_timestamp_seconds": 1700000000.0,
    }
    for name, want in expected.items():
        assert value(reg, name, **job) == pytest.approx(want), name
    assert value(reg, "cdm_job_status", **job, status="SUCCEEDED") == 1


def test_typo_user_key_reaches_info_and_fixed_spelling_wins() -> None:
    typo = registry_for(job_from_fixture("succeeded_typo_user.json"))
    sample = next(s for m in typo.collect() if m.name == "cdm_job_info" for s in m.samples)
    assert sample.labels["last_update_user"] == "cdm-typo"
    assert sample.labels["execute_auto"] == "false"
    assert sample.labels["stopping_increment"] == ""
    fixed = registry_for(job_from_fixture("failed_fixed_user.json"))
    sample = next(s for m in fixed.collect() if m.name == "cdm_job_info" for s in m.samples)
    assert sample.labels["last_update_user"] == "fixed-user"
    assert sample.labels["creation_user"] == "ops"
    assert sample.labels["execute_auto"] == "true"
    assert sample.labels["delete_after_run"] == "false"
    assert sample.labels["job_type"] == "NORMAL_JOB"


def test_failed_run_has_error_info_and_no_progress() -> None:
    reg = registry_for(job_from_fixture("failed_fixed_user.json"))
    job = {**IDS, "job_name": "mysql2obs"}
    assert value(reg, "cdm_job_status", **job, status="FAILED") == 1
    assert value(reg, "cdm_job_progress_ratio", **job) is None  # progress -1
    summary = 'Cdm.0901 connecting to "db" failed\nwith a newline'
    assert value(reg, "cdm_job_error_info", **job, error_summary=summary) == 1
    assert value(reg, "cdm_job_submission_id", **job) == 42  # a numeric string
    assert value(reg, "cdm_job_last_update_timestamp_seconds", **job) == 1700000360.0


def test_error_summary_is_cut_to_256_characters() -> None:
    job = job_from_fixture("failed_fixed_user.json")
    assert job.latest is not None
    from dataclasses import replace

    long = replace(job, latest=replace(job.latest, error_summary="x" * 1000))
    reg = registry_for(long)
    samples = [s for m in reg.collect() if m.name == "cdm_job_error_info" for s in m.samples]
    assert [len(s.labels["error_summary"]) for s in samples] == [256]


def test_undocumented_status_is_its_own_label_value_and_float_progress() -> None:
    reg = registry_for(job_from_fixture("pending_float_progress.json"))
    job = {**IDS, "job_name": "obs2obs-03"}
    assert value(reg, "cdm_job_status", **job, status="PENDING") == 1
    assert sum(value(reg, "cdm_job_status", **job, status=s) or 0 for s in JOB_STATUSES) == 0
    assert value(reg, "cdm_job_progress_ratio", **job) == pytest.approx(0.375)


def status_series_of(reg: CollectorRegistry, job_name: str) -> dict[str, float]:
    return {
        sample.labels["status"]: sample.value
        for family in reg.collect()
        if family.name == "cdm_job_status"
        for sample in family.samples
        if sample.labels["job_name"] == job_name
    }


def test_current_status_series_have_only_the_current_status() -> None:
    jobs = (
        job_from_fixture("seed_booting.json"),
        job_from_fixture("pending_float_progress.json"),
        JobState(cluster_id="c-1", summary=JobSummary(name="no-status-yet")),
    )
    current = registry_for(*jobs, status_series="current")
    job = {**IDS, "job_name": "jdbc2hive"}
    assert value(current, "cdm_job_status", **job, status="BOOTING") == 1
    assert status_series_of(current, "jdbc2hive") == {"BOOTING": 1.0}  # no series of the others
    assert status_series_of(current, "obs2obs-03") == {"PENDING": 1.0}  # undocumented: as with all
    assert status_series_of(current, "no-status-yet") == {}
    # the contract's default is every documented status, 1 or 0
    every = registry_for(*jobs)
    assert status_series_of(every, "jdbc2hive") == {s: float(s == "BOOTING") for s in JOB_STATUSES}
    assert status_series_of(every, "no-status-yet") == dict.fromkeys(JOB_STATUSES, 0.0)
    # and the other families do not change
    others = [f.name for f in every.collect() if f.name != "cdm_job_status"]
    assert others == [f.name for f in current.collect() if f.name != "cdm_job_status"]
    for name in ("cdm_job_progress_ratio", "cdm_job_creation_timestamp_seconds"):
        assert value(current, name, **job) == value(every, name, **job)


def test_job_known_only_from_the_list_gets_status_and_list_counters() -> None:
    summary = JobSummary(name="listed", job_type="BATCH_JOB", status="RUNNING", rows_read=5, bytes_written=9)
    reg = registry_for(JobState(cluster_id="c-1", summary=summary))
    job = {**IDS, "job_name": "listed"}
    assert value(reg, "cdm_job_status", **job, status="RUNNING") == 1
    assert value(reg, "cdm_job_read_rows", **job) == 5
    assert value(reg, "cdm_job_written_bytes", **job) == 9
    assert value(reg, "cdm_job_refresh_timestamp_seconds", **job) is None  # never fetched


def test_newer_list_entry_wins_over_stale_fetched_run() -> None:
    fetched = job_from_fixture("seed_booting.json")
    newer = JobSummary(name="jdbc2hive", status="FAILED", execute_update_date=1.0)
    reg = registry_for(
        JobState(cluster_id="c-1", summary=newer, latest=fetched.latest, fetched_key=fetched.fetched_key)
    )
    job = {**IDS, "job_name": "jdbc2hive"}
    assert value(reg, "cdm_job_status", **job, status="FAILED") == 1
    assert value(reg, "cdm_job_status", **job, status="BOOTING") == 0
    assert value(reg, "cdm_job_progress_ratio", **job) is None  # the run it belonged to is stale


@pytest.mark.parametrize(
    ("code", "label"), [("200", "normal"), ("900", "stopped"), ("303", "create_failed"), ("777", "777")]
)
def test_cluster_status_and_info(code: str, label: str) -> None:
    reg = registry_for(cluster=Cluster(id="c-1", name="cdm-one", status=code, version="2.9"))
    assert value(reg, "cdm_cluster_status", **IDS, status=label) == 1
    assert value(reg, "cdm_cluster_status", **IDS, status="frozen") == (1 if label == "frozen" else 0)
    assert value(reg, "cdm_cluster_info", **IDS, project_id="p" * 32, region="cn-north-4", version="2.9") == 1
    assert value(reg, "cdm_cluster_up", **IDS) == 1


def test_target_health_budget_and_self_metrics() -> None:
    telemetry = ApiTelemetry()
    telemetry.observe("job_status", "200", 0.03)
    telemetry.observe("job_status", "429", 0.2)
    telemetry.observe("iam_token", "error", 3.0)
    reg = registry_for(up=False, telemetry=telemetry.snapshot())
    assert value(reg, "cdm_up", project_id="p" * 32, region="cn-north-4") == 0
    assert (
        value(reg, "cdm_api_budget_remaining", project_id="p" * 32, region="cn-north-4", policy="job_status")
        == 12
    )
    assert value(reg, "cdm_api_requests_total", endpoint="job_status", code="429") == 1
    assert value(reg, "cdm_api_requests_total", endpoint="iam_token", code="error") == 1
    assert value(reg, "cdm_api_request_duration_seconds_bucket", endpoint="job_status", le="0.05") == 1
    assert value(reg, "cdm_api_request_duration_seconds_count", endpoint="job_status") == 2
    assert value(reg, "cdm_api_request_duration_seconds_sum", endpoint="job_status") == pytest.approx(0.23)
    assert value(reg, "cdm_scrape_duration_seconds") == 0.25
    build = [s for m in reg.collect() if m.name == "cdm_exporter_build_info" for s in m.samples]
    assert [(s.labels, s.value) for s in build] == [({"version": __version__}, 1.0)]


def test_registering_makes_no_call_and_hostile_names_render() -> None:
    calls: list[int] = []

    def source() -> Snapshot:
        calls.append(1)
        raise AssertionError("collect must not run at registration")

    CollectorRegistry().register(CdmCollector(source))
    assert calls == []
    name = 'quote" back\\slash\nnewline/../%2F 数据 🚀'
    reg = registry_for(JobState(cluster_id="c-1", summary=JobSummary(name=name, status="NEW")))
    assert value(reg, "cdm_job_status", **IDS, job_name=name, status="NEW") == 1
    text = generate_latest(reg).decode()
    assert 'job_name="quote\\" back\\\\slash\\nnewline/../%2F 数据 🚀"' in text


@pytest.mark.parametrize(("list_started", "expected"), [(1000.0, 77.0), (500.0, None)])
def test_list_counters_count_only_for_the_same_run(list_started: float, expected: float | None) -> None:
    run = Submission(job_name="j", status="RUNNING", progress=50.0, submission_id=2, execute_date=1000.0)
    summary = JobSummary(name="j", status="RUNNING", execute_start_date=list_started, rows_read=77)
    job = JobState(cluster_id="c-1", summary=summary, latest=run, fetched_key=summary.change_key)
    reg = registry_for(job)
    assert value(reg, "cdm_job_read_rows", **IDS, job_name="j") == expected


def test_label_values_from_the_api_are_cut_to_a_bound_and_stay_distinct() -> None:
    long_cluster = Cluster(
        id="c-" + "i" * 70_000, name="n" * 70_000, status="777" + "7" * 70_000, version="v" * 70_000
    )
    twins = ["j" * 70_000 + "-a", "j" * 70_000 + "-b"]  # the same first 70,000 characters
    jobs = [
        JobState(
            cluster_id=long_cluster.id,
            summary=JobSummary(name=name, status="S" * 70_000, job_type="NORMAL_JOB", from_link="l" * 70_000),
        )
        for name in twins
    ]
    reg = registry_for(*jobs, cluster=long_cluster)
    samples = [s for metric in reg.collect() for s in metric.samples]
    longest = max(len(v) for s in samples for v in s.labels.values())
    assert longest == MAX_LABEL_VALUE
    statuses = [
        s.labels
        for s in samples
        if s.name == "cdm_job_status" and s.labels["status"] == label_value("S" * 70_000)
    ]
    assert len({labels["job_name"] for labels in statuses}) == 2  # two names, two series
    assert {labels["job_name"] for labels in statuses} == {label_value(name) for name in twins}
    assert all(label_value(name).startswith("j" * 200) for name in twins)
    # short values are untouched
    assert (
        label_value("jdbc2hive") == "jdbc2hive"
        and label_value("x" * MAX_LABEL_VALUE) == "x" * MAX_LABEL_VALUE
    )
    assert len(generate_latest(reg)) < 200_000  # 70,000-character values would make it megabytes


def test_a_discovered_projects_long_name_is_cut_like_every_api_label() -> None:
    def project(name: str) -> TargetView:
        return TargetView("t", "p" * 32, "cn-north-4", True, (), None, {}, project_name=name)

    long_name = "cn-north-4_" + "x" * 70_000
    snapshot = Snapshot(
        (project(long_name), replace(project("cn-north-4"), project_id="q" * 32)),
        TelemetrySnapshot({}, {}),
        None,
        discoveries=(DiscoveryView("t", True, None, 2, 2),),
    )
    registry = CollectorRegistry()
    registry.register(CdmCollector(lambda: snapshot))
    names = {
        s.labels["project_name"]
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "cdm_project_info"
    }
    assert names == {label_value(long_name), "cn-north-4"}
    assert len(label_value(long_name)) == MAX_LABEL_VALUE


RUN_SERIES = (
    "cdm_job_runs_total",
    "cdm_job_run_failures_total",
    "cdm_job_last_run_duration_seconds",
    "cdm_job_last_failure_timestamp_seconds",
    "cdm_job_history_timestamp_seconds",
)


def test_run_counts_duration_last_failure_and_history_read() -> None:
    failed = Submission(
        "nightly", status="FAILED", submission_id=9, execute_date=1000.0, last_update_date=1450.0
    )
    job = JobState(
        cluster_id="c-1",
        summary=JobSummary(name="nightly"),
        latest=failed,
        tally=RunTally(since=100.0, settled=9, runs=12, failures=4),
        history_read_at=2000.0,
    ).with_ended_runs([failed])
    reg = registry_for(job)
    labels = {**IDS, "job_name": "nightly"}
    got = {name: value(reg, name, **labels) for name in RUN_SERIES}
    assert got == {
        "cdm_job_runs_total": 12,
        "cdm_job_run_failures_total": 4,
        "cdm_job_last_run_duration_seconds": 450.0,
        "cdm_job_last_failure_timestamp_seconds": 1450.0,
        "cdm_job_history_timestamp_seconds": 2000.0,
    }
    text = generate_latest(reg).decode()
    assert "# TYPE cdm_job_runs_total counter" in text
    assert "cdm_job_runs_created" not in text  # no _created: the counter's start is not a fact we have


def test_no_run_series_before_the_job_was_read() -> None:
    """A job known only from the list has no counts yet (a 0 would claim a baseline), and a job
    whose history was never read has no history timestamp."""
    reg = registry_for(JobState(cluster_id="c-1", summary=JobSummary(name="listed", status="SUCCEEDED")))
    labels = {**IDS, "job_name": "listed"}
    assert value(reg, "cdm_job_status", **labels, status="SUCCEEDED") == 1
    assert {name: value(reg, name, **labels) for name in RUN_SERIES} == dict.fromkeys(RUN_SERIES)
