"""Real parts for the state-store tests: a redis-server, exporter processes, budget checks.

* :class:`RedisServer`: Debian's ``redis-server`` on a free loopback port, in a temporary
  directory, with no persistence (``--save '' --appendonly no``); it can be stopped and started
  again on the same port (an outage), and is stopped when the test ends;
* :class:`ExporterProcess`: ``cdm-exporter serve`` through the real command line, its log in a
  file, scraped like Prometheus scrapes; killed (SIGKILL) or stopped (SIGTERM);
* :func:`assert_within_budget`: what the simulator saw, per policy, in any rolling minute.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
import redis
import requests
import yaml
from exporter_stack import Exposition, scrape
from prometheus_server import free_port

from cdm_exporter.simulator import Simulator

REDIS_SERVER = os.environ.get("REDIS_SERVER_BIN", "redis-server")

T = TypeVar("T")


def require_redis_server() -> str:
    """The redis-server binary; skips the test when it is missing (fails under CI)."""
    found = shutil.which(REDIS_SERVER)
    if found:
        return found
    message = (
        "missing redis-server: install the Debian package 'redis-server' "
        "(apt-get install -y --no-install-recommends redis-server) or set REDIS_SERVER_BIN"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def eventually(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None or False, within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """A redis-server of this test's own, on 127.0.0.1."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = self.client()

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            eventually(answers, 20, "redis-server to answer")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_config(path: Path, sim: Simulator, collection: dict[str, object] | None = None) -> Path:
    """A one-target configuration for ``sim`` with its static token."""
    target = {
        "name": "sim",
        "region": sim.settings.region,
        "project_id": sim.settings.project_id,
        "endpoint": sim.url,
        "iam_endpoint": sim.url,
        "auth": {"token": sim.settings.token},
    }
    path.write_text(yaml.safe_dump({"targets": [target], "collection": collection or {}}))
    return path


class ExporterProcess:
    """``cdm-exporter serve`` as a user runs it, on a free port, logging to a file."""

    def __init__(
        self, config: Path, flags: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.log_path = log
        with open(log, "ab") as handle:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cdm_exporter",
                    "serve",
                    "--config.file",
                    str(config),
                    "--web.listen-address",
                    f"127.0.0.1:{self.port}",
                    "--log.format",
                    "json",
                    *flags,
                ],
                env={**os.environ, **(env or {})},
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self._session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self, timeout: float = 3.0) -> tuple[int, Exposition]:
        """(status, exposition) of one scrape announcing ``timeout``."""
        result = scrape(self.url, timeout, session=self._session)
        return result.status, Exposition.parse(result.body) if result.status == 200 else Exposition("", {})

    def try_scrape(self, timeout: float = 3.0) -> Exposition | None:
        try:
            status, exposition = self.scrape(timeout)
        except requests.RequestException:
            return None
        return exposition if status == 200 else None

    def wait_serving(self, timeout: float = 60.0) -> Exposition:
        return eventually(self.try_scrape, timeout, f"the exporter on port {self.port} to serve", every=0.2)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)
        self._session.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._session.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def assert_within_budget(sim: Simulator, budget: int) -> dict[tuple[str, str], int]:
    """No policy saw more than ``budget`` calls in any rolling minute, and nothing was throttled."""
    worst = sim.stats.max_per_minute
    assert sim.stats.throttled == 0, f"throttled {sim.stats.throttled} calls; per minute {worst}"
    for (policy, user), count in worst.items():
        assert count <= budget, f"{policy} of {user}: {count} calls in one rolling minute > {budget}"
    return worst


def job_series(exposition: Exposition) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The series the replicas share: every job, cluster and target series (not the process's own
    telemetry, budget or role)."""
    shared = ("cdm_job_", "cdm_cluster_")
    return {
        (name, labels): value
        for (name, labels), value in exposition.samples.items()
        if name.startswith(shared) or name == "cdm_up"
    }
