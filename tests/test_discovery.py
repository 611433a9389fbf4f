"""Account-wide discovery (``polling/discovery.py``): one ``projects: all`` target finds every
project its credential may use and polls CDM in each, against the multi-region simulator.

Through the real command line (``check`` in-process with click's runner, ``serve`` as a process):
three projects in two regions, one region without CDM, in every auth mode; a project added at run
time and one removed; a region that fails while the others keep working. In-process with injected
clocks: the budget scope, set-aside projects and their recheck, a failing IAM listing, DNS failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from exporter_stack import Exposition, scrape, wait_until
from prometheus_server import free_port, promtool_check_metrics, require_prometheus_tools

from cdm_exporter.api.errors import AuthError, NameNotResolved, NotFound, ServerError
from cdm_exporter.cli import cli
from cdm_exporter.config import BudgetConfig, CollectionConfig, Config, parse_config
from cdm_exporter.polling.discovery import FORBIDDEN, NOT_OFFERED, unavailable_reason
from cdm_exporter.polling.state import TargetView
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings
from cdm_exporter.storage.file_store import FileStore

#: three projects in two regions: cn-north-4 and its sub-project with CDM, ap-southeast-3 without
ACCOUNT: dict[str, Any] = {"extra_projects": ("cn-north-4_dev",), "regions_without_cdm": ("ap-southeast-3",)}
#: two regions with CDM
TWO_REGIONS: dict[str, Any] = {"extra_projects": ("cn-north-4_dev", "ap-southeast-1")}
AUTH_MODES = ("password", "aksk", "token")


def auth_of(mode: str, sim: Simulator) -> dict[str, Any]:
    s = sim.settings
    modes: dict[str, dict[str, Any]] = {
        "password": {"password": {"domain": s.iam_domain, "user": s.iam_user, "password": s.iam_password}},
        "aksk": {"aksk": {"access_key": s.access_key, "secret_key": s.secret_key}},
        "token": {"token": s.token},
    }
    return modes[mode]


def account_target(sim: Simulator, mode: str = "aksk") -> dict[str, Any]:
    """One target for the whole simulated account: IAM on the primary port, each region's CDM on its own."""
    return {
        "name": "account",
        "projects": "all",
        "iam_endpoint": sim.url,
        "region_endpoints": {region: sim.region_url(region) for region in sim.projects.regions},
        "auth": auth_of(mode, sim),
    }


def write_config(path: Path, sim: Simulator, mode: str = "aksk", **collection: object) -> Path:
    path.write_text(
        yaml.safe_dump({"targets": [account_target(sim, mode)], "collection": collection or None})
    )
    path.chmod(0o600)
    return path


def project_id(sim: Simulator, name: str) -> str:
    found = sim.projects.by_name(name)
    assert found is not None, name
    return found.id


def run_check(config: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["check", "--config.file", str(config)], env={}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@contextlib.contextmanager
def serving(config: Path) -> Iterator[str]:
    """``cdm-exporter serve`` as a process; yields its base URL; stopped with SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "cdm_exporter", "serve", "--config.file", str(config)),
            *("--web.listen-address", f"127.0.0.1:{port}", "--log.format", "json"),
        ],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/-/healthy"), 30, "the exporter did not start")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def metrics_when(url: str, check: Any, timeout: float = 45.0, message: str = "") -> Exposition:
    """Scrape ``url`` until ``check(exposition)`` holds; the last scrape's exposition."""
    found: list[Exposition] = []

    def attempt() -> bool:
        result = scrape(url, 5.0)
        assert result.status == 200, result.body
        found[:] = [result.exposition]
        return bool(check(result.exposition))

    wait_until(attempt, timeout, message or f"{url} never showed what was expected")
    return found[0]


# --- the whole account from one target entry -------------------------------------------------------


@pytest.fixture
def account() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=2, jobs=3, rate_limit=0, time_scale=60, **ACCOUNT)) as sim:
        yield sim


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_check_discovers_three_projects_in_two_regions_from_one_target(
    tmp_path: Path, account: Simulator, mode: str
) -> None:
    code, out, err = run_check(write_config(tmp_path / "c.yml", account, mode))
    assert code == 0, out + err  # set-aside projects are not failures
    # IAM lists the three projects and one without a name (the documented example has one)
    assert "target account: 4 project(s) listed by IAM, 3 selected" in out
    primary, dev, without = (
        project_id(account, n) for n in ("cn-north-4", "cn-north-4_dev", "ap-southeast-3")
    )
    assert f"target account/cn-north-4 (region cn-north-4, project {primary}): up" in out
    assert (
        f"target account/ap-southeast-3 (region ap-southeast-3, project {without}): "
        "set aside, CDM is not offered in its region"
    ) in out
    dev_line = f"target account/cn-north-4_dev (region cn-north-4, project {dev}): "
    if mode == "token":
        # a fixed token is scoped to one project: the others refuse it
        assert dev_line + "set aside, the credential may not use CDM there" in out
        polled = [primary]
    else:
        # a project-scoped token per project, or X-Project-Id on every signed request
        assert dev_line + "up" in out
        polled = [primary, dev]
    for pid in polled:
        world = account.projects.world(pid)
        for cluster in world.clusters():
            assert f"cluster {cluster.name} ({cluster.id})" in out
            for job in world.jobs(cluster.id):
                assert job.name in out
    for secret in (account.settings.iam_password, account.settings.secret_key):
        assert secret not in out + err


