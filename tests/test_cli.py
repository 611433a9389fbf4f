"""The command line: serve, check and demo as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from exporter_stack import LATE, wait_until
from live_stack import run_job
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import free_port
from sim_targets import sim_target

from cdm_exporter.cli import cli
from cdm_exporter.cli.service import Service
from cdm_exporter.config import Config
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings


def write_config(path: Path, sim: Simulator, **extra: object) -> Path:
    target = {
        "name": "sim",
        "region": sim.settings.region,
        "project_id": sim.settings.project_id,
        "endpoint": sim.url,
        "iam_endpoint": sim.url,
        "auth": {
            "password": {
                "domain": sim.settings.iam_domain,
                "user": sim.settings.iam_user,
                "password": sim.settings.iam_password,
            }
        },
        **extra,
    }
    path.write_text(yaml.safe_dump({"targets": [target]}))
    return path


def wait_for(url: str, check: object = None, timeout: float = 30.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(url, timeout=10)
            if response.status_code == 200 and (check is None or check(response.text)):  # type: ignore[operator]
                return response
        except requests.ConnectionError as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer as expected within {timeout} s ({last})")


def statuses(text: str) -> set[str]:
    return {
        s.labels["status"]
        for family in text_string_to_metric_families(text)
        if family.name == "cdm_job_status"
        for s in family.samples
        if s.value == 1
    }


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=2, jobs=5, rate_limit=0, time_scale=60)) as simulator:
        yield simulator


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env or {}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# --- bad flags and configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--web.listen-address", "nonsense"], "--web.listen-address"),
        (["serve", "--log.level", "loud"], "--log.level"),
        (["serve", "--log.format", "xml"], "--log.format"),
        (["serve", "--web.telemetry-path", "metrics"], "--web.telemetry-path"),
        (["serve", "--config.file", "/does/not/exist.yml"], "not found"),
        (["check", "--timeout", "0"], "--timeout"),
        (["serve", "--no-such-flag"], "--no-such-flag"),
        (["demo", "--web.listen-address", "127.0.0.1:99999"], "HOST:PORT"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args: list[str], needle: str) -> None:
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    assert needle in err


def test_no_config_and_no_environment_says_what_to_provide() -> None:
    code, _, err = run_cli("serve")
    assert code == 2
    assert "HUAWEICLOUD_SDK_AK" in err and "--config.file" in err


def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path: Path, sim: Simulator) -> None:
    path = write_config(tmp_path / "c.yml", sim, regoin="x")
    code, out, err = run_cli("check", "--config.file", str(path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "targets[0].regoin" in lines[0] and "did you mean 'region'" in lines[0]


def test_bad_web_config_exits_2_naming_the_key(tmp_path: Path, sim: Simulator) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: not-a-bcrypt-hash\n")
    code, _, err = run_cli(
        "serve", "--config.file", str(write_config(tmp_path / "c.yml", sim)), "--web.config.file", str(web)
    )
    assert code == 2
    assert "basic_auth_users.alice" in err


# --- check ---------------------------------------------------------------------------------------


def test_check_prints_the_jobs_and_exits_0_when_all_worked(tmp_path: Path, sim: Simulator) -> None:
    first = sim.world.clusters()[0].id
    sim.world.add_job(first, "cli_failed")
    run_job(sim, first, "cli_failed", "FAILED", duration=1)  # at least one failed run to detail
    code, out, err = run_cli("check", "--config.file", str(write_config(tmp_path / "c.yml", sim)))
    assert code == 0, err
    assert "target sim" in out and ": up" in out
    assert "CLUSTER" in out and "STATUS" in out and "ROWS WRITTEN" in out
    for cluster in sim.world.clusters():
        for job in sim.world.jobs(cluster.id):
            assert job.name in out
    assert sim.settings.iam_password not in out + err
    failed = [
        (c.name, j)
        for c in sim.world.clusters()
        for j in sim.world.jobs(c.id)
        if j.latest is not None and j.latest.status == "FAILED"
    ]
    assert "cli_failed" in {job.name for _, job in failed}
    for cluster_name, job in failed:  # error details of failed runs are printed
        assert f"{cluster_name} / {job.name}: run" in out
        assert job.latest is not None and job.latest.error_summary
        assert job.latest.error_summary[:40] in out


def test_check_exits_1_when_a_target_fails(tmp_path: Path, sim: Simulator) -> None:
    path = write_config(tmp_path / "c.yml", sim)
    path.write_text(path.read_text().replace(sim.settings.iam_password, "wrong-password"))
    code, out, _ = run_cli("check", "--config.file", str(path), "--timeout", "10")
    assert code == 1
    assert "DOWN" in out
    assert "wrong-password" not in out


HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e\r"  # retitle, bell, clear screen, bidi override, CR


def test_check_escapes_terminal_control_characters_from_the_api(tmp_path: Path, sim: Simulator) -> None:
    cluster = sim.world.add_cluster(name=f"c{HOSTILE}x", status="200", jobs=0)
    sim.world.add_job(cluster.id, f"job{HOSTILE}y")
    broken = sim.world.clusters()[0]
    body = json.dumps({"error_code": "Cdm.0001", "error_msg": f"bad{HOSTILE}z"})
    sim.add_fault(Fault("list_jobs", status=400, cluster_id=broken.id, body=body))
    code, out, err = run_cli("check", "--config.file", str(write_config(tmp_path / "c.yml", sim)))
    assert code == 1, err  # the broken cluster
    for char in "\x1b\x07\u202e\r":
        assert char not in out
    assert "c\\x1b]0;owned\\x07\\x1b[2J\\u202e\\x0dx" in out  # cluster line, shown not obeyed
    assert "job\\x1b]0;owned" in out  # job table
    assert "Cdm.0001: bad" in out  # the API's error text is shown, but its escapes are not


# --- serve and demo as processes -------------------------------------------------------------------


@dataclass
class Spawned:
    """A ``cdm_exporter`` process whose output goes to files: a pipe nobody reads until the process
    stops fills up with log lines (a failed run's is kilobytes) and blocks the process."""

    process: subprocess.Popen[str]
    out: Path
    err: Path

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)


