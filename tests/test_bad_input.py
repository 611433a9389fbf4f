"""Bad input from every side: API payloads, odd names, broken configuration files.

* Property tests: job list entries, runs and cluster entries with random or mistyped values for
  every key the parser knows (plus random JSON) go through ``models.parse_*``, into known state,
  through the collector and ``generate_latest``: nothing raises, every name comes back as its
  label value, and the expositions pass ``promtool check metrics``.
* Names with quotes, backslashes, line breaks, ``/``, ``..``, ``%``, emoji and 2000 characters go
  through the simulator and a real scrape: the labels are right, and each name travels as one
  percent-encoded path segment (the simulator's request log shows the raw paths).
* The real command line refuses broken configuration files with exit code 2 and one line naming
  the key, and warns about a secret file other users can read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
import yaml
from exporter_stack import ExporterServer, Exposition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_server import promtool_check_metrics, require_prometheus_tools
from sim_targets import sim_target

from cdm_exporter.api import models
from cdm_exporter.config import CollectionConfig, Config
from cdm_exporter.metrics.collector import MAX_LABEL_VALUE, CdmCollector, label_value
from cdm_exporter.polling.run_counts import tally_after_status
from cdm_exporter.polling.snapshot import Snapshot
from cdm_exporter.polling.state import ClusterView, JobState, TargetView
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.polling.telemetry import TelemetrySnapshot
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

REPO = Path(__file__).resolve().parent.parent

# --- strategies ------------------------------------------------------------------------------------

#: text as JSON can carry it: any code point, lone surrogates (``"\ud800"`` escapes) included
any_text = st.text(st.characters(codec=None, categories=None), max_size=24) | st.builds(
    lambda head, cp, tail: head + chr(cp) + tail,
    st.text(max_size=6),
    st.integers(0xD800, 0xDFFF),
    st.text(max_size=6),
)
numeric_text = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " 12 ", "1e400", "-0", "0x10", "NaN", "1_000", "١٢"]),
)
huge_ints = st.integers(-(10**30), 10**30) | st.sampled_from([10**400, -(10**400), 2**63, 2**64])
numbers = huge_ints | st.floats(allow_nan=True, allow_infinity=True) | numeric_text
json_values = st.recursive(
    st.none() | st.booleans() | huge_ints | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
texts = any_text | json_values
flags = st.booleans() | st.sampled_from(["true", "false", "0", "1", "TRUE", " yes ", 2]) | json_values
statuses = st.sampled_from([*models.JOB_STATUSES, "PENDING", "NEW", "", "running"]) | texts

JOB_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "job_type": st.sampled_from(models.JOB_TYPES) | texts,
    "status": statuses,
    "from-connector-name": texts,
    "to-connector-name": texts,
    "from-link-name": texts,
    "to-link-name": texts,
    "creation-user": texts,
    "update-user": texts,
    "creation-date": numbers | json_values,
    "update-date": numbers | json_values,
    "execute_start_date": numbers | json_values,
    "execute_update_date": numbers | json_values,
    "external_id": texts,
    "is_incre_job": flags,
    "rows_read": numbers | json_values,
    "rows_written": numbers | json_values,
    "bytes_read": numbers | json_values,
    "bytes_written": numbers | json_values,
    "files_read": numbers | json_values,
    "files_written": numbers | json_values,
}
COUNTER_NAMES = [f.upper() for f in models.Counters.__dataclass_fields__]
counters = (
    st.fixed_dictionaries(
        {},
        optional={
            models.COUNTERS_KEY: st.dictionaries(st.sampled_from(COUNTER_NAMES), numbers | json_values)
        },
    )
    | json_values
)
RUN_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "status": statuses,
    "progress": numbers | json_values,
    "submission-id": numbers | json_values,
    "external-id": texts,
    "creation-user": texts,
    "last-update-user": texts,
    "last-udpate-user": texts,
    "creation-date": numbers | json_values,
    "execute-date": numbers | json_values,
    "last-update-date": numbers | json_values,
    "isIncrementing": flags,
    "isStopingIncrement": texts,
    "is-execute-auto": flags,
    "isDeleteJob": flags,
    "write_rows": numbers | json_values,
    "update_rows": numbers | json_values,
    "delete_rows": numbers | json_values,
    "counters": counters,
    "error-summary": texts,
    "error-details": texts,
}
CLUSTER_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "name": texts,
    "status": st.sampled_from(["100", "200", "900", "", "42"]) | texts,
    "statusDetail": texts,
    "version": texts,
    "datastore": st.fixed_dictionaries({}, optional={"version": texts}) | json_values,
    "isFrozen": flags,
}

names = (
    st.sampled_from(["job", "a/b", "..", '"q"', "back\\slash", "line\nbreak", "🚀"]) | any_text | json_values
)


def entries(name_key: str, keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Valid-ish records (every known key optional, mistyped at times) and now and then junk."""
    record = st.fixed_dictionaries({name_key: names}, optional=keys)
    return st.lists(record | json_values, max_size=5)


