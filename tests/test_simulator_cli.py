"""``cdm-exporter simulate``: option validation (exit 2) and a real process that serves and
stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from cdm_exporter.cli.simulate import simulate

FIXTURES = Path(__file__).parent / "fixtures" / "simulator"
START_CLI = "from cdm_exporter.cli.simulate import simulate; simulate(prog_name='cdm-exporter simulate')"


@pytest.mark.parametrize(
    ("args", "env", "option"),
    [
        (["--web.listen-address", "nonsense"], {}, "--web.listen-address"),
        (["--web.listen-address", "127.0.0.1:70000"], {}, "--web.listen-address"),
        (["--time-scale", "0"], {}, "--time-scale"),
        (["--clusters", "-1"], {}, "--clusters"),
        (["--jobs", "many"], {}, "--jobs"),
        (["--rate-limit", "-5"], {}, "--rate-limit"),
        (["--latency-ms", "-1"], {}, "--latency-ms"),
        (["--fault", "job_status:teapot"], {}, "--fault"),
        (["--fault", "nowhere:500"], {}, "--fault"),
        (["--token", ""], {}, "--token"),
        (["--project-id", "a/b"], {}, "--project-id"),
        (["--project", "a b"], {}, "--project"),
        (["--region-without-cdm", "cn-north-4"], {}, "region without CDM"),
        (["--history-order", "sideways"], {}, "--history-order"),
        (["--refuse-job-type", "ODD_JOB"], {}, "--refuse-job-type"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], {}, "--tls-cert"),
        (["--tls-cert", str(FIXTURES / "server.pem")], {}, "--tls-key"),
        ([], {"CDM_SIMULATOR_TIME_SCALE": "fast"}, "--time-scale"),
        ([], {"CDM_SIMULATOR_WEB_LISTEN_ADDRESS": "localhost"}, "--web.listen-address"),
    ],
)
def test_bad_values_exit_2_naming_the_option(args: list[str], env: dict[str, str], option: str) -> None:
    result = CliRunner().invoke(simulate, args, env=env)
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_help_documents_faults_admin_and_env_vars() -> None:
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0
    for text in (
        "TARGET:ACTION",
        "job_status@<cluster_id>:malformed",
        "/_sim/",
        "CDM_SIMULATOR_WEB_LISTEN_ADDRESS",
    ):
        assert text in result.output


def test_busy_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(simulate, ["--web.listen-address", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output


@pytest.fixture
def process() -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        CDM_SIMULATOR_WEB_LISTEN_ADDRESS="127.0.0.1:0",
        CDM_SIMULATOR_SEED="5",
        CDM_SIMULATOR_CLUSTERS="3",
        # the exporter's variables: the simulator must not read them
        CDM_EXPORTER_WEB_LISTEN_ADDRESS="nonsense",
        CDM_EXPORTER_SEED="9",
        CDM_EXPORTER_CLUSTERS="7",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            START_CLI,
            "--time-scale",
            "60",
            "--fault",
            "list_jobs:503",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    yield proc, lines
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def _wait_for_line(lines: queue.Queue[str], prefix: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r}; got {seen}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_process_serves_and_stops_on_a_signal(
    process: tuple[subprocess.Popen[str], queue.Queue[str]], stop_signal: signal.Signals
) -> None:
    proc, lines = process
    url = _wait_for_line(lines, "CDM simulator listening on ").split()[-1]
    assert url.startswith("http://127.0.0.1:")
    headers = {"X-Auth-Token": "sim-token"}
    clusters = requests.get(
        f"{url}/v1.1/0123456789abcdef0123456789abcdef/clusters", headers=headers, timeout=10
    )
    assert clusters.status_code == 200 and len(clusters.json()["clusters"]) == 3
    cid = clusters.json()["clusters"][0]["id"]
    jobs = requests.get(
        f"{url}/v1.1/0123456789abcdef0123456789abcdef/clusters/{cid}/cdm/job/all", headers=headers, timeout=10
    )
    assert jobs.status_code == 503
    assert requests.get(f"{url}/_sim/", timeout=10).json()["seed"] == 5
    proc.send_signal(stop_signal)
    assert proc.wait(10) == 0
    _wait_for_line(lines, "simulator stopped", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sim/", timeout=2)


def test_projects_and_regions_are_served_and_listed() -> None:
    args = ["--web.listen-address", "127.0.0.1:0", "--project", "ap-southeast-1"]
    args += ["--project", "cn-north-4_dev", "--region-without-cdm", "ap-southeast-3"]
    proc = subprocess.Popen(
        [sys.executable, "-c", START_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = _wait_for_line(lines, "CDM simulator listening on ").split()[-1]
        banner = {
            line.split()[2].rstrip(":"): line.split(": ", 1)[1].strip()
            for line in (_wait_for_line(lines, "  project ") for _ in range(4))
        }
        regions = requests.get(f"{url}/_sim/", timeout=10).json()["regions"]
        listed = requests.get(f"{url}/v3/auth/projects", headers={"X-Auth-Token": "sim-token"}, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert set(regions) == {"cn-north-4", "ap-southeast-1", "ap-southeast-3"} and regions["cn-north-4"] == url
    assert banner == {
        "cn-north-4": url,
        "cn-north-4_dev": url,
        "ap-southeast-1": regions["ap-southeast-1"],
        "ap-southeast-3": "no CDM in this region (404)",
    }
    assert {p["name"] for p in listed.json()["projects"]} >= set(banner)