def spawn(directory: Path, *args: str, env: dict[str, str] | None = None) -> Spawned:
    out, err = directory / "stdout", directory / "stderr"
    with out.open("w") as out_file, err.open("w") as err_file:  # the child has its own copies
        process = subprocess.Popen(
            [sys.executable, "-m", "cdm_exporter", *args],
            env={**os.environ, **(env or {})},
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
    return Spawned(process, out, err)


def stop(spawned: Spawned) -> tuple[int, str, str]:
    """SIGTERM; the exit code and output once the process ended."""
    spawned.send_signal(signal.SIGTERM)
    code = spawned.process.wait(timeout=30)
    return code, spawned.out.read_text(), spawned.err.read_text()


def test_serve_from_environment_only_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=3, rate_limit=0)) as aksk_sim:
        port = free_port()
        region_var = "HUAWEICLOUD_SDK_REGION_CDM_" + aksk_sim.settings.region.upper().replace("-", "_")
        process = spawn(
            tmp_path,
            "serve",
            env={
                "CDM_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}",  # the env twin of the flag
                "CDM_EXPORTER_LOG_FORMAT": "json",
                "HUAWEICLOUD_SDK_AK": aksk_sim.settings.access_key,
                "HUAWEICLOUD_SDK_SK": aksk_sim.settings.secret_key,
                "HUAWEICLOUD_SDK_PROJECT_ID": aksk_sim.settings.project_id,
                "HUAWEICLOUD_SDK_REGION": aksk_sim.settings.region,
                region_var: aksk_sim.url,
            },
        )
        try:
            settings = aksk_sim.settings
            up = f'cdm_up{{project_id="{settings.project_id}",region="{settings.region}"}} 1.0'
            wait_for(f"http://127.0.0.1:{port}/metrics", lambda text: up in text)
            process.send_signal(signal.SIGHUP)  # no file: the reload is refused, the process lives
            wait_for(f"http://127.0.0.1:{port}/-/healthy")
        finally:
            code, _, err = stop(process)
    assert code == 0, err
    assert '"msg": "stopped"' in err
    assert "no --config.file to reload" in err
    assert aksk_sim.settings.secret_key not in err


