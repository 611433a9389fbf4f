"""CdmClient over real HTTP against the simulator (127.0.0.1), plus the pure helpers it uses.

The simulator shares no code with the client, so these tests check two independent readings
of the API documentation (docs/api-notes.md) against each other: paths on the wire, paging,
error bodies, faults.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exporter_stack import LATE
from requests.adapters import HTTPAdapter
from tls_certs import make_tls_certs, openssl_available

from cdm_exporter.api import errors
from cdm_exporter.api.auth import AkSkAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.client import CdmClient, path_segment, query_string
from cdm_exporter.api.errors import (
    ApiError,
    AuthError,
    CdmError,
    MalformedResponse,
    NotFound,
    RateLimited,
    ServerError,
    TimeoutError_,
    TransportError,
)
from cdm_exporter.api.models import JOB_TYPES
from cdm_exporter.api.responses import error_for, success_json
from cdm_exporter.api.transport import DEFAULT_MAX_BODY_BYTES, RawResponse, origin
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

FIXTURES = Path(__file__).parent / "fixtures" / "api"

# Odd job names and their one-segment encodings, written out by hand (not computed by the
# code under test).
ODD_NAMES = {
    "a/b": "a%2Fb",
    "..": "%2E%2E",
    ".": "%2E",
    "..a": "..a",
    "x?y#z": "x%3Fy%23z",
    "100%": "100%25",
    "%2F": "%252F",
    'it\'s "q"': "it%27s%20%22q%22",
    "with space": "with%20space",
    "日本": "%E6%97%A5%E6%9C%AC",
    "a+b&c=d;e": "a%2Bb%26c%3Dd%3Be",
    "~tilde_-.": "~tilde_-.",
}


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "encoded"), ODD_NAMES.items())
def test_path_segment(name: str, encoded: str) -> None:
    assert path_segment(name, "job_status") == encoded


def test_path_segment_refuses_what_cannot_be_a_segment() -> None:
    with pytest.raises(ValueError, match="empty"):
        path_segment("", "job_status")
    with pytest.raises(MalformedResponse, match="UTF-8"):
        path_segment("bad\ud800", "job_status")


def test_query_string_matches_canonical_encoding() -> None:
    assert query_string([("jname", "a/b c+d"), ("x", "~")]) == "jname=a%2Fb%20c%2Bd&x=~"


def _raw(
    status: int, body: bytes | str, content_type: str = "application/json", **headers: str
) -> RawResponse:
    data = body.encode() if isinstance(body, str) else body
    return RawResponse(status=status, headers={"Content-Type": content_type, **headers}, body=data)


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize(
    ("status", "fixture", "cls", "code"),
    [
        (400, "error_cdm_0100.json", NotFound, "Cdm.0100"),
        (400, "error_cdm_0054.json", NotFound, "Cdm.0054"),
        (400, "error_cdm_0032.json", AuthError, "Cdm.0032"),
        (400, "error_cdm_0001.json", ApiError, "Cdm.0001"),
        (401, "error_apigw_0301.json", AuthError, "APIGW.0301"),
        (429, "error_apigw_0308.json", RateLimited, "APIGW.0308"),
        (403, "error_cdm_0032.json", AuthError, "Cdm.0032"),
        (404, None, NotFound, None),
        (500, None, ServerError, None),
        (503, "error_apigw_0301.json", AuthError, "APIGW.0301"),  # an auth code wins over the status
        (302, None, ApiError, None),
        (418, None, ApiError, None),
    ],
)
def test_error_mapping(status: int, fixture: str | None, cls: type[CdmError], code: str | None) -> None:
    body = _fixture(fixture) if fixture else b"<html><body>Bad gateway</body></html>"
    error = error_for("job_status", _raw(status, body, **{"X-Request-Id": "req-1"}))
    assert type(error) is cls
    assert (error.endpoint, error.status, error.code, error.request_id) == (
        "job_status",
        status,
        code,
        "req-1",
    )
    if fixture:
        assert json.loads(body).get("externalMessage", json.loads(body).get("error_msg")) == error.message
    else:
        assert "html" not in error.message.lower()  # a non-JSON body is never quoted


def test_error_mapping_iam_and_details() -> None:
    keystone = error_for("iam_token", _raw(401, _fixture("error_iam_keystone.json")))
    assert type(keystone) is AuthError
    assert (keystone.code, keystone.message) == ("401", "The username or password is wrong.")
    assert type(error_for("iam_token", _raw(400, b"{}"))) is AuthError
    assert type(error_for("iam_token", _raw(500, b"{}"))) is ServerError
    assert type(error_for("list_jobs", _raw(400, b"{}"))) is ApiError
    # the gateway puts the request id in the body when the header is missing
    throttled = error_for("list_jobs", _raw(429, _fixture("error_apigw_0308.json")))
    assert throttled.request_id == "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    # messages are one short printable line, secrets redacted
    long = json.dumps({"errCode": "Cdm.0000", "externalMessage": "line1\nline2 SECRET " + "x" * 500})
    error = error_for("job_status", _raw(400, long), redact=lambda t: t.replace("SECRET", "***"))
    assert "\n" not in str(error) and "SECRET" not in str(error) and "***" in error.message
    assert len(error.message) <= 200


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"", "application/json", "empty"),
        (b"<!DOCTYPE html><html></html>", "application/json", "HTML"),
        (b'{"clusters": []}', "text/html; charset=utf-8", "HTML"),
        (b'{"clusters": [', "application/json", "invalid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "JSON"),
        (b'{"a": "\xff\xfe"}', "application/json", "JSON|UTF-8"),
        (b"1" * 5000, "application/json", "invalid JSON"),  # beyond Python's int digit limit
    ],
)
def test_success_json_rejects(body: bytes, content_type: str, match: str) -> None:
    with pytest.raises(MalformedResponse, match=match) as info:
        success_json("list_clusters", _raw(200, body, content_type))
    assert info.value.status == 200


def test_error_classes_hierarchy() -> None:
    """What callers rely on when they catch broadly."""
    assert issubclass(TimeoutError_, TransportError)
    for cls in (AuthError, RateLimited, NotFound, ServerError):
        assert issubclass(cls, ApiError) and issubclass(cls, CdmError)
    assert errors.MalformedResponse is MalformedResponse


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="https://"):
        CdmClient(endpoint="cdm.example", project_id="p", auth=TokenAuth("t"))
    with pytest.raises(ValueError, match="pool_size"):
        CdmClient(endpoint="https://cdm.example", project_id="p", auth=TokenAuth("t"), pool_size=0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Calls:
    """A thread-safe observer that records every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, float]] = []

    def __call__(self, endpoint: str, code: str, seconds: float) -> None:
        with self._lock:
            self.calls.append((endpoint, code, seconds))

    def pairs(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(e, c) for e, c, _ in self.calls]


