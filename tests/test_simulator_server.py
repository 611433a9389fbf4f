"""The Simulator object's lifecycle and the HTTP layer's behaviour under concurrency."""

from __future__ import annotations

import contextlib
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from exporter_stack import LATE, simulator_threads, wait_until

from cdm_exporter.simulator import Simulator, SimulatorSettings


def test_lifecycle_errors_and_idempotent_stop() -> None:
    sim = Simulator(SimulatorSettings(clusters=1, jobs=1))
    with pytest.raises(RuntimeError):
        _ = sim.url
    assert not sim.running
    sim.start()
    with pytest.raises(RuntimeError):
        sim.start()
    assert sim.url == f"http://127.0.0.1:{sim.port}"
    sim.stop()
    sim.stop()
    assert not sim.running
    with pytest.raises(RuntimeError):
        sim.start()


def test_fixture_is_fast_and_started(simulator: Simulator) -> None:
    assert simulator.settings.time_scale > 1
    assert requests.get(f"{simulator.url}/_sim/", timeout=10).status_code == 200


def test_stop_closes_idle_keep_alive_connections() -> None:
    before = simulator_threads()
    sim = Simulator(SimulatorSettings(clusters=1, jobs=1))
    sim.start()
    session = requests.Session()
    assert session.get(f"{sim.url}/_sim/", timeout=10).status_code == 200  # connection stays open
    host, port = "127.0.0.1", sim.port
    idle = socket.create_connection((host, port))
    wait_until(lambda: len(simulator_threads() - before) >= 3, LATE, "a connection was not accepted")
    handlers = simulator_threads() - before  # the server loop and both connections' handlers
    sim.stop()
    # the handlers ended because stop closed their connections: left waiting on idle clients, they
    # would outlive stop's 5 s join of each
    assert not simulator_threads() & handlers
    idle.settimeout(5)
    # Closed by the server: FIN once accepted, RST while still in the listen backlog.
    with contextlib.suppress(ConnectionResetError):
        assert idle.recv(10) == b""
    idle.close()
    session.close()
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=2):
        pass


def test_concurrent_requests(simulator: Simulator) -> None:
    pid = simulator.settings.project_id
    cid = simulator.world.clusters()[0].id
    names = [j.name for j in simulator.world.jobs(cid)]

    def fetch(name: str) -> int:
        r = requests.get(
            f"{simulator.url}/v1.1/{pid}/clusters/{cid}/cdm/job/{name}/status",
            headers={"X-Auth-Token": "sim-token"},
            timeout=10,
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(fetch, names * 4))
    assert codes == [200] * len(names) * 4
    assert simulator.stats.count("job_status") == len(names) * 4


def test_bad_content_length(simulator: Simulator) -> None:
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=5) as sock:
        sock.sendall(b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