job_pages = st.fixed_dictionaries(
    {"jobs": entries("name", JOB_KEYS)},
    optional={"total": numbers | json_values, "page_no": numbers, "page_size": numbers},
)
run_lists = st.fixed_dictionaries({"submissions": entries("job-name", RUN_KEYS)})
cluster_lists = st.fixed_dictionaries({"clusters": entries("id", CLUSTER_KEYS)})
payloads = st.fixed_dictionaries(
    {
        "clusters": cluster_lists | json_values,
        "page": job_pages | json_values,
        "runs": run_lists | json_values,
        "history": run_lists | json_values,
        "up": st.none() | st.booleans(),
        "refreshed": st.none() | st.floats(0, 4e9),
    }
)


# --- payload -> state -> exposition -----------------------------------------------------------


def parse_or_none(parse: Any, payload: Any) -> Any:
    try:
        return parse(payload)
    except models.ShapeError:
        return None


def build_view(data: dict[str, Any], index: int) -> TargetView:
    """Known state as the poller would hold it after reading these payloads."""
    clusters = parse_or_none(models.parse_clusters, data["clusters"]) or []
    page = parse_or_none(models.parse_job_page, data["page"])
    runs = parse_or_none(models.parse_submissions, data["runs"]) or []
    history = parse_or_none(models.parse_submissions, data["history"]) or []
    cluster = clusters[0] if clusters else models.Cluster(id=f"cluster-{index}", name="fallback")
    jobs: dict[str, JobState] = {}
    for summary in page.jobs if page is not None else ():
        run = models.latest([r for r in runs if r.job_name == summary.name] or runs)
        tally = tally_after_status(None, run, data["refreshed"])
        job = JobState(
            cluster_id=cluster.id,
            summary=summary,
            latest=run,
            refreshed_at=data["refreshed"],
            fetched_key=summary.change_key if len(jobs) % 2 == 0 else None,
            tally=tally.observe(history) if tally is not None else None,
            history_read_at=data["refreshed"],
        )
        jobs.setdefault(summary.name, job.with_ended_runs(history))
    views = tuple(
        ClusterView(c, data["up"], tuple(jobs.values()) if c is cluster else (), None)
        for c in clusters or [cluster]
    )
    return TargetView(f"t{index}", "p" * 32, "cn-north-4", data["up"], views, None, {"job_status": 1.5})


def registry_for(views: tuple[TargetView, ...]) -> CollectorRegistry:
    telemetry = TelemetrySnapshot({("job_status", "error"): 3}, {})
    snapshot = Snapshot(views, telemetry, 0.1)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(CdmCollector(lambda: snapshot))
    return registry


def label_form(name: str) -> str:
    """A name as its label value: itself (cut with a hash beyond MAX_LABEL_VALUE characters), lone
    surrogates (no UTF-8 for them) as U+FFFD."""
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in label_value(name))