def test_refused_port_is_a_transport_error_naming_the_server_and_observed() -> None:
    calls = Calls()
    port = _closed_port()
    client = CdmClient(
        endpoint=f"http://127.0.0.1:{port}", project_id="p", auth=TokenAuth("t"), observer=calls
    )
    with client, pytest.raises(TransportError, match="refused") as info:
        client.list_clusters()
    assert type(info.value) is TransportError
    assert info.value.endpoint == "list_clusters"
    assert str(info.value) == f"list_clusters: connection refused by http://127.0.0.1:{port}"
    assert calls.pairs() == [("list_clusters", "error")]


@pytest.mark.parametrize(
    ("url", "server"),
    [
        (
            "https://cdm.cn-north-4.myhuaweicloud.com/v1.1/p/clusters",
            "https://cdm.cn-north-4.myhuaweicloud.com:443",
        ),
        ("http://10.0.0.1/v3/auth/tokens?nocatalog=true", "http://10.0.0.1:80"),
        ("http://[::1]:9796/v1.1/p/clusters/c/cdm/submissions?jname=secret%20job", "http://[::1]:9796"),
        ("https://user:pw@Example.COM:8443/x", "https://example.com:8443"),
    ],
)
def test_origin_names_scheme_host_and_port_only(url: str, server: str) -> None:
    assert origin(url) == server


def test_a_failing_observer_does_not_fail_the_call(sim: Simulator) -> None:
    def broken(endpoint: str, code: str, seconds: float) -> None:
        raise RuntimeError("metrics are broken")

    with _client(sim, observer=broken) as client:
        assert client.list_clusters()


