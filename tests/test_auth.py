"""Auth modes over real HTTP against the simulator: static token, IAM password (caching,
renewal, one IAM call for many threads), AK/SK; and that no secret ever leaks."""

from __future__ import annotations

import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from cdm_exporter.api.auth import AkSkAuth, CdmAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.errors import (
    AuthError,
    CdmError,
    MalformedResponse,
    ServerError,
    TimeoutError_,
    TransportError,
)
from cdm_exporter.api.secret import Secret
from cdm_exporter.simulator import Fault, ManualClock, Simulator, SimulatorSettings

PASSWORD = "sim-password"
TOKEN = "sim-token"
SECRET_KEY = "SIMSK"
ACCESS_KEY = "SIMAK"


# --- no simulator needed --------------------------------------------------------------------------


def test_identity_formats() -> None:
    assert TokenAuth("abc").identity == "token:ba7816bf8f01"  # sha256("abc")
    assert TokenAuth(" abc\n").identity == "token:ba7816bf8f01"  # a token file's newline is not part of it
    assert AkSkAuth("abc", "sk", "p").identity == "aksk:ba7816bf8f01"
    assert PasswordAuth("https://iam.example", "dom", "usr", "pw", "p").identity == "password:dom/usr"


def test_repr_and_str_show_no_secret() -> None:
    auths: list[CdmAuth] = [
        TokenAuth("TOPSECRETTOKEN"),
        PasswordAuth("https://iam.example", "dom", "usr", "TOPSECRETPASSWORD", "p"),
        AkSkAuth("ACCESSKEY123", "TOPSECRETSK", "p", security_token="TOPSECRETSTS"),
    ]
    for auth in auths:
        text = repr(auth) + str(auth) + repr(vars(auth)) + str(vars(auth))
        for secret in ("TOPSECRET", "ACCESSKEY123"):
            assert secret not in text
    hidden = Secret("hunter2")
    assert "hunter2" not in repr(hidden) + str(hidden) + f"{hidden}"
    assert hidden.reveal() == "hunter2"
    with pytest.raises(TypeError):
        pickle.dumps(hidden)


@pytest.mark.parametrize("bad", ["", "   ", "line\nbreak", "nul\0"])
def test_bad_secret_values_are_refused_without_echo(bad: str) -> None:
    for build in (
        lambda: TokenAuth(bad),
        lambda: AkSkAuth("ak", bad, "p"),
        lambda: PasswordAuth("https://iam.example", "d", "u", bad, "p"),
    ):
        with pytest.raises(ValueError) as info:
            build()
        if bad.strip():
            assert bad not in str(info.value)


def test_redact() -> None:
    auth = AkSkAuth("AKID", "SKVALUE", "p", security_token="STSVALUE")
    assert auth.redact("x SKVALUE y STSVALUE z AKID") == "x *** y *** z ***"


def test_password_auth_iam_refused_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    auth = PasswordAuth(f"http://127.0.0.1:{port}", "d", "u", "pw-never-shown", "p")
    with pytest.raises(TransportError) as info:
        auth.token()
    assert info.value.endpoint == "iam_token"
    assert "pw-never-shown" not in str(info.value)


# --- against the simulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # a clock that stands still (at the real time, so AK/SK dates verify): nothing moves under a test
    clock = ManualClock(time.time())
    with Simulator(SimulatorSettings(clusters=1, jobs=5, seed=3, rate_limit=0, clock=clock)) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


def _password(sim: Simulator, password: str = PASSWORD, **kwargs: Any) -> PasswordAuth:
    return PasswordAuth(sim.url, "sim-domain", "sim-user", password, sim.settings.project_id, **kwargs)


def _client(sim: Simulator, auth: CdmAuth, **kwargs: Any) -> CdmClient:
    return CdmClient(endpoint=sim.url, project_id=sim.settings.project_id, auth=auth, **kwargs)


def _iam_calls(sim: Simulator) -> int:
    return int(sim.stats.count("iam_token"))


