"""The status page's data and its server-side rendering, without a browser: records built from
known state by the metrics' rules, problems in words, the query string's view, filtering, sorting
and pages, and escaping. (tests/test_status_page.py looks at the page in Chromium.)"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from sim_targets import sim_target

from cdm_exporter.api.models import Cluster, JobSummary, Submission
from cdm_exporter.config import Config
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.polling.telemetry import TelemetrySnapshot
from cdm_exporter.simulator import Fault, Simulator
from cdm_exporter.web.status_data import ERROR_TEXT_MAX, Job, status_data
from cdm_exporter.web.status_page import PAGE_ROWS, View, render_page, select

NOW = 1_750_000_000.0
CLUSTER = Cluster(id="c-1", name="cdm-one", status="200")


def job(name: str, status: str | None, run: Submission | None = None, **summary: object) -> JobState:
    entry = JobSummary(name=name, job_type="NORMAL_JOB", status=status, **summary)  # type: ignore[arg-type]
    return JobState("c-1", entry, run, NOW - 5 if run else None, entry.change_key if run else None)


def target(
    *jobs: JobState, cluster: Cluster = CLUSTER, cluster_up: bool | None = True, **fields: object
) -> TargetView:
    view = TargetView(
        "prod", "p" * 32, "cn-north-4", True, (ClusterView(cluster, cluster_up, jobs, None),), None, {}
    )
    return replace(view, **fields)  # type: ignore[arg-type]


def snapshot(*targets: TargetView) -> Snapshot:
    return Snapshot(targets, TelemetrySnapshot({}, {}), None)


def records(*jobs: JobState) -> dict[str, Job]:
    return {j["name"]: j for j in status_data(snapshot(target(*jobs)), NOW)["jobs"]}


def test_job_records_follow_the_metrics_rules() -> None:
    failed_run = Submission("broken", status="FAILED", submission_id=3, error_summary="disk full")
    failed_run = replace(failed_run, error_details="x" * (ERROR_TEXT_MAX + 10))
    found = records(
        job("broken", "FAILED", failed_run),
        job("moving", "RUNNING", Submission("moving", status="RUNNING", progress=42.5, submission_id=9)),
        job("done", "SUCCEEDED", Submission("done", status="SUCCEEDED", progress=100.0)),
        job("listed", "RUNNING", rows_read=10, rows_written=9),  # no status fetched yet
        job("mystery", None),
    )
    broken = found["broken"]
    assert (broken["status"], broken["status_group"], broken["submission_id"]) == ("FAILED", "failed", 3)
    assert broken["error_summary"] == "disk full"
    assert broken["error_details"] == "x" * ERROR_TEXT_MAX + f"\n… (cut at {ERROR_TEXT_MAX} characters)"
    assert broken["refreshed_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 5))
    moving = found["moving"]
    assert (moving["status_group"], moving["progress_percent"], moving["error_summary"]) == (
        "active",
        42.5,
        None,
    )
    assert found["done"]["progress_percent"] is None  # a bar only while a run is active
    assert found["done"]["status_group"] == "succeeded"
    listed = found["listed"]
    assert (listed["progress_percent"], listed["refreshed_at"]) == (None, None)
    assert (listed["rows_read"], listed["rows_written"], listed["bytes_written"]) == (10, 9, None)
    assert (found["mystery"]["status"], found["mystery"]["status_group"]) == ("?", "other")


def test_counts_put_what_needs_a_look_first() -> None:
    data = status_data(
        snapshot(
            target(
                job("a", "SUCCEEDED"),
                job("b", "NEVER_EXECUTED"),
                job("c", "RUNNING"),
                job("d", "FAILURE_ON_SUBMIT"),
                job("e", "FAILED"),
                job("f", "SUCCEEDED"),
            )
        ),
        NOW,
    )
    assert list(data["counts"].items()) == [
        ("FAILED", 1),
        ("FAILURE_ON_SUBMIT", 1),
        ("RUNNING", 1),
        ("NEVER_EXECUTED", 1),
        ("SUCCEEDED", 2),
    ]


def messages(*targets: TargetView) -> list[tuple[str, str]]:
    return [(p["severity"], p["message"]) for p in status_data(snapshot(*targets), NOW)["problems"]]


def test_problems_are_said_in_words() -> None:
    assert messages(target()) == []
    assert messages(target(up=False, error="list_clusters HTTP 401: no", error_kind="auth")) == [
        (
            "error",
            "Target prod cannot be read: the API refused the credentials. "
            "Its jobs show their last known state.",
        )
    ]
    # down with no error of its own: a job call was refused its credentials
    assert "refused the credentials" in messages(target(up=False))[0][1]
    assert messages(target(up=None)) == [("info", "Target prod has not been read yet.")]
    assert messages(target(up=False, error="list_clusters: connection refused", error_kind="transport")) == [
        (
            "error",
            "Target prod cannot be read: the API could not be reached. Its jobs show their last known state.",
        )
    ]
    throttled = messages(target(throttled_at=NOW - 12))
    assert len(throttled) == 1 and throttled[0][0] == "warning"
    assert throttled[0][1].startswith("CDM throttled requests of target prod 12 s ago (HTTP 429)")
    assert messages(target(throttled_at=NOW - 400)) == []  # long past
    frozen = Cluster(id="c-2", name="cdm-two", status="800")
    down = TargetView(
        "prod",
        "p" * 32,
        "cn-north-4",
        True,
        (ClusterView(frozen, False, (), "list_jobs HTTP 429 APIGW.0308: slow down", error_kind="throttled"),),
        None,
        {},
    )
    assert messages(down) == [
        (
            "error",
            "The job list of cluster cdm-two (target prod) cannot be read: CDM refused requests because "
            "its rate limit was reached (HTTP 429). Its jobs show their last known state.",
        ),
        ("warning", "The status of cluster cdm-two (target prod) is frozen, not normal."),
    ]
    details = [p["detail"] for p in status_data(snapshot(down), NOW)["problems"]]
    assert details[0] == "list_jobs HTTP 429 APIGW.0308: slow down"


def test_failures_in_a_real_collection_reach_the_problems(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(clusters=1, jobs=3, rate_limit=0)
    cluster_id = sim.world.clusters()[0].id
    sim.world.set_cluster_status(cluster_id, "200")
    sim.add_fault(Fault(endpoint="list_jobs", status=429))
    exporter = Exporter(Config(targets=(sim_target(sim),)))
    refused = Exporter(Config(targets=(sim_target(sim, "other"),)))  # budgets of its own: not paused
    try:
        exporter.collect(10.0)
        data = status_data(exporter.snapshot(), time.time())
        texts = [p["message"] for p in data["problems"]]
        assert any(t.startswith("CDM throttled requests of target sim 0 s ago (HTTP 429)") for t in texts), (
            texts
        )
        assert any("rate limit was reached (HTTP 429)" in t for t in texts), texts
        assert data["targets"][0]["throttled_at"] is not None
        assert data["targets"][0]["clusters"][0]["job_list_up"] is False

        sim.clear_faults()
        sim.add_fault(Fault(endpoint="list_clusters", status=401))
        refused.collect(10.0)
        data = status_data(refused.snapshot(), time.time())
        assert data["targets"][0]["up"] is False
        assert [p["message"] for p in data["problems"] if p["severity"] == "error"] == [
            "Target other cannot be read: the API refused the credentials. "
            "Its jobs show their last known state."
        ]
    finally:
        exporter.close()
        refused.close()


def test_the_view_is_read_leniently_and_links_back_to_itself() -> None:
    view = View.parse("status=FAILED&status=RUNNING&status=&q=%20orders%20&sort=bogus&page=-3")
    assert view == View(("FAILED", "RUNNING"), "orders", "status", 1)
    assert View.parse("page=x&sort=-progress") == View(sort="-progress", page=1)
    hostile = View(("FAILED",), 'a&b=c<"x">#', "-name", 3)
    link = hostile.href()
    assert link.startswith("?") and "#" not in link and "<" not in link
    assert View.parse(link[1:]) == hostile
    assert View().href() == "/"


def progress_jobs(*values: float | None) -> list[Job]:
    states = [
        job(f"j{i}", "RUNNING", Submission(f"j{i}", status="RUNNING", progress=value))
        for i, value in enumerate(values)
    ]
    return list(records(*states).values())


@pytest.mark.parametrize(
    ("sort", "expected"),
    [("progress", [10.0, 50.0, 90.0, None, None]), ("-progress", [90.0, 50.0, 10.0, None, None])],
)
def test_empty_values_sort_last_either_way(sort: str, expected: list[float | None]) -> None:
    jobs = progress_jobs(None, 50.0, 10.0, None, 90.0)
    chosen = select(jobs, View(sort=sort))
    assert [j["progress_percent"] for j in chosen.rows] == expected
    assert [j["name"] for j in chosen.rows][-2:] == ["j0", "j3"]  # ties keep the data's order


def test_filters_and_pages() -> None:
    jobs = list(
        records(*(job(f"job-{i:03}", "FAILED" if i % 3 == 0 else "SUCCEEDED") for i in range(450))).values()
    )
    first = select(jobs, View())
    assert (len(first.rows), first.matching, first.page, first.pages) == (PAGE_ROWS, 450, 1, 3)
    last = select(jobs, View(page=99))
    assert (len(last.rows), last.page) == (50, 3)
    failed = select(jobs, View(statuses=("FAILED",), sort="-name"))
    assert failed.matching == 150 and failed.rows[0]["name"] == "job-447"
    assert {j["status"] for j in failed.rows} == {"FAILED"}
    named = select(jobs, View(q="JOB-01", sort="name"))
    assert [j["name"] for j in named.rows] == [f"job-01{i}" for i in range(10)]
    assert select(jobs, View(q="cdm-ONE")).matching == 450  # the cluster's name matches too
    assert select(jobs, View(q="nothing")).matching == 0


def test_every_api_string_is_escaped_on_the_server() -> None:
    hostile = '<img src=x onerror="alert(1)">'
    cluster = Cluster(id='c"1', name="<b>cluster</b>", status="<i>800</i>")
    run = Submission(hostile, status="FAILED", error_summary="<script>1</script>", error_details="</pre><hr>")
    view = target(job(hostile, "FAILED<u>", run), cluster=cluster, error="<em>why</em>", up=False)
    page = render_page(
        status_data(snapshot(view), NOW),
        View(q='alert(1)">'),  # matches the job, and would close an attribute
        telemetry_path="/metrics",
        assets={"css": "/s.css", "js": "/s.js"},
    )
    for raw in (
        hostile,
        "<b>cluster",
        "<i>800",
        "<script>1",
        "</pre><hr>",
        "<em>why",
        "FAILED<u>",
        '"><script>',
        'c"1',
    ):
        assert raw not in page, raw
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count("<script") == 1  # the page's own, from /s.js
