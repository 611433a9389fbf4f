"""Known state as versioned JSON records: what a state store keeps, field by field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import pytest

from cdm_exporter.api.errors import AuthError
from cdm_exporter.api.models import Cluster, Counters, JobSummary, Submission
from cdm_exporter.polling.history import HistoryScan
from cdm_exporter.polling.records import (
    MONOTONIC,
    RECORD_VERSION,
    TRANSIENT,
    Clocks,
    RecordError,
    from_record,
    to_record,
)
from cdm_exporter.polling.run_counts import RunTally
from cdm_exporter.polling.state import (
    AuthFailure,
    ClusterState,
    JobState,
    TargetState,
    cluster_from_record,
    cluster_record,
    job_from_record,
    job_record,
    target_from_record,
    target_record,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def clocks(wall: float, mono: float) -> Clocks:
    return Clocks(Clock(wall), Clock(mono))


HERE = clocks(wall=1_700_000_000.0, mono=500.0)
# another process, later: its monotonic clock started elsewhere
THERE = clocks(wall=1_700_000_100.0, mono=40.0)


def full_job() -> JobState:
    run = Submission(
        job_name='a/b "c" ü',
        status="SUCCEEDED",
        progress=100.0,
        submission_id=42,
        creation_date=1_699_999_000.0,
        last_update_date=1_699_999_900.5,
        is_incrementing=False,
        counters=Counters(rows_read=10, rows_written=9, bytes_written=1234),
        error_summary=None,
    )
    return JobState(
        cluster_id="c1",
        summary=JobSummary(name='a/b "c" ü', job_type="NORMAL_JOB", status="SUCCEEDED", rows_read=7),
        latest=run,
        refreshed_at=1_699_999_950.0,
        fetched_key=("SUCCEEDED", 1_699_999_000.0, None, None),
        last_success=1_699_999_900.5,
        last_failure=1_699_990_000.0,
        last_run_end=1_699_999_900.5,
        last_run_duration=900.5,
        tally=RunTally(since=1_699_000_000.0, settled=40, runs=5, failures=1, counted=(42,)),
        history_wanted=True,
        history_at=470.0,  # 30 s ago on this process's monotonic clock
        history_read_at=1_699_999_920.0,
        history_key=("SUCCEEDED", 1_699_999_000.0, None, None),
        history_scan=HistoryScan(page_no=3, last_success=1.5, previous_ids=(7, None)),
        status_error=("server", "job_status HTTP 503: busy"),
    )


def test_a_job_comes_back_whole_through_json() -> None:
    job = full_job()
    record = json.loads(json.dumps(job_record(job, HERE)))
    assert record["v"] == RECORD_VERSION
    back = job_from_record(record, HERE)
    assert back == job
    assert isinstance(back.fetched_key, tuple) and isinstance(back.history_scan, HistoryScan)
    assert back.latest is not None
    assert back.latest.counters == Counters(rows_read=10, rows_written=9, bytes_written=1234)


def test_every_field_of_a_job_is_stored_or_deliberately_transient() -> None:
    """A field added to JobState must be set in full_job (so the round trip above covers it) or
    marked TRANSIENT: neither a field silently lost at a restart nor one never tried."""
    job, default = full_job(), JobState(cluster_id="c1", summary=full_job().summary)
    record = job_record(job, HERE)
    for item in fields(JobState):
        if item.metadata.get("transient"):
            assert item.name not in record, item.name
            continue
        assert getattr(job, item.name) != getattr(default, item.name) or item.name in (
            "cluster_id",
            "summary",
        ), f"full_job() leaves JobState.{item.name} at its default: set it, or mark it TRANSIENT"
        assert item.name in record, item.name


def test_a_status_error_and_a_list_error_kind_come_back() -> None:
    back = job_from_record(json.loads(json.dumps(job_record(full_job(), HERE))), THERE)
    assert back.status_error == ("server", "job_status HTTP 503: busy")
    cluster = ClusterState(Cluster("c1", "one", "200"), up=False, list_error="x", list_error_kind="throttled")
    assert cluster_from_record(cluster_record(cluster, HERE), HERE).list_error_kind == "throttled"


def test_monotonic_times_are_stored_as_wall_clock_and_read_onto_the_readers_clock() -> None:
    record = job_record(full_job(), HERE)
    assert record["history_at"] == 1_700_000_000.0 - 30.0  # wall clock: it means something elsewhere
    back = job_from_record(record, THERE)
    assert back.history_at == pytest.approx(40.0 - 130.0)  # 130 s before "now" over there
    assert back.refreshed_at == 1_699_999_950.0  # wall-clock fields are kept as they are


def test_a_cluster_keeps_its_list_times_but_not_its_jobs_nor_a_listing_in_progress() -> None:
    cluster = ClusterState(
        Cluster("c1", "one", "200"),
        jobs={"j": full_job()},
        up=True,
        listed_at=480.0,
        list_error=None,
        unsupported={"SCENARIO_JOB": 400.0},
    )
    record = cluster_record(cluster, HERE)
    assert "jobs" not in record and "listing" not in record
    back = cluster_from_record(json.loads(json.dumps(record)), THERE)
    assert back.jobs == {} and back.cluster == cluster.cluster and back.up is True
    assert back.listed_at == pytest.approx(40.0 - 120.0)
    assert back.unsupported == {"SCENARIO_JOB": pytest.approx(40.0 - 200.0)}


def test_a_target_record_says_which_project_it_belongs_to() -> None:
    target = TargetState(("p" * 32, "cn-north-4", "https://cdm"), clusters_at=490.0, clusters_ok=True)
    back = target_from_record(json.loads(json.dumps(target_record(target, HERE))), HERE)
    assert back.where == target.where and back.clusters_ok is True


def test_a_refused_credential_stays_refused_after_a_restart() -> None:
    """The refusal, its kind and its hint's facts come back; the time it happened is moved onto the
    reader's clock, so a restarted process does not resend the credential early."""
    error = AuthError("list_clusters", "bad signature", status=401, code="APIGW.0301", request_id="r1")
    target = TargetState(
        ("p" * 32, "cn-north-4", "https://cdm"),
        clusters_ok=False,
        error=str(error),
        error_kind="auth",
        authenticated=False,
        auth_error=AuthFailure.of(error),
        refused_at=490.0,  # 10 s ago here
        throttled_at=1_699_999_990.0,
    )
    back = target_from_record(json.loads(json.dumps(target_record(target, HERE))), THERE)
    assert back.refused_at == pytest.approx(40.0 - 110.0)
    assert back.auth_error is not None
    again = back.auth_error.error()
    assert isinstance(again, AuthError) and str(again) == str(error) and again.status == 401
    assert (back.error_kind, back.authenticated, back.throttled_at) == ("auth", False, 1_699_999_990.0)