def test_static_token(sim: Simulator) -> None:
    with _client(sim, TokenAuth(TOKEN)) as client:
        assert client.list_clusters()
    with _client(sim, TokenAuth("wrong")) as client, pytest.raises(AuthError) as info:
        client.list_clusters()
    assert (info.value.status, info.value.endpoint) == (401, "list_clusters")


def test_password_token_is_cached(sim: Simulator) -> None:
    before = _iam_calls(sim)
    with _client(sim, _password(sim)) as client:
        for _ in range(5):
            assert client.list_clusters()
    assert _iam_calls(sim) - before == 1


def test_password_token_renewed_after_revocation(sim: Simulator) -> None:
    with _client(sim, _password(sim)) as client:
        assert client.list_clusters()
        before = _iam_calls(sim)
        sim.revoke_tokens()
        assert client.list_clusters()  # 401 -> invalidate -> new token -> retried once
        assert _iam_calls(sim) - before == 1


def test_password_token_renewed_before_expiry() -> None:
    clock = ManualClock()
    settings = SimulatorSettings(clusters=1, jobs=1, rate_limit=0, token_ttl_seconds=100.0, clock=clock)
    with Simulator(settings) as short:
        auth = _password(short, clock=clock)
        with _client(short, auth) as client:
            assert client.list_clusters()
            clock.advance(85)  # lifetime 100 s, margin min(300, 10 %) = 10 s: still cached
            assert client.list_clusters()
            assert _iam_calls(short) == 1
            clock.advance(6)  # 91 s: inside the margin, renewed before the token expires
            assert client.list_clusters()
            assert _iam_calls(short) == 2
        # never a 401: renewal happened before expiry, not after a refusal
        assert not any(status == 401 for (_, status) in short.stats.responses)


def test_concurrent_callers_share_one_iam_request(sim: Simulator) -> None:
    # a slow IAM answer makes sure all ten threads are waiting for a token at the same time (2 s: on
    # a loaded machine, threads released by a barrier can start tenths of a second apart)
    sim.add_fault(Fault(endpoint="iam_token", kind="delay", delay=2.0, count=1))
    before = _iam_calls(sim)
    failures: list[BaseException] = []
    barrier = threading.Barrier(10)
    with _client(sim, _password(sim), pool_size=10) as client:
        cid = sim.world.clusters()[0].id
        name = sim.world.jobs(cid)[0].name

        def work() -> None:
            try:
                barrier.wait(5)
                client.job_status(cid, name)
            except BaseException as exc:  # asserted below
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert not failures
    assert _iam_calls(sim) - before == 1


def test_concurrent_callers_share_one_iam_failure(sim: Simulator) -> None:
    # slow, so that all five wait for it: a caller arriving after the failure would ask again
    sim.add_fault(Fault(endpoint="iam_token", status=500, delay=2.0, count=1))
    before = _iam_calls(sim)
    auth = _password(sim)
    caught: list[BaseException] = []
    barrier = threading.Barrier(5)

    def work() -> None:
        try:
            barrier.wait(5)
            auth.token()
        except BaseException as exc:  # asserted below
            caught.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(caught) == 5 and all(type(e) is ServerError and e.endpoint == "iam_token" for e in caught)
    assert len({id(e) for e in caught}) == 5  # one instance per thread
    assert _iam_calls(sim) - before == 1
    assert auth.token()  # the failure is not cached


def test_waiting_for_a_token_respects_the_deadline(sim: Simulator) -> None:
    sim.add_fault(Fault(endpoint="iam_token", kind="delay", delay=1.0, count=1))
    with _client(sim, _password(sim)) as client, pytest.raises(TimeoutError_) as info:
        client.list_clusters(timeout=0.3)
    assert info.value.endpoint == "iam_token"


def test_aksk_accepted_and_wrong_secret_refused(sim: Simulator) -> None:
    with _client(sim, AkSkAuth(ACCESS_KEY, SECRET_KEY, sim.settings.project_id)) as client:
        clusters = client.list_clusters()
        assert clusters
        assert client.list_jobs_page(clusters[0].id, "NORMAL_JOB", 1).jobs
    wrong = AkSkAuth(ACCESS_KEY, "not-the-secret", sim.settings.project_id)
    with _client(sim, wrong) as client, pytest.raises(AuthError) as info:
        client.list_clusters()
    assert info.value.status == 401