# --- against the simulator -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # a clock that stands still (at the real time, so AK/SK dates verify): no run moves on
    # between reading the world and calling the API
    clock = ManualClock(time.time())
    settings = SimulatorSettings(clusters=2, jobs=12, seed=7, rate_limit=0, token="sim-token", clock=clock)
    with Simulator(settings) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


def _client(sim: Simulator, **kwargs: Any) -> CdmClient:
    auth = kwargs.pop("auth", None) or TokenAuth("sim-token")
    return CdmClient(endpoint=sim.url, project_id=sim.settings.project_id, auth=auth, **kwargs)


def _cluster_id(sim: Simulator, index: int = 0) -> str:
    return str(sim.world.clusters()[index].id)


def _log_since(sim: Simulator, start: int, endpoint: str | None = None) -> list[Any]:
    return [r for r in sim.stats.log[start:] if endpoint is None or r.endpoint == endpoint]


def test_every_endpoint(sim: Simulator) -> None:
    calls = Calls()
    with _client(sim, observer=calls) as client:
        clusters = client.list_clusters()
        assert [(c.id, c.name, c.status) for c in clusters] == [
            (c.id, c.name, c.status) for c in sim.world.clusters()
        ]
        cid = clusters[0].id
        world_jobs = sim.world.jobs(cid)
        listed = [job for t in JOB_TYPES for job in client.list_jobs_page(cid, t, 1).jobs]  # one page each
        assert sorted((j.name, j.job_type) for j in listed) == sorted(
            (j.name, j.job_type) for j in world_jobs
        )
        ran = next(j for j in world_jobs if j.latest is not None)
        assert ran.latest is not None
        status = client.job_status(cid, ran.name)
        assert status and {s.job_name for s in status} == {ran.name}
        assert max(s.submission_id or -1 for s in status) == ran.latest.submission_id
        history = client.submissions(cid, ran.name)
        assert history and all(s.job_name == ran.name for s in history)
        assert max(s.submission_id or -1 for s in history) == ran.latest.submission_id
        page = client.list_jobs_page(cid, "NORMAL_JOB", 1, 10)
        normal = [j for j in world_jobs if j.job_type == "NORMAL_JOB"]
        assert len(page.jobs) == min(10, len(normal)) and page.total == len(normal)
    # every HTTP call observed, with its endpoint and status; no IAM call for a static token
    assert {e for e, _ in calls.pairs()} == {"list_clusters", "list_jobs", "job_status", "submissions"}
    assert all(code == "200" for _, code in calls.pairs())
    assert len(calls.pairs()) == 1 + len(JOB_TYPES) + 1 + 1 + 1
    assert all(seconds >= 0 for _, _, seconds in calls.calls)


@pytest.mark.parametrize("auth_mode", ["token", "aksk"])
def test_odd_job_names_reach_exactly_one_segment(sim: Simulator, auth_mode: str) -> None:
    cid = _cluster_id(sim)
    for name in ODD_NAMES:
        if name not in {j.name for j in sim.world.jobs(cid)}:
            sim.world.add_job(cid, name)
            sim.world.start_run(cid, name, duration=3600)
    auth = AkSkAuth("SIMAK", "SIMSK", sim.settings.project_id) if auth_mode == "aksk" else None
    start = len(sim.stats.log)
    with _client(sim, auth=auth) as client:
        for name in ODD_NAMES:
            status = client.job_status(cid, name)
            assert [s.job_name for s in status] == [name]
            history = client.submissions(cid, name)
            assert history and {s.job_name for s in history} == {name}
    pid = sim.settings.project_id
    assert [r.path for r in _log_since(sim, start, "job_status")] == [
        f"/v1.1/{pid}/clusters/{cid}/cdm/job/{encoded}/status" for encoded in ODD_NAMES.values()
    ]
    # in a query value a dot needs no escaping: it cannot be a dot segment there
    in_query = {**ODD_NAMES, "..": "..", ".": "."}
    assert [r.query for r in _log_since(sim, start, "submissions")] == [
        f"jname={in_query[name]}" for name in ODD_NAMES
    ]


def test_unknown_job_is_not_found(sim: Simulator) -> None:
    with _client(sim) as client, pytest.raises(NotFound) as info:
        client.job_status(_cluster_id(sim), "no-such-job")
    assert info.value.status == 400 and info.value.code in ("Cdm.0100", "Cdm.0054")