def test_check_records_the_project_listing_without_secrets(tmp_path: Path, account: Simulator) -> None:
    record = tmp_path / "record.jsonl"
    config = write_config(tmp_path / "c.yml", account, "password")
    result = CliRunner().invoke(
        cli, ["check", "--config.file", str(config), "--record", str(record)], env={}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    text = record.read_text()
    endpoints = [json.loads(line).get("endpoint") for line in text.splitlines()[1:]]
    assert endpoints.count("iam_projects") == 1
    assert {"iam_token", "list_clusters"} <= set(endpoints)
    assert account.settings.iam_password not in text
    for issued in ("MIIsim",):  # every IAM-issued token starts so
        assert issued not in text


def test_the_readme_example_works_with_the_sdks_endpoint_variables(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = re.search(r"give `projects: all`\n.*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    config = yaml.safe_load(example.group(1))
    aksk = config["targets"][0]["auth"]["aksk"]
    settings = SimulatorSettings(
        clusters=1, jobs=1, rate_limit=0, access_key=aksk["access_key"], **TWO_REGIONS
    )
    with Simulator(settings) as sim:
        (tmp_path / "config.yml").write_text(example.group(1))
        (tmp_path / aksk["secret_key_file"]).write_text(settings.secret_key)
        for path in tmp_path.iterdir():
            path.chmod(0o600)
        # the variables Huawei's SDKs read choose IAM's and each region's endpoint
        env = {"HUAWEICLOUD_SDK_IAM_ENDPOINT": sim.url}
        env |= {
            f"HUAWEICLOUD_SDK_REGION_CDM_{r.upper().replace('-', '_')}": sim.region_url(r)
            for r in sim.projects.regions
        }
        result = CliRunner().invoke(
            cli, ["check", "--config.file", str(tmp_path / "config.yml")], env=env, catch_exceptions=False
        )
    assert result.exit_code == 0, result.output
    for name in ("cn-north-4", "cn-north-4_dev", "ap-southeast-1"):
        assert (
            f"target account/{name} (region {name.split('_')[0]}, project {project_id(sim, name)}): up"
            in result.stdout
        )


def test_check_fails_when_the_projects_cannot_be_listed(tmp_path: Path, account: Simulator) -> None:
    config = write_config(tmp_path / "c.yml", account, "password")
    config.write_text(config.read_text().replace(account.settings.iam_password, "wrong-password"))
    code, out, err = run_check(config)
    assert code == 1
    assert "target account: listing its projects FAILED" in out
    assert "iam_token HTTP 401" in out  # the domain-scoped token was refused
    assert "wrong-password" not in out + err


def test_serve_exports_every_discovered_project(tmp_path: Path, account: Simulator) -> None:
    require_prometheus_tools()
    names = {project_id(account, n): n for n in ("cn-north-4", "cn-north-4_dev", "ap-southeast-3")}
    regions = {pid: name.split("_")[0] for pid, name in names.items()}
    with serving(write_config(tmp_path / "c.yml", account, "password")) as base:

        def complete(e: Exposition) -> bool:
            return all(
                e.value("cdm_project_info", project_id=p, project_name=n, region=regions[p]) == 1
                for p, n in names.items()
            ) and all(e.value("cdm_up", project_id=p, region=regions[p]) is not None for p in names)

        exposition = metrics_when(f"{base}/metrics", complete)
        probe = scrape(f"{base}/probe?target=account", 5.0)
    primary, dev, without = names
    assert exposition.value("cdm_up", project_id=primary, region="cn-north-4") == 1
    assert exposition.value("cdm_up", project_id=dev, region="cn-north-4") == 1
    assert exposition.value("cdm_up", project_id=without, region="ap-southeast-3") == 0
    set_aside = {labels: v for labels, v in exposition.select("cdm_project_unavailable").items() if v == 1}
    assert set_aside == {
        frozenset({"project_id": without, "region": "ap-southeast-3", "reason": "not_offered"}.items()): 1.0
    }
    assert len(exposition.select("cdm_project_unavailable")) == 2 * 3  # both reasons for every project
    assert exposition.value("cdm_project_discovery_up", target="account") == 1
    # both projects' clusters, each under its own project
    for pid in (primary, dev):
        for cluster in account.projects.world(pid).clusters():
            info = exposition.select("cdm_cluster_info", cluster_id=cluster.id)
            assert [dict(labels)["project_id"] for labels in info] == [pid]
    passed, output = promtool_check_metrics(exposition.text)
    assert passed, output
    # /probe?target=NAME still selects the configured target: all of its projects
    assert probe.status == 200
    assert {dict(labels)["project_id"] for labels in probe.exposition.select("cdm_up")} == set(names)


# --- projects that come and go ---------------------------------------------------------------------


def test_a_project_added_at_run_time_is_polled_and_a_removed_one_drops_its_series(tmp_path: Path) -> None:
    settings = SimulatorSettings(clusters=1, jobs=2, rate_limit=0, time_scale=60, **TWO_REGIONS)
    with Simulator(settings) as sim:
        config = write_config(
            tmp_path / "c.yml", sim, "aksk", discovery_interval="1s", job_list_interval="1s"
        )
        with serving(config) as base:
            metrics = f"{base}/metrics"
            metrics_when(metrics, lambda e: len(e.select("cdm_project_info")) == 3)

            # the simulator's admin API, as an operator's script would use it
            added = requests.post(
                f"{sim.url}/_sim/projects",
                json={"name": "ap-southeast-1_new", "clusters": 1, "jobs": 2},
                timeout=10,
            ).json()
            new_cluster = sim.projects.world(added["id"]).clusters()[0]
            exposition = metrics_when(
                metrics,
                lambda e: (
                    e.value("cdm_up", project_id=added["id"], region="ap-southeast-1") == 1
                    and len(e.select("cdm_job_status", cluster_id=new_cluster.id)) > 0
                ),
                message="the added project was never polled",
            )
            assert (
                exposition.value(
                    "cdm_project_info",
                    project_id=added["id"],
                    project_name="ap-southeast-1_new",
                    region="ap-southeast-1",
                )
                == 1
            )
            assert exposition.select("cdm_cluster_info", cluster_id=new_cluster.id, project_id=added["id"])

            removed = project_id(sim, "cn-north-4_dev")
            removed_clusters = [c.id for c in sim.projects.world(removed).clusters()]
            assert requests.delete(f"{sim.url}/_sim/projects/{removed}", timeout=10).status_code == 200

            def gone(e: Exposition) -> bool:
                return removed not in e.text and not any(c in e.text for c in removed_clusters)

            exposition = metrics_when(metrics, gone, message="the removed project's series stayed")
            assert len(exposition.select("cdm_project_info")) == 3  # the others are all still there
            assert exposition.total("cdm_up") == 3


def test_a_failing_region_does_not_touch_the_others(tmp_path: Path) -> None:
    settings = SimulatorSettings(clusters=1, jobs=3, rate_limit=0, time_scale=60, **TWO_REGIONS)
    with Simulator(settings) as sim:
        config = write_config(
            tmp_path / "c.yml",
            sim,
            "password",
            read_timeout="1s",
            discovery_interval="1s",
            job_list_interval="1s",
            default_scrape_timeout="4s",
        )
        ids = {name: project_id(sim, name) for name in ("cn-north-4", "cn-north-4_dev", "ap-southeast-1")}
        with serving(config) as base:
            metrics = f"{base}/metrics"
            metrics_when(metrics, lambda e: e.total("cdm_up") == 3)
            # every CDM request of the ap-southeast-1 project hangs from now on
            requests.post(
                f"{sim.url}/_sim/faults",
                json={"endpoint": "*", "kind": "hang", "project_id": ids["ap-southeast-1"]},
                timeout=10,
            )
            failing = metrics_when(
                metrics,
                lambda e: e.value("cdm_up", project_id=ids["ap-southeast-1"], region="ap-southeast-1") == 0,
            )
            healthy = [ids["cn-north-4"], ids["cn-north-4_dev"]]
            for pid in healthy:
                assert failing.value("cdm_up", project_id=pid, region="cn-north-4") == 1
            cluster_ids = [c.id for pid in healthy for c in sim.projects.world(pid).clusters()]

            def newest_refresh(e: Exposition) -> float:
                return max(
                    (
                        v
                        for c in cluster_ids
                        for v in e.select("cdm_job_refresh_timestamp_seconds", cluster_id=c).values()
                    ),
                    default=0.0,
                )

            before = newest_refresh(failing)
            # the healthy projects keep being refreshed, and every scrape answers in time
            later = metrics_when(
                metrics, lambda e: newest_refresh(e) > before, message="healthy projects froze"
            )
            assert all(later.value("cdm_up", project_id=pid, region="cn-north-4") == 1 for pid in healthy)
            timed = scrape(f"{base}/metrics", 4.0)
            assert timed.status == 200 and timed.elapsed < 4.0 + 2.0


# --- in-process, with injected clocks ----------------------------------------------------------------


def discovery_config(sim: Simulator, mode: str = "aksk", **collection: Any) -> Config:
    return parse_config({"targets": [account_target(sim, mode)], "collection": collection or None})


def list_calls(sim: Simulator, pid: str) -> int:
    return sim.stats.paths("list_clusters").count(f"/v1.1/{pid}/clusters")


@pytest.mark.parametrize("scope", ["credential", "region"])
def test_the_budget_is_one_per_credential_across_regions_unless_scoped_by_region(
    manual_clock: ManualClock, scope: str
) -> None:
    settings = SimulatorSettings(
        clusters=2, jobs=8, rate_limit=0, clock=manual_clock, extra_projects=("ap-southeast-1",)
    )
    with Simulator(settings) as sim:
        config = discovery_config(sim, "aksk", budget_scope=scope)
        config = Config(
            config.targets,
            CollectionConfig(budget_per_minute=BudgetConfig(job_status=5, common=5), budget_scope=scope),
        )
        exporter = Exporter(config, wall=manual_clock, mono=manual_clock, pacing="off")
        try:
            # 4 simulated minutes: with 5 common calls a minute shared by both regions, their two
            # cluster lists and twelve job lists take about three before any status call is due
            for _ in range(48):
                exporter.collect(10.0)
                manual_clock.advance(5.0)
            views = exporter.snapshot().targets
        finally:
            exporter.close()
    assert {view.region for view in views if view.up} == {"cn-north-4", "ap-southeast-1"}
    peak = {
        policy: sim.stats.max_per_minute.get((policy, settings.access_key), 0)
        for policy in ("job_status", "common")
    }
    assert peak["job_status"] > 0, peak  # the lists were done and statuses fetched
    if scope == "credential":
        # the safe reading: both regions together never exceed what one credential may send
        assert max(peak.values()) <= 5, peak
    else:
        # one budget per region: together they go beyond one budget
        assert peak["job_status"] > 5, peak


def test_reloads_keep_a_projects_targets_budget_and_what_it_knows(manual_clock: ManualClock) -> None:
    """Reloads that change only the collection settings: the projects keep their state (a set-aside
    one stays set aside, the listing is not repeated) and draw from the same buckets, so however
    many reloads, no rolling minute exceeds the budget."""
    settings = SimulatorSettings(clusters=2, jobs=8, rate_limit=0, clock=manual_clock, **ACCOUNT)
    with Simulator(settings) as sim:
        without = project_id(sim, "ap-southeast-3")
        a = discovery_config(
            sim, "aksk", budget_per_minute={"job_status": 20, "common": 20}, unavailable_recheck_interval="1h"
        )
        b = dataclasses.replace(
            a, collection=dataclasses.replace(a.collection, concurrency=2, read_timeout=5)
        )
        exporter = Exporter(a, wall=manual_clock, mono=manual_clock, pacing="off")

        def listed() -> bool:  # every project that answers has its jobs listed
            exporter.collect(10.0)
            manual_clock.advance(5.0)
            up = [v for v in exporter.snapshot().targets if v.unavailable is None]
            return len(up) == 2 and all(c.jobs for v in up for c in v.clusters)

        try:
            wait_until(listed, 120, "the projects' jobs were never listed")
            listings = sim.stats.count("iam_projects")
            for round_ in range(10):
                known = exporter.snapshot().targets
                exporter.apply(b if round_ % 2 == 0 else a)
                assert exporter.snapshot().targets == known  # nothing forgotten by the reload
                exporter.collect(5.0)
                manual_clock.advance(5.0)
            views = {view.project_id: view for view in exporter.snapshot().targets}
        finally:
            exporter.close()
    assert views[without].unavailable == NOT_OFFERED
    assert list_calls(sim, without) == 1  # set aside at first contact, not retried by a reload
    assert sim.stats.count("iam_projects") == listings == 1
    assert any(view.up for view in views.values())
    peak = {
        policy: sim.stats.max_per_minute[(policy, settings.access_key)] for policy in ("job_status", "common")
    }
    assert 0 < max(peak.values()) <= 20, peak


def test_a_set_aside_project_is_logged_once_and_rechecked_rarely(
    manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SimulatorSettings(clusters=1, jobs=2, rate_limit=0, clock=manual_clock, **ACCOUNT)
    with Simulator(settings) as sim:
        dev, without = project_id(sim, "cn-north-4_dev"), project_id(sim, "ap-southeast-3")
        # the sub-project refuses the credential at first contact, once
        sim.add_fault(Fault("list_clusters", status=403, project_id=dev, count=1))
        config = discovery_config(sim, "aksk", unavailable_recheck_interval="1h")
        exporter = Exporter(config, wall=manual_clock, mono=manual_clock, pacing="off")
        caplog.set_level(logging.INFO, logger="cdm_exporter.polling.discovery")
        try:
            for _ in range(6):
                exporter.collect(10.0)
                manual_clock.advance(60.0)
            views = {view.project_id: view for view in exporter.snapshot().targets}
            assert views[without].unavailable == NOT_OFFERED and views[without].up is False
            assert views[dev].unavailable == FORBIDDEN
            assert list_calls(sim, without) == 1 and list_calls(sim, dev) == 1  # not retried meanwhile
            aside = [r for r in caplog.records if r.getMessage().startswith("project set aside")]
            assert sorted(r.__dict__["reason"] for r in aside) == [FORBIDDEN, NOT_OFFERED]

            manual_clock.advance(3600.0)  # the recheck is due: one call each
            exporter.collect(10.0)
            views = {view.project_id: view for view in exporter.snapshot().targets}
        finally:
            exporter.close()
    assert list_calls(sim, without) == 2
    assert views[without].unavailable == NOT_OFFERED
    # the fault was used up: the sub-project answers now and is polled like the others
    assert views[dev].unavailable is None and views[dev].up is True
    assert len(views[dev].clusters) == 1
    assert len([r for r in caplog.records if r.getMessage().startswith("project set aside")]) == 2


def test_a_failing_listing_keeps_polling_the_known_projects(
    manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SimulatorSettings(clusters=1, jobs=2, rate_limit=0, clock=manual_clock, **TWO_REGIONS)
    with Simulator(settings) as sim:
        exporter = Exporter(
            discovery_config(sim, "password", discovery_interval="5m"),
            wall=manual_clock,
            mono=manual_clock,
            pacing="off",
        )
        try:
            exporter.collect(10.0)
            sim.add_fault(Fault("iam_projects", status=500))
            for _ in range(3):
                manual_clock.advance(301.0)
                exporter.collect(10.0)
            snapshot = exporter.snapshot()
        finally:
            exporter.close()
    (discovery,) = snapshot.discoveries
    assert discovery.up is False and discovery.error is not None and "HTTP 500" in discovery.error
    assert [view.up for view in snapshot.targets] == [True, True, True]
    # logged once, not once per collection
    failed = [
        r
        for r in caplog.records
        if r.getMessage() == "API call failed" and r.__dict__.get("scope") == "iam_projects"
    ]
    assert len(failed) == 1


def test_a_disabled_project_is_dropped(manual_clock: ManualClock) -> None:
    settings = SimulatorSettings(clusters=1, jobs=2, rate_limit=0, clock=manual_clock, **TWO_REGIONS)
    with Simulator(settings) as sim:
        exporter = Exporter(
            discovery_config(sim, "password", discovery_interval="1m"),
            wall=manual_clock,
            mono=manual_clock,
            pacing="off",
        )
        try:
            exporter.collect(10.0)
            before = {view.project_name for view in exporter.snapshot().targets}
            sim.projects.set_enabled(project_id(sim, "ap-southeast-1"), False)
            manual_clock.advance(61.0)
            exporter.collect(10.0)
            after = {view.project_name for view in exporter.snapshot().targets}
        finally:
            exporter.close()
    assert before == {"cn-north-4", "cn-north-4_dev", "ap-southeast-1"}
    assert after == {"cn-north-4", "cn-north-4_dev"}


def test_a_region_whose_endpoint_does_not_resolve_is_set_aside(
    manual_clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests send nothing beyond loopback, so the resolver is told the answer a DNS server
    # gives for a region without CDM; requests, urllib3 and the exporter run for real.
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".cdm.test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    settings = SimulatorSettings(
        clusters=1, jobs=2, rate_limit=0, clock=manual_clock, extra_projects=("ap-southeast-1",)
    )
    with Simulator(settings) as sim:
        target = {
            **account_target(sim),
            "region_endpoints": {"cn-north-4": sim.url},
            "endpoint": "http://cdm.{region}.cdm.test",
        }
        exporter = Exporter(
            parse_config({"targets": [target]}), wall=manual_clock, mono=manual_clock, pacing="off"
        )
        try:
            exporter.collect(10.0)
            views = {view.region: view for view in exporter.snapshot().targets}
        finally:
            exporter.close()
    assert views["cn-north-4"].up is True
    assert views["ap-southeast-1"].unavailable == NOT_OFFERED
    assert (
        views["ap-southeast-1"].error is not None
        and "name resolution failed" in views["ap-southeast-1"].error
    )


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NameNotResolved("list_clusters", "name resolution failed"), NOT_OFFERED),
        (NotFound("list_clusters", "no such API", status=404, code="APIGW.0101"), NOT_OFFERED),
        (AuthError("list_clusters", "project mismatch", status=403, code="APIGW.0302"), FORBIDDEN),
        (AuthError("list_clusters", "no permission", status=400, code="Cdm.0032"), FORBIDDEN),
        (AuthError("iam_token", "no role in the project", status=401), FORBIDDEN),
        (ServerError("list_clusters", "down", status=503), None),
        (NameNotResolved("iam_token", "name resolution failed"), None),  # IAM's host, not the region's
    ],
)
def test_which_first_failures_set_a_project_aside(error: Exception, reason: str | None) -> None:
    assert unavailable_reason(error) == reason  # type: ignore[arg-type]


def test_a_restarted_projects_target_serves_its_projects_from_the_state_file(
    manual_clock: ManualClock, tmp_path: Path
) -> None:
    """With ``--storage.path``, the discovery results and every discovered project's state are
    stored: a restarted exporter serves the same projects (a set-aside one still set aside) with
    their jobs before it sends a single call, IAM's project list included."""
    settings = SimulatorSettings(clusters=2, jobs=4, rate_limit=0, clock=manual_clock, **ACCOUNT)
    path = tmp_path / "state.db"
    with Simulator(settings) as sim:
        config = discovery_config(sim, "aksk", unavailable_recheck_interval="1h")
        first = Exporter(
            config,
            wall=manual_clock,
            mono=manual_clock,
            store=FileStore(path),
            store_interval=0.1,
            pacing="off",
        )

        def listed() -> bool:
            first.collect(10.0)
            manual_clock.advance(5.0)
            up = [v for v in first.snapshot().targets if v.unavailable is None]
            return len(up) == 2 and all(c.jobs for v in up for c in v.clusters)

        try:
            wait_until(listed, 120, "the projects' jobs were never listed")
            known = first.snapshot()
        finally:
            first.close()  # the last write
        calls = sim.stats.count()
        second = Exporter(
            config,
            wall=manual_clock,
            mono=manual_clock,
            store=FileStore(path),
            store_interval=0.1,
            pacing="off",
        )
        try:
            restored = second.snapshot()
            assert sim.stats.count() == calls  # nothing asked of the API yet

            def clusters_of(view: TargetView) -> list[tuple[str, int]]:
                return sorted((c.cluster.id, len(c.jobs)) for c in view.clusters)

            def seen(views: tuple[TargetView, ...]) -> set[tuple[object, ...]]:
                return {
                    (v.name, v.project_id, v.project_name, v.unavailable, v.up, *clusters_of(v))
                    for v in views
                }

            assert seen(restored.targets) == seen(known.targets)
            assert {v.unavailable for v in restored.targets} == {None, NOT_OFFERED}
            assert [d.selected for d in restored.discoveries] == [3]
            second.collect(10.0)  # the listing is recent: the known projects are polled, not listed
            assert sim.stats.count("iam_projects") == 1
        finally:
            second.close()