def test_password_errors(sim: Simulator) -> None:
    with _client(sim, _password(sim, "wrong-password")) as client, pytest.raises(AuthError) as info:
        client.list_clusters()
    assert (info.value.endpoint, info.value.status) == ("iam_token", 401)
    sim.add_fault(Fault(endpoint="iam_token", kind="html", count=1))
    with pytest.raises(MalformedResponse) as malformed:
        _password(sim).token()
    assert malformed.value.endpoint == "iam_token"
    sim.add_fault(
        Fault(endpoint="iam_token", status=201, body='{"token": {}}', count=1)
    )  # no X-Subject-Token
    with pytest.raises(MalformedResponse, match="X-Subject-Token"):
        _password(sim).token()


# --- secrets never leak -----------------------------------------------------------------------------

SECRETS = (PASSWORD, TOKEN, SECRET_KEY, "wrong-password", "not-the-secret", "bad-static-token")


def test_no_secret_in_any_error_or_log_line(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """Every error path of every mode, with all loggers at DEBUG (urllib3's included)."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    cid = sim.world.clusters()[0].id
    issued: list[str] = []

    def run(auth: CdmAuth, *, slow: bool) -> None:
        texts.append(repr(auth))
        with _client(sim, auth, read_timeout=0.2) as client:
            texts.append(repr(client))
            calls: list[Callable[[], object]] = [
                client.list_clusters,
                lambda: client.job_status(cid, "x"),
                lambda: client.list_jobs_page(cid, "NORMAL_JOB", 1),
            ]
            for call in calls[:1] if slow else calls:  # a hang costs a timeout per call
                try:
                    call()
                except CdmError as exc:
                    chain: BaseException | None = exc
                    while chain is not None:
                        texts.extend([str(chain), repr(chain), repr(vars(chain))])
                        chain = chain.__cause__ or chain.__context__

    faults = [
        None,
        Fault(endpoint="*", status=401),
        Fault(endpoint="*", status=403),
        Fault(endpoint="*", status=429),
        Fault(endpoint="*", status=500),
        Fault(endpoint="*", kind="malformed"),
        Fault(endpoint="*", kind="html"),
        Fault(endpoint="*", kind="reset"),
        Fault(endpoint="*", kind="hang"),
    ]
    for fault in faults:
        sim.clear_faults()
        if fault is not None:
            sim.add_fault(fault)
        slow = fault is not None and fault.kind == "hang"
        run(TokenAuth("bad-static-token"), slow=slow)
        run(TokenAuth(TOKEN), slow=slow)
        password_auth = _password(sim)
        run(password_auth, slow=slow)
        if password_auth._token is not None:  # the IAM-issued token is a secret too
            issued.append(password_auth._token.reveal())
        run(_password(sim, "wrong-password"), slow=slow)
        run(AkSkAuth(ACCESS_KEY, SECRET_KEY, sim.settings.project_id, security_token="STS-SECRET"), slow=slow)
        run(AkSkAuth(ACCESS_KEY, "not-the-secret", sim.settings.project_id), slow=slow)
    sim.clear_faults()
    everything = "\n".join(texts) + "\n" + caplog.text
    assert "iam_token" in everything and "list_clusters" in everything  # the capture did capture
    for secret in (*SECRETS, "STS-SECRET", *issued):
        assert secret not in everything, f"secret {secret[:4]}... leaked"


def test_requests_exceptions_are_not_chained(caplog: pytest.LogCaptureFixture) -> None:
    """The typed error replaces the requests exception (whose text holds the URL and reprs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = CdmClient(endpoint=f"http://127.0.0.1:{port}", project_id="p", auth=TokenAuth("tok-secret"))
    with client, pytest.raises(TransportError) as info:
        client.list_clusters()
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not isinstance(info.value, requests.RequestException)