def exposed_job_names(text: str) -> set[str]:
    return {dict(lab)["job_name"] for lab in Exposition.parse(text).select("cdm_job_status")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=payloads)
def test_any_payload_reaches_a_valid_exposition(data: dict[str, Any]) -> None:
    view = build_view(data, 0)
    registry = registry_for((view,))
    text = generate_latest(registry).decode("utf-8")
    generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    # every job is exposed under its own name, whatever the name holds
    wanted = {label_form(job.name) for cluster in view.clusters for job in cluster.jobs}
    assert exposed_job_names(text) == wanted


def test_random_payload_expositions_pass_promtool() -> None:
    """Many examples become one exposition (one cluster each), linted by one promtool call."""
    require_prometheus_tools()
    views: list[TargetView] = []

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=payloads)
    def collect(data: dict[str, Any]) -> None:
        view = build_view(data, len(views))
        generate_latest(registry_for((view,)))  # the example alone must render
        # distinct cluster ids and project per example, so nothing is deduplicated away
        n = len(views)
        clusters = tuple(
            replace(c, cluster=replace(c.cluster, id=f"{n}-{i}-{c.cluster.id}"))
            for i, c in enumerate(view.clusters)
        )
        views.append(replace(view, project_id=f"{n:032x}", clusters=clusters))

    collect()
    assert len(views) > 50
    text = generate_latest(registry_for(tuple(views))).decode("utf-8")
    assert text.count("cdm_job_status{") > 100, "the examples held too few jobs to mean anything"
    ok, output = promtool_check_metrics(text)
    assert ok, output


# --- odd names through the simulator and a real scrape ----------------------------------------------

ODD_NAMES = [
    'say "hi"',
    "back\\slash",
    "new\nline",
    "crlf\r\nend",
    "tab\tx",
    "a/b",
    "/leading",
    "..",
    ".",
    "%",
    "100%25",
    "%2F",
    "a b+c",
    "?x#y&z=1",
    "semi;colon",
    "数据 迁移 🚀",
    "x" * 2000,
    ("é🚀/.." * 400)[:2000],
]
ODD_CLUSTER = 'cl"us\\ter\n/../%🚀'
ODD_USER = 'us"er\\x\n/..%😀 ' + "u" * 300
ODD_SUMMARY = 'boom "quoted" \\ back\nnext line 🚀 ' + "e" * 400


