"""Injected faults: every kind, targeting, counts, the spec grammar, and prompt stop."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from exporter_stack import LATE, simulator_threads, wait_until

from cdm_exporter.simulator import Fault, FaultSpecError, Simulator
from cdm_exporter.simulator.faults import DEFAULT_HUGE_SIZE

TOKEN = {"X-Auth-Token": "sim-token"}


def url(sim: Simulator, endpoint: str, cluster: int = 0, job: int = 0) -> str:
    pid = sim.settings.project_id
    cid = sim.world.clusters()[cluster].id
    name = sim.world.jobs(cid)[job].name
    base = f"{sim.url}/v1.1/{pid}/clusters"
    return {
        "list_clusters": base,
        "cluster_detail": f"{base}/{cid}",
        "list_jobs": f"{base}/{cid}/cdm/job/all",
        "job_status": f"{base}/{cid}/cdm/job/{name}/status",
        "submissions": f"{base}/{cid}/cdm/submissions?jname={name}",
    }[endpoint]


def get(target: str, timeout: float = 10) -> requests.Response:
    return requests.get(target, headers=TOKEN, timeout=timeout)


IAM_BODY = {
    "auth": {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {"name": "sim-user", "password": "sim-password", "domain": {"name": "sim-domain"}}
            },
        },
        "scope": {"project": {"name": "cn-north-4"}},
    }
}


@pytest.mark.parametrize(
    ("status", "key", "code"),
    [
        (400, "errCode", "Cdm.0001"),
        (401, "error_code", "APIGW.0301"),
        (403, "errCode", "Cdm.0032"),
        (404, "error_code", "APIGW.0101"),
        (429, "error_code", "APIGW.0308"),
        (500, "errCode", "Cdm.0000"),
        (503, "error_code", "APIGW.0203"),
    ],
)
def test_status_faults_carry_plausible_bodies(simulator: Simulator, status: int, key: str, code: str) -> None:
    simulator.add_fault(Fault(endpoint="job_status", status=status))
    r = get(url(simulator, "job_status"))
    assert r.status_code == status
    assert r.json()[key] == code
    assert r.headers["X-Request-Id"]
    assert get(url(simulator, "list_jobs")).status_code == 200  # other endpoints unaffected
    assert simulator.stats.throttled == 0  # an injected 429 is not the rate limiter's


def test_status_fault_with_error_code_or_body(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="job_status", status=400, error_code="Cdm.0100", count=1))
    assert get(url(simulator, "job_status")).json()["errCode"] == "Cdm.0100"
    simulator.add_fault(
        Fault(endpoint="list_clusters", status=502, body="Bad Gateway", content_type="text/plain")
    )
    r = get(url(simulator, "list_clusters"))
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (502, "Bad Gateway", "text/plain")


def test_count_and_clear(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="list_jobs", status=500, count=2))
    codes = [get(url(simulator, "list_jobs")).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert simulator.active_faults() == []
    fault_id = simulator.add_fault(Fault(endpoint="*", status=503))
    assert get(url(simulator, "submissions")).status_code == 503
    assert simulator.remove_fault(fault_id)
    simulator.add_fault(Fault(endpoint="list_clusters", status=503))
    simulator.clear_faults()
    assert get(url(simulator, "list_clusters")).status_code == 200


def test_targeting_by_cluster_and_job(simulator: Simulator) -> None:
    cid = simulator.world.clusters()[1].id
    job = simulator.world.jobs(cid)[2].name
    simulator.add_fault(Fault(endpoint="job_status", status=500, cluster_id=cid, job_name=job))
    simulator.add_fault(Fault(endpoint="submissions", status=500, job_name=job))
    assert get(url(simulator, "job_status", cluster=1, job=2)).status_code == 500
    assert get(url(simulator, "job_status", cluster=1, job=1)).status_code == 200
    assert get(url(simulator, "job_status", cluster=0, job=2)).status_code == 200
    assert get(url(simulator, "submissions", cluster=1, job=2)).status_code == 500
    assert get(url(simulator, "submissions", cluster=1, job=0)).status_code == 200


def test_delay_and_latency(make_simulator: Callable[..., Simulator]) -> None:
    sim = make_simulator(latency_ms=150)
    started = time.monotonic()
    assert get(url(sim, "list_clusters")).status_code == 200
    assert time.monotonic() - started >= 0.15
    sim.add_fault(Fault(endpoint="list_clusters", delay=0.3))
    started = time.monotonic()
    r = get(url(sim, "list_clusters"))
    assert r.status_code == 200 and r.json()["clusters"]
    assert time.monotonic() - started >= 0.45


def test_hang_times_out_the_client_and_stop_ends_it(make_simulator: Callable[..., Simulator]) -> None:
    before = simulator_threads()
    sim = make_simulator()
    sim.add_fault(Fault(endpoint="list_jobs", kind="hang"))
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(url(sim, "list_jobs"), timeout=0.3)
    outcome: list[str] = []

    def waiter() -> None:
        try:
            get(url(sim, "list_jobs"), timeout=30)
            outcome.append("answered")
        except requests.RequestException as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: sim.stats.count("list_jobs") >= 2, LATE, "the second request never arrived")
    handlers = simulator_threads() - before  # this simulator's, hanging one included
    sim.stop()
    thread.join(LATE)
    # the hang ended with stop (its connection closed), well before the client's 30 s timeout, and
    # stop ended the handler instead of giving up on it after its 5 s join timeout
    assert outcome == ["ConnectionError"]
    assert not simulator_threads() & handlers


def test_malformed_html_and_wrong_shape(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="list_clusters", kind="malformed", count=1))
    r = get(url(simulator, "list_clusters"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        r.json()
    simulator.add_fault(Fault(endpoint="list_clusters", kind="html", status=502, count=1))
    r = get(url(simulator, "list_clusters"))
    assert r.status_code == 502 and r.headers["Content-Type"] == "text/html" and "<html>" in r.text
    for endpoint in ("list_clusters", "list_jobs", "job_status", "submissions"):
        simulator.add_fault(Fault(endpoint=endpoint, kind="wrong_shape", count=1))
        r = get(url(simulator, endpoint))
        assert r.status_code == 200
        body = r.json()
        assert body != get(url(simulator, endpoint)).json()
    simulator.add_fault(Fault(endpoint="job_status", kind="wrong_shape", count=1))
    assert any(not isinstance(s, dict) for s in get(url(simulator, "job_status")).json()["submissions"])


def test_huge_body(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="list_clusters", kind="huge", count=1))
    r = get(url(simulator, "list_clusters"))
    assert int(r.headers["Content-Length"]) == DEFAULT_HUGE_SIZE == len(r.content)
    assert r.json()["clusters"] == []
    simulator.add_fault(Fault(endpoint="list_jobs", kind="huge", size=100_000))
    body = get(url(simulator, "list_jobs")).json()
    assert body["jobs"] == [] and len(body["padding"]) > 99_000


def test_trickle(simulator: Simulator) -> None:
    normal = get(url(simulator, "list_clusters")).content
    simulator.add_fault(
        Fault(endpoint="list_clusters", kind="trickle", size=len(normal) // 5 + 1, interval=0.1)
    )
    started = time.monotonic()
    r = get(url(simulator, "list_clusters"))
    assert time.monotonic() - started >= 0.4
    assert r.content == normal


def _raw_get(sim: Simulator, target: str) -> tuple[bytes, BaseException | None]:
    host, port = sim.url.split("://")[1].rsplit(":", 1)
    path = target[len(sim.url) :]
    received = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: sim-token\r\n\r\n".encode())
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError as exc:
            return received, exc
    return received, None


def test_reset_mid_body(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="job_status", kind="reset", size=10))
    received, error = _raw_get(simulator, url(simulator, "job_status"))
    assert isinstance(error, ConnectionResetError)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == 10
    with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        get(url(simulator, "job_status"))


def test_close_without_response(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="submissions", kind="close"))
    received, error = _raw_get(simulator, url(simulator, "submissions"))
    assert received == b"" and error is None
    with pytest.raises(requests.exceptions.ConnectionError):
        get(url(simulator, "submissions"))


def test_iam_token_faults(simulator: Simulator) -> None:
    target = f"{simulator.url}/v3/auth/tokens"
    simulator.add_fault(Fault(endpoint="iam_token", status=500, count=1))
    r = requests.post(target, json=IAM_BODY, timeout=10)
    assert r.status_code == 500 and r.json()["error"]["code"] == 500
    simulator.add_fault(Fault(endpoint="iam_token", kind="wrong_shape", count=1))
    r = requests.post(target, json=IAM_BODY, timeout=10)
    assert "X-Subject-Token" not in r.headers and isinstance(r.json()["token"], list)
    simulator.add_fault(Fault(endpoint="iam_token", kind="delay", delay=0.2, count=1))
    r = requests.post(target, json=IAM_BODY, timeout=10)
    assert r.status_code == 201 and r.headers["X-Subject-Token"]


def test_faults_apply_after_authentication(simulator: Simulator) -> None:
    simulator.add_fault(Fault(endpoint="list_clusters", status=500))
    assert requests.get(url(simulator, "list_clusters"), timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("job_status:500", {"endpoint": "job_status", "status": 500, "kind": "status"}),
        ("list_jobs:hang", {"endpoint": "list_jobs", "kind": "hang"}),
        ("job_status@c-1:malformed", {"cluster_id": "c-1", "kind": "malformed"}),
        (
            "job_status@c-1/a%2Fb%3Ax%2Cy:400,code=Cdm.0100,count=3",
            {"job_name": "a/b:x,y", "status": 400, "error_code": "Cdm.0100", "count": 3},
        ),
        ("submissions/%E6%95%B0%E6%8D%AE:503", {"job_name": "数据", "status": 503, "cluster_id": None}),
        ("list_clusters:delay=2.5", {"kind": "delay", "delay": 2.5}),
        ("*:503,count=1,delay=0.5", {"endpoint": "*", "status": 503, "delay": 0.5}),
        ("list_jobs:huge=1000", {"kind": "huge", "size": 1000}),
        ("job_status:trickle=0.5,size=4", {"kind": "trickle", "interval": 0.5, "size": 4}),
        ("job_status:reset=7", {"kind": "reset", "size": 7}),
        ("iam_token:html=502", {"kind": "html", "status": 502}),
        ("list_jobs:500,body=%7B%7D,content_type=text/plain", {"body": "{}", "content_type": "text/plain"}),
    ],
)
def test_spec_grammar(spec: str, expected: dict[str, Any]) -> None:
    fault = Fault.parse(spec)
    for key, value in expected.items():
        assert getattr(fault, key) == value


@pytest.mark.parametrize(
    "spec",
    [
        "job_status",
        "job_status:",
        "nope:500",
        "job_status:boom",
        "job_status:500,count=0",
        "job_status:500,count=x",
        "job_status:500,colour=red",
        "job_status:hang=3",
        "job_status@:500",
        "job_status/:500",
        "job_status:99",
        "job_status:delay=-1",
    ],
)
def test_spec_errors(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        Fault.parse(spec)


def test_fault_needs_something_to_do() -> None:
    with pytest.raises(FaultSpecError):
        Fault(endpoint="job_status")
    assert Fault(endpoint="job_status", delay=1.0).kind == "delay"
    assert json.loads(json.dumps(Fault(endpoint="list_jobs", status=500).to_dict()))["status"] == 500