def test_a_signal_handed_to_another_thread_still_stops_the_service(sim: Simulator) -> None:
    """The kernel hands a process signal to any thread that does not block it, and serve has many.
    The main thread, waiting to stop, must still run the handler soon: waiting without a timeout,
    it once never did, and the process ignored SIGTERM (and SIGHUP) until something else woke it."""
    service = Service(Config(targets=(sim_target(sim),)))
    service.start("127.0.0.1:0")
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    bystander_waits = threading.Event()
    bystander = threading.Thread(target=bystander_waits.wait, name="bystander", daemon=True)
    bystander.start()
    fell_back: list[bool] = []

    def fall_back() -> None:  # wakes the main thread the other way, so that a failure does not hang
        fell_back.append(True)
        service.stop()

    def hand_sigterm_to_the_bystander() -> None:
        # the default SIGTERM handler would end pytest: only once the service's is installed
        wait_until(lambda: signal.getsignal(signal.SIGTERM) != saved[signal.SIGTERM], LATE, "no handler")
        assert bystander.ident is not None
        signal.pthread_kill(bystander.ident, signal.SIGTERM)

    fallback = threading.Timer(LATE, fall_back)
    sender = threading.Thread(target=hand_sigterm_to_the_bystander)
    try:
        fallback.start()
        sender.start()
        service.run_until_stopped()  # here, in the main thread, as the command runs it
    finally:
        fallback.cancel()
        sender.join(LATE)
        bystander_waits.set()
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert fell_back == [], "the SIGTERM was not handled until something else woke the main thread"


