"""What the real CDM API answers, from public captures (``tests/fixtures/real/README.md``).

Each of the eight variants of issue 12 has a test here built from the captured body in the
corpus ``public_captures.jsonl`` (a recording in the format ``check --record`` writes), and the
whole corpus is replayed through the exporter, over HTTP, against an expected exposition.

Regenerate the expected exposition after an intended change with
``UPDATE_REAL=1 pytest tests/test_real_api.py`` and review the diff like code.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from exporter_stack import Exposition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_server import promtool_check_metrics, require_prometheus_tools

from cdm_exporter.api.errors import ApiError, NotFound, ServerError
from cdm_exporter.api.models import (
    JobSummary,
    Submission,
    agreed_status,
    list_status_agrees,
    parse_job_page,
    parse_submission_page,
    parse_submissions,
)
from cdm_exporter.api.responses import error_for
from cdm_exporter.api.subjobs import combined_status, current_run
from cdm_exporter.api.transport import RawResponse
from cdm_exporter.cli import cli
from cdm_exporter.config import CollectionConfig, Config, Secret, TargetConfig, TokenAuthConfig
from cdm_exporter.metrics.collector import CdmCollector
from cdm_exporter.polling.history import HistoryScan
from cdm_exporter.polling.job_types import RETRY_SECONDS
from cdm_exporter.polling.state import JobState
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import ManualClock
from cdm_exporter.simulator.replay import Replay, ReplayServer

REAL = Path(__file__).parent / "fixtures" / "real"
CORPUS = REAL / "public_captures.jsonl"
EXPECTED = REAL / "public_captures.prom"
PROJECT = "1551c7f6c808414d8e9f3c514a170f2e"
CLUSTER = "bae65496-643e-47ca-84af-948672de7eeb"
#: latency is real time even with a fixed clock
NONDETERMINISTIC = ("cdm_api_request_duration_seconds",)


# --- the corpus ---------------------------------------------------------------------------------


def exchanges() -> list[dict[str, Any]]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]


def exchange(endpoint: str, job: str | None = None, *, index: int = 0) -> dict[str, Any]:
    """The ``index``-th recorded exchange of ``endpoint`` (for ``job``, by path or ``jname``)."""
    found = [
        e
        for e in exchanges()
        if e["endpoint"] == endpoint
        and (
            job is None
            or e["path"].endswith(f"/job/{job}/status")
            or ["jname", job] in e["query"]
            or e["path"].endswith(f"/job/{job}")
        )
    ]
    return found[index]


def body(endpoint: str, job: str | None = None, *, index: int = 0) -> Any:
    return exchange(endpoint, job, index=index)["body"]["json"]


def raw_answer(record: dict[str, Any]) -> RawResponse:
    return RawResponse(
        status=record["status"],
        headers=record["headers"],
        body=json.dumps(record["body"]["json"]).encode(),
    )


def target(url: str, name: str = "otc") -> TargetConfig:
    return TargetConfig(
        name=name,
        region="eu-de",
        project_id=PROJECT,
        endpoint=url,
        iam_endpoint=url,
        auth=TokenAuthConfig(Secret("any-token-will-do")),
    )


def config_file(directory: Path, url: str) -> Path:
    """A configuration file for ``check`` against a replay at ``url``."""
    spec: dict[str, Any] = {"name": "otc", "region": "eu-de", "project_id": PROJECT}
    spec.update(endpoint=url, iam_endpoint=url, auth={"token": "any-token-will-do"})
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"targets": [spec]}))
    return path


def replayed(
    replay: Replay, clock: ManualClock, collections: int = 3, **collection: Any
) -> tuple[Exporter, ReplayServer]:
    server = ReplayServer(replay)
    server.start()
    config = Config(targets=(target(server.url),), collection=CollectionConfig(**collection))
    exporter = Exporter(config, wall=clock, mono=clock, pacing="off")
    for _ in range(collections):  # clusters and lists, then statuses, then run history
        exporter.collect(30.0)
        clock.advance(15.0)
    return exporter, server


def exposition(exporter: Exporter) -> str:
    registry = CollectorRegistry()
    registry.register(CdmCollector(exporter.snapshot))
    text = generate_latest(registry).decode()
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith(NONDETERMINISTIC))


@pytest.fixture(scope="module")
def corpus_run() -> Iterator[tuple[Exposition, Replay, str]]:
    replay = Replay.load(CORPUS)
    exporter, server = replayed(replay, ManualClock(1_700_010_000.0))
    try:
        text = exposition(exporter)
    finally:
        exporter.close()
        server.stop()
    yield Exposition.parse(text), replay, text


def job_value(expo: Exposition, metric: str, job: str, **labels: str) -> float | None:
    found = expo.select(metric, job_name=job, **labels)
    assert len(found) <= 1, found
    return next(iter(found.values()), None)


def test_the_corpus_replays_to_the_expected_exposition(corpus_run: tuple[Exposition, Replay, str]) -> None:
    _, replay, text = corpus_run
    if os.environ.get("UPDATE_REAL"):
        EXPECTED.write_text(text)
    assert text == EXPECTED.read_text()
    assert replay.stats()["unmatched"] == []  # every request the exporter made was recorded


def test_the_replayed_exposition_is_clean_for_promtool(corpus_run: tuple[Exposition, Replay, str]) -> None:
    require_prometheus_tools()
    passed, output = promtool_check_metrics(corpus_run[2])
    assert passed, output


# --- 1. counters of -1 ----------------------------------------------------------------------------


def test_counters_of_minus_one_are_no_value() -> None:
    # Huawei cdm_02_0065: a file job with ROWS_READ, ROWS_WRITTEN and FILES_SKIPPED of -1
    (file_job,) = parse_submissions(body("job_status", "TEST"))
    assert file_job.counters is not None
    assert (file_job.counters.rows_read, file_job.counters.rows_written) == (None, None)
    assert file_job.counters.files_skipped is None
    assert (file_job.counters.bytes_read, file_job.counters.files_read) == (73893799, 1)
    assert file_job.counters.rows_written_skipped == 0  # 0 is a count, -1 is none
    # OTC example: a table job with BYTES_*, FILES_* and TOTAL_SIZE of -1
    (table_job,) = parse_submissions(body("job_status", "mysql2dws"))
    assert table_job.counters is not None
    assert (table_job.counters.rows_read, table_job.counters.rows_written) == (80, 80)
    for field in ("bytes_read", "bytes_written", "total_size", "files_read", "files_written", "total_files"):
        assert getattr(table_job.counters, field) is None, field
    # the same rule for the job list's counters
    listed = {job.name: job for job in parse_job_page(body("list_jobs")).jobs}
    assert (listed["mysql2dws"].bytes_read, listed["mysql2dws"].rows_read) == (None, 80)
    assert (listed["TEST"].rows_read, listed["TEST"].files_read) == (None, 1)


def test_minus_one_counters_give_no_series(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo = corpus_run[0]
    assert job_value(expo, "cdm_job_read_rows", "TEST") is None
    assert job_value(expo, "cdm_job_skipped_files", "TEST") is None
    assert job_value(expo, "cdm_job_skipped_rows", "TEST") == 0
    assert job_value(expo, "cdm_job_read_bytes", "mysql2dws") is None
    assert job_value(expo, "cdm_job_read_rows", "mysql2dws") == 80
    assert not [v for (name, _), v in expo.samples.items() if name.startswith("cdm_job_") and v < 0]


# --- 2. progress of a run that ended ----------------------------------------------------------------


def test_progress_of_an_ended_run() -> None:
    (succeeded,) = parse_submissions(body("job_status", "mysql2dws"))
    assert (succeeded.status, succeeded.progress) == ("SUCCEEDED", 0.0)  # what OTC's example shows
    assert succeeded.progress_ratio == 1.0
    (stopped,) = parse_submissions(body("job_status", "es_css"))
    assert stopped.status == "FAILED" and stopped.progress_ratio is None
    running = parse_submissions(body("job_status", "obs2obs_daily"))[0]
    assert running.progress_ratio == pytest.approx(0.355)
    assert replace(succeeded, status="NEVER_EXECUTED").progress_ratio is None
    assert replace(succeeded, status="SOMETHING_NEW", progress=12.0).progress_ratio == 0.12


def test_finished_jobs_read_100_percent(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo = corpus_run[0]
    assert job_value(expo, "cdm_job_progress_ratio", "mysql2dws") == 1.0
    assert job_value(expo, "cdm_job_progress_ratio", "obs2obs-03") == 0.0  # PENDING: active, at 0
    assert job_value(expo, "cdm_job_progress_ratio", "es_css") is None  # stopped: no progress


# --- 3. "job does not exist" on HTTP 500 -----------------------------------------------------------


def test_cdm_0100_under_500_is_not_found() -> None:
    record = exchange("job_status", "jdbc2hive")  # OTC DeleteJob: Cdm.0100 documented under 500
    assert record["status"] == 500
    error = error_for("job_status", raw_answer(record))
    assert type(error) is NotFound
    assert (error.code, error.message) == ("Cdm.0100", "Job[jdbc2hive] doesn't exist.")
    other = error_for("job_status", RawResponse(500, {}, b'{"errCode": "Cdm.0000", "externalMessage": "x"}'))
    assert type(other) is ServerError


def test_a_job_deleted_meanwhile_is_dropped_after_the_next_list(
    corpus_run: tuple[Exposition, Replay, str],
) -> None:
    expo, replay, _ = corpus_run
    assert expo.select("cdm_job_info", job_name="jdbc2hive") == {}
    second_list = exchange("list_jobs", index=3)
    assert replay.served(second_list["seq"]) == 1  # the "not found" made the next collection relist
    assert expo.value("cdm_cluster_up", cluster_id=CLUSTER, cluster_name="cdm-c018") == 1


# --- 4. a job type the cluster does not know ------------------------------------------------------


def test_a_refused_job_type_leaves_the_cluster_up(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo, replay, _ = corpus_run
    refused = exchange("list_jobs", index=2)
    assert ["jobType", "SCENARIO_JOB"] in refused["query"] and refused["status"] == 400
    assert expo.value("cdm_cluster_up", cluster_id=CLUSTER, cluster_name="cdm-c018") == 1
    assert job_value(expo, "cdm_job_status", "mysql_entire_db", status="RUNNING") == 1  # BATCH listed
    assert replay.served(refused["seq"]) == 1  # not asked again on the relist


def test_check_names_the_refused_job_type(tmp_path: Path) -> None:
    with ReplayServer(Replay.load(CORPUS)) as server:
        config = config_file(tmp_path, server.url)
        result = CliRunner().invoke(cli, ["check", "--config.file", str(config), "--timeout", "20"])
    # 3: the corpus holds a job whose status answers an error, so the report is incomplete
    assert result.exit_code == 3, result.output
    assert (
        "status normal, job list up, 8 job(s), job types it does not list (tried again hourly): SCENARIO_JOB"
        in (result.stdout)
    )


def test_a_refused_job_type_is_tried_again_hourly_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    replay = Replay.load(CORPUS)
    refused = exchange("list_jobs", index=2)
    clock = ManualClock(1_700_010_000.0)
    # a list every collection, so that only the hourly retry decides when SCENARIO_JOB is asked
    with caplog.at_level(logging.INFO, logger="cdm_exporter.polling.poller"):
        exporter, server = replayed(replay, clock, collections=1, job_list_interval=0)
        try:
            for _ in range(10):
                exporter.collect(30.0)
                clock.advance(60.0)
            assert replay.served(refused["seq"]) == 1
            clock.advance(RETRY_SECONDS)
            exporter.collect(30.0)
            assert replay.served(refused["seq"]) == 2
            exporter.collect(30.0)
            assert replay.served(refused["seq"]) == 2
            (view,) = exporter.snapshot().targets[0].clusters
            assert view.up is True and view.unsupported_types == ("SCENARIO_JOB",)
        finally:
            exporter.close()
            server.stop()
    warnings = [r for r in caplog.records if "does not list this job type" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].job_type == "SCENARIO_JOB"  # type: ignore[attr-defined]
    assert not [
        r for r in caplog.records if r.getMessage() == "API call failed" and "list_jobs" in str(vars(r))
    ]


def test_a_cluster_refusing_every_type_is_down() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    refusal = exchange("list_jobs", index=2)
    edited = [lines[0]]
    for line in lines[1:]:
        record = json.loads(line)
        if record["endpoint"] == "list_jobs":
            record = {**record, "status": 400, "body": refusal["body"]}
        edited.append(json.dumps(record))
    replay = Replay.parse(edited)
    exporter, server = replayed(replay, ManualClock(1_700_010_000.0), collections=1)
    try:
        (view,) = exporter.snapshot().targets[0].clusters
    finally:
        exporter.close()
        server.stop()
    assert view.up is False and view.unsupported_types == ()
    assert view.error is not None and "Cdm.0014" in view.error


# --- 5. list statuses beyond the run enum -----------------------------------------------------------


def test_console_statuses_in_the_list_agree_with_their_runs() -> None:
    listed = {job.name: job for job in parse_job_page(body("list_jobs")).jobs}
    moved_on = {job.name: job for job in parse_job_page(body("list_jobs", index=3)).jobs}
    (stopped,) = parse_submissions(body("job_status", "es_css"))  # Sqoop2 reports a killed run as FAILED
    fetched = JobState(CLUSTER, listed["es_css"], stopped, 1.0, listed["es_css"].change_key)
    later = replace(fetched, summary=moved_on["es_css"])  # the list entry moved on, same run
    assert later.summary.change_key != fetched.fetched_key
    assert not later.changed_since_fetch  # not fetched again on every cycle
    assert later.status == "STOPPED"  # the list's word: a stopped run is no failure
    pending = JobSummary("j", status="Pending", execute_start_date=100.0, update_date=5.0)
    booting = Submission("j", status="BOOTING", creation_date=100.0)
    state = JobState(CLUSTER, replace(pending, update_date=9.0), booting, 1.0, pending.change_key)
    assert not state.changed_since_fetch and state.status == "BOOTING"
    assert list_status_agrees("STOPPED", "UNKNOWN") and not list_status_agrees("STOPPED", "RUNNING")
    assert not list_status_agrees("BOOTING", "PENDING")  # a pending run is older news than the list
    assert agreed_status("STOPPED", "RUNNING") == "RUNNING"


def test_a_job_that_never_ran_is_not_fetched_on_every_cycle() -> None:
    never = JobSummary("new", status="NEW", update_date=1.0)
    fetched = JobState(CLUSTER, never, None, refreshed_at=1.0, fetched_key=never.change_key)
    assert not fetched.changed_since_fetch
    assert JobState(CLUSTER, never).changed_since_fetch  # never fetched at all


def test_a_stopped_job_reads_stopped_with_no_error(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo = corpus_run[0]
    assert job_value(expo, "cdm_job_status", "es_css", status="STOPPED") == 1
    assert job_value(expo, "cdm_job_status", "es_css", status="FAILED") == 0
    assert expo.select("cdm_job_error_info", job_name="es_css") == {}


# --- 6. run history order and length ----------------------------------------------------------------


def test_history_in_any_order_is_read_to_the_newest_success() -> None:
    first = parse_submission_page(body("submissions", "obs2obs_daily"))
    second = parse_submission_page(body("submissions", "obs2obs_daily", index=1))
    scan = HistoryScan().read(first, "obs2obs_daily", None)
    assert not scan.done  # unordered, more pages: the newest success may be further on
    scan = scan.read(second, "obs2obs_daily", None)
    assert scan.done
    newest = max(
        (r for r in (*first.runs, *second.runs) if r.status == "SUCCEEDED"),
        key=lambda r: r.submission_id or 0,
    )
    assert newest.submission_id == 15 and newest in second.runs
    assert scan.last_success == newest.last_update_date


def test_history_newest_first_stops_at_the_first_page_with_a_success() -> None:
    page = parse_submission_page(body("submissions", "es_css"))
    assert HistoryScan().read(page, "es_css", None).done
    ordered = replace(page, runs=page.runs[:1], total=30, page_size=1)  # a failure alone: go on
    assert not HistoryScan().read(ordered, "es_css", None).done
    repeated = HistoryScan().read(ordered, "es_css", None)
    assert repeated.read(ordered, "es_css", None).done  # a server that ignores page_no


def test_last_success_is_right_for_more_than_10_runs(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo, replay, _ = corpus_run
    newest_success = next(
        r for r in body("submissions", "obs2obs_daily", index=1)["submissions"] if r["submission-id"] == 15
    )
    assert job_value(expo, "cdm_job_last_success_timestamp_seconds", "obs2obs_daily") == (
        newest_success["last-update-date"] / 1000
    )
    assert replay.served(exchange("submissions", "obs2obs_daily", index=1)["seq"]) == 1
    # es_css's history is newest first with a success on page 1: no second page asked
    assert [u for u in replay.stats()["unmatched"] if "es_css" in u] == []


# --- 7. an entire-DB parent with a submission per sub-job ----------------------------------------


def test_batch_parent_state_comes_from_all_sub_jobs() -> None:
    runs = parse_submissions(body("job_status", "mysql_entire_db"))
    assert len({r.job_name for r in runs}) == 3
    parent = current_run("mysql_entire_db", runs)
    assert parent is not None
    assert (parent.job_name, parent.status) == ("mysql_entire_db", "RUNNING")
    assert parent.progress == pytest.approx((100 + 40 + 0) / 3)
    assert parent.counters is not None and parent.counters.rows_read == 1200
    assert parent.counters.bytes_read is None  # -1 in the one sub-job that has counters
    assert parent.write_rows == 1550 and parent.submission_id == 102
    failed = [
        replace(r, status="FAILED", error_summary="dirty data") if r.status == "BOOTING" else r for r in runs
    ]
    ended = [replace(r, status="SUCCEEDED") if r.status != "FAILED" else r for r in failed]
    outcome = current_run("mysql_entire_db", ended)
    assert outcome is not None and outcome.status == "FAILED"
    assert outcome.error_summary == "mysql_entire_db_items: dirty data"
    assert combined_status(["SUCCEEDED", "SUCCEEDED"]) == "SUCCEEDED"
    assert combined_status(["SUCCEEDED", "STOPPED"]) == "STOPPED"
    assert combined_status(["PENDING", "FAILED", "SUCCEEDED"]) == "PENDING"  # active wins
    # one job name: the newest run, as before
    single = parse_submissions(body("job_status", "TEST"))
    assert current_run("TEST", single) == single[0]


def test_batch_parent_in_the_exposition(corpus_run: tuple[Exposition, Replay, str]) -> None:
    expo = corpus_run[0]
    assert job_value(expo, "cdm_job_status", "mysql_entire_db", status="RUNNING") == 1
    assert job_value(expo, "cdm_job_progress_ratio", "mysql_entire_db") == pytest.approx(140 / 300)
    assert expo.select("cdm_job_info", job_name="mysql_entire_db_orders") == {}  # sub-jobs are not jobs


# --- 8. error bodies with four keys, and gateway shapes -------------------------------------------


def test_error_bodies_with_four_keys() -> None:
    record = exchange("job_status", "obs-obs")  # OTC ModifyJob: code Cdm.0095 next to errCode Cdm.00095
    error = error_for("job_status", raw_answer(record))
    assert type(error) is ApiError
    assert (error.code, error.message) == ("Cdm.00095", "A job with the name obs-obs does not exist.")
    # each key found on its own: a code without its partner message still has the message
    partial = error_for("job_status", RawResponse(400, {}, b'{"errCode": "Cdm.0054", "message": "gone"}'))
    assert (type(partial), partial.code, partial.message) == (NotFound, "Cdm.0054", "gone")
    either = error_for("job_status", RawResponse(400, {}, b'{"code": "Cdm.0100", "errCode": "Cdm.9999"}'))
    assert type(either) is NotFound  # every code in the body counts


@pytest.mark.parametrize(
    ("status", "error_body", "code", "message"),
    [
        (
            400,
            {
                "code": "Cdm.0095",
                "errCode": "Cdm.00095",
                "message": "A job with the name obs-obs does not exist.",
                "externalMessage": "A job with the name obs-obs does not exist.",
            },
            "Cdm.00095",
            "A job with the name obs-obs does not exist.",
        ),
        (
            401,
            {
                "error_code": "APIGW.0301",
                "error_msg": "Incorrect IAM authentication information",
                "request_id": "r1",
            },
            "APIGW.0301",
            "Incorrect IAM authentication information",
        ),
    ],
)
def test_logs_and_check_show_the_same_code_and_message(
    tmp_path: Path, status: int, error_body: dict[str, Any], code: str, message: str
) -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    failing = lines[:2] + [
        json.dumps({**json.loads(line), "status": status, "body": {"json": error_body}})
        if json.loads(line)["endpoint"] == "list_jobs"
        else line
        for line in lines[2:]
    ]
    with ReplayServer(Replay.parse(failing)) as server:
        config = config_file(tmp_path, server.url)
        result = CliRunner().invoke(
            cli,
            [
                "check",
                "--config.file",
                str(config),
                "--log.format",
                "json",
                "--log.level",
                "debug",
                "--timeout",
                "20",
            ],
        )
    assert result.exit_code == 1, result.output
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    failures = [
        entry for entry in logged if entry["msg"] == "API call failed" and entry["endpoint"] == "list_jobs"
    ]
    assert failures, result.stderr
    assert (failures[0]["code"], failures[0]["error"]) == (code, message)
    error_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("error:"))
    assert f"{code}: {message}" in error_line
