"""HTTPS mode, for tests of certificate verification (fixtures/simulator/*.pem)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from cdm_exporter.simulator import Simulator, SimulatorSettings

FIXTURES = Path(__file__).parent / "fixtures" / "simulator"


@pytest.fixture
def tls_sim() -> Simulator:
    sim = Simulator(
        SimulatorSettings(
            clusters=1,
            jobs=1,
            certfile=str(FIXTURES / "server.pem"),
            keyfile=str(FIXTURES / "server-key.pem"),
        )
    )
    sim.start()
    return sim


def test_https_with_a_trusted_ca(tls_sim: Simulator) -> None:
    try:
        assert tls_sim.url.startswith("https://127.0.0.1:")
        r = requests.get(
            f"{tls_sim.url}/v1.1/{tls_sim.settings.project_id}/clusters",
            headers={"X-Auth-Token": "sim-token"},
            verify=str(FIXTURES / "ca.pem"),
            timeout=10,
        )
        assert r.status_code == 200 and len(r.json()["clusters"]) == 1
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{tls_sim.url}/_sim/", timeout=10)  # default trust store: not trusted
        assert (
            requests.get(f"{tls_sim.url}/_sim/", verify=str(FIXTURES / "ca.pem"), timeout=10).status_code
            == 200
        )
    finally:
        tls_sim.stop()


def test_settings_need_both_cert_and_key() -> None:
    with pytest.raises(ValueError, match="certfile and keyfile"):
        SimulatorSettings(certfile=str(FIXTURES / "server.pem"))