def test_serve_reloads_its_config_file_on_sighup(tmp_path: Path, sim: Simulator) -> None:
    path = write_config(tmp_path / "c.yml", sim)
    port = free_port()
    process = spawn(
        tmp_path, "serve", "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}"
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/-/ready")
        data = yaml.safe_load(path.read_text())
        data["targets"][0]["name"] = "renamed"
        path.write_text(yaml.safe_dump(data))
        process.send_signal(signal.SIGHUP)
        wait_for(f"http://127.0.0.1:{port}/", lambda text: "probe?target=renamed" in text)
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    assert "configuration reloaded" in err


def test_demo_is_lively_within_40_seconds(tmp_path: Path) -> None:
    port = free_port()
    process = spawn(tmp_path, "demo", "--web.listen-address", f"127.0.0.1:{port}")
    try:
        wanted = {"RUNNING", "SUCCEEDED", "FAILED"}
        text = wait_for(
            f"http://127.0.0.1:{port}/metrics", lambda text: wanted <= statuses(text), timeout=40
        ).text
    finally:
        code, out, err = stop(process)
    assert code == 0, err
    assert f"http://127.0.0.1:{port}/metrics" in out
    assert "CDM simulator:" in out and "Open " in out
    # one projects: all target finds two regions with CDM and sets the one without aside
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    info = [s.labels for s in samples if s.name == "cdm_project_info"]
    assert {labels["region"] for labels in info} == {"cn-north-4", "ap-southeast-1", "ap-southeast-3"}
    aside = [s.labels for s in samples if s.name == "cdm_project_unavailable" and s.value == 1]
    assert [(labels["region"], labels["reason"]) for labels in aside] == [("ap-southeast-3", "not_offered")]
    # the third cluster is stopped on purpose: the banner says so, the log does not alarm
    assert (
        "Cluster cdm-ingest-03 is stopped on purpose, to show a failing cluster: "
        'cdm_cluster_status{status="stopped"} 1 and cdm_cluster_up 0, and an info line in the log that '
        "its job list is unavailable.\n"
    ) in out
    unavailable = [line for line in err.splitlines() if "cdm-ingest-03" in line]
    assert unavailable, err
    assert all("level=info" in line for line in unavailable), unavailable
    assert 'msg="job list unavailable: cluster not normal"' in unavailable[0]
    assert "cluster_status=stopped" in unavailable[0]
    assert "error_details" not in err


# --- what an operator reads: logs, --help, a misspelt flag, the README's examples ---------------------


def scrape_until(url: str, check: Callable[[str], bool], timeout: float = 30.0) -> str:
    return wait_for(url, check, timeout).text


def test_serve_logs_each_failed_run_once_with_its_summary_and_no_stack_trace(
    tmp_path: Path, sim: Simulator
) -> None:
    port = free_port()
    process = spawn(
        tmp_path,
        "serve",
        "--config.file",
        str(write_config(tmp_path / "c.yml", sim)),
        "--web.listen-address",
        f"127.0.0.1:{port}",
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        scrape_until(url, lambda text: "FAILED" in statuses(text))
        for _ in range(3):
            requests.get(url, timeout=30)
    finally:
        code, _, err = stop(process)
    assert code == 0, err
    failed = [line for line in err.splitlines() if 'msg="job run failed"' in line]
    assert failed, err
    runs = [re.search(r"job_name=(\S+) submission_id=(\S+)", line) for line in failed]
    assert len({m.groups() for m in runs if m}) == len(failed)  # each failed run once
    for line in failed:
        assert "error_summary=" in line
        assert "error_details" not in line and "org.apache" not in line
    assert "job run error details" not in err  # that one is at debug level


def test_serve_does_not_send_a_refused_signature_again_at_every_scrape(tmp_path: Path) -> None:
    with Simulator(SimulatorSettings(clusters=1, jobs=2, rate_limit=0)) as aksk_sim:
        settings = aksk_sim.settings
        (tmp_path / "secret_key").write_text("not-the-secret-key")
        target = {
            "name": "prod",
            "region": settings.region,
            "project_id": settings.project_id,
            "endpoint": aksk_sim.url,
            "auth": {"aksk": {"access_key": settings.access_key, "secret_key_file": "secret_key"}},
        }
        path = tmp_path / "c.yml"
        path.write_text(yaml.safe_dump({"targets": [target]}))
        port = free_port()
        process = spawn(
            tmp_path, "serve", "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}"
        )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            down = f'cdm_up{{project_id="{settings.project_id}",region="{settings.region}"}} 0.0'
            scrape_until(url, lambda text: down in text)
            for _ in range(3):
                assert down in requests.get(url, timeout=30).text
        finally:
            code, _, err = stop(process)
        # CDM locks an access key after 5 bad signatures in a row; discovery_interval (5 min) apart
        assert aksk_sim.stats.responses == {("list_clusters", 401): 1}
    assert code == 0, err
    failed = [line for line in err.splitlines() if 'msg="API call failed"' in line]
    assert len(failed) == 1, err
    assert (
        'hint="check the access key and secret key of target prod: targets[0].auth.aksk.access_key and '
        'targets[0].auth.aksk.secret_key_file" retry_in_seconds=300.0'
    ) in failed[0]
    assert "None" not in failed[0]


@pytest.mark.parametrize("command", ["serve", "check", "demo"])
def test_help_shows_the_environment_variable_of_every_option(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cdm_exporter", command, "--help"], capture_output=True, text=True, check=True
    )
    flags = re.findall(r"^  (--[a-z][a-z.-]+)", result.stdout, re.MULTILINE)
    assert "--log.level" in flags and len(flags) >= 3
    text = " ".join(result.stdout.split())
    for flag in flags:
        variable = "CDM_EXPORTER_" + flag[2:].replace(".", "_").replace("-", "_").upper()
        assert f"env var: {variable}" in text, flag


README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_misspelt_flag_prints_the_one_line_the_readme_shows() -> None:
    block = re.search(r"```console\n\$ (cdm-exporter serve [^\n]+)\n([^\n]+)\n```", README.read_text())
    assert block is not None
    command, shown = block.groups()
    result = subprocess.run(
        [sys.executable, "-m", "cdm_exporter", *command.split()[1:]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == shown + "\n"
    assert "'--web.listen-address'" in shown


def test_the_readme_example_config_works_with_its_secret_key_file_next_to_it(tmp_path: Path) -> None:
    text = README.read_text()
    example = re.search(r"A minimal `config.yml`:\n\n```yaml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    config = yaml.safe_load(example.group(1))
    aksk = config["targets"][0]["auth"]["aksk"]
    assert not Path(aksk["secret_key_file"]).is_absolute()  # works when copied with the file beside it
    settings = SimulatorSettings(clusters=1, jobs=2, rate_limit=0, access_key=aksk["access_key"])
    with Simulator(settings) as aksk_sim:
        assert config["targets"][0]["project_id"] == settings.project_id
        path = tmp_path / "config.yml"
        path.write_text(example.group(1))
        path.chmod(0o600)
        (tmp_path / aksk["secret_key_file"]).write_text(settings.secret_key)
        (tmp_path / aksk["secret_key_file"]).chmod(0o600)
        region_var = "HUAWEICLOUD_SDK_REGION_CDM_" + config["targets"][0]["region"].upper().replace("-", "_")
        result = subprocess.run(
            [sys.executable, "-m", "cdm_exporter", "check", "--config.file", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, region_var: aksk_sim.url},
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        f"target prod (region {settings.region}, project {settings.project_id}): up"
    )