def test_odd_names_are_labels_cut_to_a_bound_and_whole_path_segments(exporter_server: ExporterServer) -> None:
    """Odd names are labels as they are up to MAX_LABEL_VALUE characters, cut (with a hash) beyond;
    the API paths carry every name whole, as one encoded segment."""
    clock = ManualClock(time.time())
    with Simulator(SimulatorSettings(clusters=1, jobs=2, rate_limit=0, clock=clock)) as sim:
        cluster = sim.world.add_cluster(name=ODD_CLUSTER, status="200", jobs=0)
        for name in ODD_NAMES:
            sim.world.add_job(cluster.id, name)
            sim.world.start_run(cluster.id, name, outcome="FAILED", duration=1)
        clock.advance(2)
        # one job's status carries odd user names and an odd error summary
        body = {
            "submissions": [
                {
                    "job-name": ODD_NAMES[0],
                    "status": "FAILED",
                    "submission-id": 7,
                    "creation-user": ODD_USER,
                    "last-update-user": ODD_USER[::-1],
                    "isStopingIncrement": '\\"\n',
                    "error-summary": ODD_SUMMARY,
                }
            ]
        }
        sim.add_fault(
            Fault(
                endpoint="job_status",
                cluster_id=cluster.id,
                job_name=ODD_NAMES[0],
                status=200,
                body=json.dumps(body),
                content_type="application/json",
            )
        )
        config = Config(targets=(sim_target(sim, "odd"),), collection=CollectionConfig(history_interval=0))
        exporter_server.mount(Exporter(config))
        exporter_server.scrape(10)  # lists, statuses (wanting history for the failed runs)
        result = exporter_server.scrape(10)  # run histories
        exporter_server.mount(None)
        log = sim.stats.log

    assert result.status == 200
    exp = result.exposition
    ids = {"cluster_id": cluster.id, "cluster_name": ODD_CLUSTER}
    for name in ODD_NAMES:
        label = label_value(name)
        assert label == name or (len(name) > MAX_LABEL_VALUE and len(label) == MAX_LABEL_VALUE)
        assert exp.value("cdm_job_status", **ids, job_name=label, status="FAILED") == 1, name[:40]
        assert exp.value("cdm_job_refresh_timestamp_seconds", **ids, job_name=label) is not None, name[:40]
    assert exp.value("cdm_cluster_up", **ids) == 1
    info = exp.select("cdm_job_info", job_name=ODD_NAMES[0])
    assert len(info) == 1
    labels = dict(next(iter(info)))
    assert labels["creation_user"] == label_value(ODD_USER) != ODD_USER
    assert labels["last_update_user"] == label_value(ODD_USER[::-1])
    assert labels["stopping_increment"] == '\\"\n'
    errors = exp.select("cdm_job_error_info", job_name=ODD_NAMES[0])
    assert [dict(lab)["error_summary"] for lab in errors] == [ODD_SUMMARY[:256]]

    # each name went out as exactly one encoded path segment (and once as the jname parameter)
    prefix = f"/v1.1/{sim.settings.project_id}/clusters/{cluster.id}/cdm/job/"
    status_paths = [r.path for r in log if r.endpoint == "job_status" and r.path.startswith(prefix)]
    segments = set()
    for path in status_paths:
        rest = path[len(prefix) :]
        segment, _, tail = rest.partition("/")
        assert tail == "status", path
        assert set(segment) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%"), (
            path
        )
        assert segment not in (".", ".."), path
        segments.add(unquote(segment))
    assert segments == set(ODD_NAMES)
    jnames = {
        parse_qs(r.query, keep_blank_values=True)["jname"][0]
        for r in log
        if r.endpoint == "submissions" and f"/clusters/{cluster.id}/" in r.path
    }
    assert jnames == set(ODD_NAMES)
    assert not [r for r in log if r.endpoint in ("unknown", "invalid")], "a request missed its route"

    require_prometheus_tools()
    ok, output = promtool_check_metrics(result.body)
    assert ok, output


def test_lone_surrogate_and_huge_numbers_break_neither_scrape_nor_check(
    exporter_server: ExporterServer, tmp_path: Path
) -> None:
    """A ``"\\ud800"`` escape in a job name and a 401-digit counter, as the API could send them
    (both once made every scrape fail with 500, and ``check`` crash while printing)."""
    huge = "1" + "0" * 400
    page = (
        '{"total": 2, "page_no": 1, "page_size": 100, "jobs": ['
        '{"name": "bad\\ud800name", "status": "RUNNING"}, {"name": "good", "status": "SUCCEEDED"}]}'
    )
    status = (
        '{"submissions": [{"job-name": "good", "status": "SUCCEEDED", "submission-id": ' + huge + ", "
        '"write_rows": ' + huge + ', "counters": {"' + models.COUNTERS_KEY + '": {"ROWS_READ": ' + huge + ", "
        '"ROWS_WRITTEN": 12}}}]}'
    )
    with Simulator(SimulatorSettings(clusters=1, jobs=1, rate_limit=0)) as sim:
        cluster = sim.world.clusters()[0]
        sim.add_fault(Fault(endpoint="list_jobs", status=200, body=page, content_type="application/json"))
        sim.add_fault(
            Fault(
                endpoint="job_status",
                job_name="good",
                status=200,
                body=status,
                content_type="application/json",
            )
        )
        exporter_server.mount(Exporter(Config(targets=(sim_target(sim, "odd"),))))
        exporter_server.scrape(5)
        result = exporter_server.scrape(5)
        exporter_server.mount(None)

        document = {
            "targets": [target(endpoint=sim.url, iam_endpoint=sim.url, auth={"token": sim.settings.token})]
        }
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        checked = run_cli("check", "--config.file", str(path), "--timeout", "10")

    assert result.status == 200, result.body[:300]
    exp = result.exposition
    ids = {"cluster_id": cluster.id, "cluster_name": cluster.name}
    assert exp.value("cdm_job_status", **ids, job_name="bad\ufffdname", status="RUNNING") == 1
    assert exp.value("cdm_job_status", **ids, job_name="good", status="SUCCEEDED") == 1
    assert exp.value("cdm_job_written_rows", **ids, job_name="good") == 12
    assert exp.value("cdm_job_read_rows", **ids, job_name="good") is None  # no float holds it
    assert exp.value("cdm_job_submission_id", **ids, job_name="good") is None
    assert exp.value("cdm_cluster_up", **ids) == 1

    # the odd name cannot be asked for (its replacement character names no job): check prints
    # what the list said and names the job the API answered as not existing
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "bad\ufffdname" in checked.stdout and "good" in checked.stdout
    assert "GONE: 1 job listed, then answered as not existing" in checked.stdout