@dataclass(frozen=True)
class Before:
    name: str
    runs: int | None = None


@dataclass(frozen=True)
class After:
    """``Before`` with a field added (what another change to JobState does)."""

    name: str
    runs: int | None = None
    failures: int = 0
    checked_at: float | None = field(default=None, metadata=MONOTONIC)
    scratch: list[int] = field(default_factory=list, metadata=TRANSIENT)


def test_a_new_field_slots_in_and_an_old_one_is_ignored() -> None:
    old = to_record(Before("j", runs=3), HERE)
    assert from_record(After, old, HERE) == After("j", runs=3, failures=0)  # the default
    new = to_record(After("j", runs=3, failures=2, checked_at=450.0, scratch=[1]), HERE)
    assert "scratch" not in new
    assert from_record(Before, new, HERE) == Before("j", runs=3)  # a newer record read by older code
    assert from_record(After, new, HERE) == After("j", runs=3, failures=2, checked_at=450.0)


@pytest.mark.parametrize(
    "record",
    [
        {"v": RECORD_VERSION, "name": "j", "runs": "3"},  # a string where an int belongs
        {"v": RECORD_VERSION, "name": 5},
        {"v": RECORD_VERSION, "name": "j", "runs": True},  # a bool is no count
        {"v": RECORD_VERSION + 1, "name": "j"},  # another version
        {"name": "j"},  # no version
        ["not", "an", "object"],
        {"v": RECORD_VERSION},  # a required field missing
    ],
)
def test_a_record_that_does_not_fit_is_an_error_naming_what(record: object) -> None:
    with pytest.raises(RecordError):
        from_record(Before, record, HERE)


def test_a_broken_nested_record_names_its_field() -> None:
    record = job_record(full_job(), HERE)
    record["latest"]["counters"]["rows_read"] = "many"
    with pytest.raises(RecordError, match=r"latest.*counters.*rows_read"):
        job_from_record(record, HERE)