FAULTS = [
    pytest.param({"status": 400, "error_code": "Cdm.0100"}, NotFound, 400, "Cdm.0100", id="400-Cdm.0100"),
    pytest.param({"status": 400, "error_code": "Cdm.0001"}, ApiError, 400, "Cdm.0001", id="400-Cdm.0001"),
    pytest.param({"status": 400, "error_code": "Cdm.0032"}, AuthError, 400, "Cdm.0032", id="400-Cdm.0032"),
    pytest.param({"status": 401}, AuthError, 401, "APIGW.0301", id="401"),
    pytest.param({"status": 403}, AuthError, 403, "Cdm.0032", id="403"),
    pytest.param({"status": 404}, NotFound, 404, "APIGW.0101", id="404"),
    pytest.param({"status": 429}, RateLimited, 429, "APIGW.0308", id="429"),
    pytest.param({"status": 500}, ServerError, 500, "Cdm.0000", id="500"),
    pytest.param({"status": 503}, ServerError, 503, "APIGW.0203", id="503"),
    pytest.param({"kind": "malformed"}, MalformedResponse, 200, None, id="malformed"),
    pytest.param({"kind": "html"}, MalformedResponse, 200, None, id="html"),
    pytest.param({"kind": "wrong_shape"}, MalformedResponse, 200, None, id="wrong-shape"),
    pytest.param({"kind": "huge", "size": 2 * 1024 * 1024}, MalformedResponse, 200, None, id="huge"),
    pytest.param({"kind": "hang"}, TimeoutError_, None, None, id="hang"),
    pytest.param({"kind": "reset"}, TransportError, None, None, id="reset"),
    pytest.param({"kind": "close"}, TransportError, None, None, id="close"),
]


@pytest.mark.parametrize(("fault", "cls", "status", "code"), FAULTS)
def test_fault_mapping(
    sim: Simulator, fault: dict[str, Any], cls: type[CdmError], status: int | None, code: str | None
) -> None:
    cid = _cluster_id(sim)
    name = sim.world.jobs(cid)[0].name
    sim.add_fault(Fault(endpoint="job_status", **fault))
    calls = Calls()
    start = len(sim.stats.log)
    client = _client(sim, observer=calls, read_timeout=0.5, max_body_bytes=1024 * 1024)
    with client, pytest.raises(CdmError) as info:
        client.job_status(cid, name)
    error = info.value
    assert type(error) is cls, repr(error)
    assert (error.endpoint, error.status) == ("job_status", status)
    if code is not None:
        assert error.code == code
    if status is not None and status >= 400:
        assert error.request_id, "the X-Request-Id response header is carried on the error"
    # exactly one request: no hidden retry of a 429, a 5xx or a transport failure
    assert len(_log_since(sim, start, "job_status")) == 1
    assert calls.pairs() == [("job_status", str(status) if status is not None else "error")]


def test_default_body_cap_is_32_mib(sim: Simulator) -> None:
    assert DEFAULT_MAX_BODY_BYTES == 32 * 1024 * 1024
    sim.add_fault(Fault(endpoint="list_clusters", kind="huge", size=DEFAULT_MAX_BODY_BYTES + 1024))
    with _client(sim) as client, pytest.raises(MalformedResponse, match="limit"):
        client.list_clusters()


def test_call_deadline_bounds_slow_answers(sim: Simulator) -> None:
    """Calls with a 0.3-0.4 s deadline against answers that take a minute (read timeout and delay
    60 s, a ~700 byte body at 20 bytes/s) end long before them; by how much is machine speed."""
    cid = _cluster_id(sim)
    name = sim.world.jobs(cid)[0].name
    with _client(sim, read_timeout=60.0) as client:
        # each chunk arrives well within the read timeout; only the overall deadline stops it
        sim.add_fault(Fault(endpoint="job_status", kind="trickle", interval=0.05, size=1))
        started = time.monotonic()
        with pytest.raises(TimeoutError_):
            client.job_status(cid, name, timeout=0.4)
        assert time.monotonic() - started < LATE
        sim.clear_faults()
        sim.add_fault(Fault(endpoint="job_status", kind="delay", delay=60.0))
        started = time.monotonic()
        with pytest.raises(TimeoutError_):
            client.job_status(cid, name, timeout=0.3)
        assert time.monotonic() - started < LATE
        sim.clear_faults()
        assert client.job_status(cid, name, timeout=5.0) is not None