# --- broken configuration through the real command line ------------------------------------------------


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDM_EXPORTER_", "HUAWEICLOUD_SDK_"))}
    return subprocess.run(
        [sys.executable, "-m", "cdm_exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


def target(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "t",
        "region": "cn-north-4",
        "project_id": "0123456789abcdef0123456789abcdef",
        "endpoint": "http://127.0.0.1:9",
        "iam_endpoint": "http://127.0.0.1:9",
        "auth": {"token": "S3CRET-TOKEN-xyz"},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-key", {"targets": [target(regoin="cn-north-4")]}, "targets[0].regoin"),
    ("missing-project-id", {"targets": [target(project_id=None)]}, "targets[0].project_id"),
    (
        "two-auth-modes",
        {"targets": [target(auth={"token": "S3CRET-TOKEN-xyz", "password": {"domain": "d", "user": "u"}})]},
        "targets[0].auth",
    ),
    ("wrong-type", {"targets": [target()], "collection": {"concurrency": "many"}}, "collection.concurrency"),
    (
        "unreadable-secret-file",
        {"targets": [target(auth={"token_file": "/nonexistent/cdm-exporter/token"})]},
        "targets[0].auth.token_file",
    ),
    (
        "line-break-in-user",
        {"targets": [target(auth={"password": {"domain": "d", "user": "a\nb", "password": "S3CRET-PW"}})]},
        "targets[0].auth.password.user",
    ),
    ("blank-token", {"targets": [target(auth={"token": "   "})]}, "targets[0].auth.token"),
]


@pytest.mark.parametrize("command", ["serve", "check"])
@pytest.mark.parametrize(
    ("document", "key"), [(d, k) for _, d, k in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, command: str, document: dict[str, Any], key: str
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    extra = ["--web.listen-address", "127.0.0.1:0"] if command == "serve" else []
    result = run_cli(command, "--config.file", str(path), *extra)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0] and lines[0].startswith("cdm-exporter: error:"), lines[0]
    assert "S3CRET" not in result.stderr


def test_a_secret_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=1, rate_limit=0)) as sim:
        secret = tmp_path / "token"
        secret.write_text(sim.settings.token + "\n")
        secret.chmod(0o644)
        document = {
            "targets": [target(endpoint=sim.url, iam_endpoint=sim.url, auth={"token_file": str(secret)})]
        }
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        result = run_cli("check", "--config.file", str(path), "--timeout", "20")
    assert result.returncode == 0, result.stderr
    warnings = [
        line for line in result.stderr.splitlines() if "level=warning" in line and "token_file" in line
    ]
    assert warnings and "readable by group or others" in warnings[0], result.stderr
    assert str(secret) in warnings[0]

    secret.chmod(0o600)
    quiet = run_cli("check", "--config.file", str(path), "--timeout", "1")
    assert "readable by group or others" not in quiet.stderr