def test_concurrent_calls_share_one_client(sim: Simulator) -> None:
    cid = _cluster_id(sim)
    names = [j.name for j in sim.world.jobs(cid)][:8]
    results: dict[str, list[Any]] = {}
    failures: list[BaseException] = []
    barrier = threading.Barrier(len(names) * 2)
    with _client(sim, pool_size=8) as client:

        def work(name: str) -> None:
            try:
                barrier.wait(5)
                results[name] = client.job_status(cid, name)
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in names * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert not failures
    for name in names:
        assert all(s.job_name == name for s in results[name])


def test_password_auth_retries_a_401_once(sim: Simulator) -> None:
    calls = Calls()
    auth = PasswordAuth(sim.url, "sim-domain", "sim-user", "sim-password", sim.settings.project_id)
    with _client(sim, auth=auth, observer=calls) as client:
        assert client.list_clusters()
        sim.add_fault(Fault(endpoint="list_clusters", status=401, count=1))
        assert client.list_clusters()  # 401 -> new token -> retry succeeds
        assert calls.pairs() == [
            ("iam_token", "201"),
            ("list_clusters", "200"),
            ("list_clusters", "401"),
            ("iam_token", "201"),
            ("list_clusters", "200"),
        ]
        sim.add_fault(Fault(endpoint="list_clusters", status=401, count=2))
        with pytest.raises(AuthError) as info:
            client.list_clusters()
        assert info.value.status == 401
        assert [p for p in calls.pairs()[5:] if p[0] == "list_clusters"] == [("list_clusters", "401")] * 2


def test_static_token_401_is_not_retried(sim: Simulator) -> None:
    start = len(sim.stats.log)
    with _client(sim, auth=TokenAuth("not-the-token")) as client, pytest.raises(AuthError) as info:
        client.list_clusters()
    assert info.value.status == 401 and info.value.code == "APIGW.0301"
    assert len(_log_since(sim, start, "list_clusters")) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    if not openssl_available():
        pytest.skip("needs the openssl binary")
    certs = make_tls_certs(tmp_path)
    settings = SimulatorSettings(
        clusters=1, jobs=1, rate_limit=0, certfile=str(certs.server_cert), keyfile=str(certs.server_key)
    )
    with Simulator(settings) as tls:
        assert tls.url.startswith("https://")
        with _client(tls) as client, pytest.raises(TransportError, match="TLS") as info:
            client.list_clusters()
        assert type(info.value) is TransportError
        with _client(tls, verify=str(certs.ca_cert)) as client:
            assert client.list_clusters()
        with _client(tls, verify=False) as client:
            assert client.list_clusters()


def test_connections_are_kept_alive(sim: Simulator) -> None:
    """Reading the body to its end returns the connection to the pool for the next call."""
    with _client(sim) as client:
        for _ in range(5):
            client.list_clusters()
        adapter = client._session.get_adapter(sim.url)
        assert isinstance(adapter, HTTPAdapter)
        pools = adapter.poolmanager.pools
        keys = pools.keys()  # RecentlyUsedContainer has keys() but no __iter__
        assert [(pools[key].num_connections, pools[key].num_requests) for key in keys] == [(1, 5)]


def test_some_unusable_records_cost_only_themselves(sim: Simulator) -> None:
    cid = _cluster_id(sim)
    body = json.dumps({"submissions": [{"job-name": "kept", "status": "RUNNING"}, 1, {"status": "x"}]})
    sim.add_fault(Fault(endpoint="job_status", status=200, body=body, count=1))
    with _client(sim) as client:
        assert [s.job_name for s in client.job_status(cid, "kept")] == ["kept"]
        # the same list with no usable record at all is not "never ran" but a malformed answer
        sim.add_fault(Fault(endpoint="job_status", status=200, body='{"submissions": [1, {}]}', count=1))
        with pytest.raises(MalformedResponse, match="none of the 2 records"):
            client.job_status(cid, "kept")
        sim.add_fault(Fault(endpoint="job_status", status=200, body='{"submissions": []}', count=1))
        assert client.job_status(cid, "kept") == []
