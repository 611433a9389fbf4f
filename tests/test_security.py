"""Security properties of the exporter, checked from the outside (README "Security").

* Secrets (token, IAM password, access key, secret key, security token, and the tokens IAM
  issues) appear nowhere: not in logs at any level in either format, not in metrics, on the
  landing page or ``/probe``, not in ``cdm-exporter check`` output, not in exception text of
  any authentication failure; neither raw nor base64-, percent- or JSON-encoded.
* TLS certificates of the API are verified unless a CA bundle says otherwise.
* Requests go to the configured endpoints only: none is sent elsewhere, no redirect is followed.
* The exporter's own web configuration (``--web.config.file``): basic auth on every path but
  the health probes, TLS, and mutual TLS.
"""

from __future__ import annotations

import base64
import http.server
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import bcrypt
import pytest
import requests
import yaml
from exporter_stack import ExporterServer, Exposition, scrape, wait_until
from prometheus_server import free_port
from sim_targets import sim_target
from tls_certs import TLSCerts, make_tls_certs, openssl_available

from cdm_exporter.api.auth import AkSkAuth, CdmAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.errors import CdmError
from cdm_exporter.cli.service import Service
from cdm_exporter.config import (
    AkSkAuthConfig,
    CollectionConfig,
    Config,
    PasswordAuthConfig,
    Secret,
    TokenAuthConfig,
)
from cdm_exporter.config.webconfig import load_web_config
from cdm_exporter.logs import JsonFormatter, LogfmtFormatter
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings
from cdm_exporter.simulator.auth import IssuedToken

REPO = Path(__file__).resolve().parent.parent

TOKEN = "S3CRET-TOKEN/xyz+1="
PASSWORD = 'S3CRET-PASS"word\\/+2='
ACCESS_KEY = "S3CRETAKxyz3"
SECRET_KEY = "S3CRET-SK/xyz+4="
SECURITY_TOKEN = "S3CRET-STS/xyz+5="
SECRETS = (TOKEN, PASSWORD, ACCESS_KEY, SECRET_KEY, SECURITY_TOKEN)
WEB_USER, WEB_PASSWORD = "prometheus", "S3CRET-WEB-pass"


def encodings(secret: str) -> set[str]:
    """The forms a secret could leak in: raw, percent-, JSON- and base64-encoded."""
    raw = secret.encode()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(encode(raw).decode().rstrip("="))
    return forms


def assert_no_secret(text: str, where: str, secrets: tuple[str, ...] = SECRETS) -> None:
    for secret in secrets:
        for form in encodings(secret):
            assert form not in text, f"{where} shows a secret ({form[:12]}...)"


def record_issued_tokens(sim: Simulator) -> list[str]:
    """A list that receives every token the simulator's IAM issues from now on."""
    issued: list[str] = []
    issue = sim.tokens.issue

    def recording(user: str, project_id: str) -> IssuedToken:
        token = issue(user, project_id)
        issued.append(token.value)
        return token

    sim.tokens.issue = recording  # type: ignore[method-assign]
    return issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    if not openssl_available():
        pytest.skip("needs the openssl binary")
    return make_tls_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


# --- secrets ---------------------------------------------------------------------------------------


@dataclass
class SecretWorld:
    """A simulator accepting the secrets, and one refusing each of them."""

    good: Simulator
    bad: Simulator
    directory: Path
    issued: list[str]  # tokens the good simulator's IAM issued
    env: dict[str, str] = field(default_factory=dict)

    def config_file(self) -> Path:
        good, bad = self.good, self.bad
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD + "\n")
        sts_file = self.directory / "sts"
        sts_file.write_text(SECURITY_TOKEN)
        token_file = self.directory / "token"
        token_file.write_text(TOKEN)
        for path in (password_file, sts_file, token_file):
            path.chmod(0o600)
        user = {"domain": good.settings.iam_domain, "user": good.settings.iam_user}

        def target(name: str, sim: Simulator, auth: dict[str, Any]) -> dict[str, Any]:
            return {
                "name": name,
                "region": sim.settings.region,
                "project_id": sim.settings.project_id,
                "endpoint": sim.url,
                "iam_endpoint": sim.url,
                "auth": auth,
            }

        document = {
            "targets": [
                target("token-ok", good, {"token": TOKEN}),
                target("password-ok", good, {"password": {**user, "password_file": str(password_file)}}),
                target(
                    "aksk-ok",
                    good,
                    {
                        "aksk": {
                            "access_key": ACCESS_KEY,
                            "secret_key_env": "CDM_TEST_SECRET_KEY",
                            "security_token_file": str(sts_file),
                        }
                    },
                ),
                target("token-refused", bad, {"token_file": str(token_file)}),
                target("password-refused", bad, {"password": {**user, "password": PASSWORD}}),
                target(
                    "aksk-refused",
                    bad,
                    {
                        "aksk": {
                            "access_key": ACCESS_KEY,
                            "secret_key": SECRET_KEY,
                            "security_token": SECURITY_TOKEN,
                        }
                    },
                ),
            ],
            "collection": {"history_interval": "0s", "job_list_interval": "0s"},
        }
        path = self.directory / "config.yml"
        path.write_text(yaml.safe_dump(document))
        path.chmod(0o600)
        self.env = {"CDM_TEST_SECRET_KEY": SECRET_KEY}
        return path


@pytest.fixture
def secret_world(tmp_path: Path) -> Iterator[SecretWorld]:
    credentials = {
        "token": TOKEN,
        "iam_password": PASSWORD,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
    }
    wrong = {"token": "other-token", "iam_password": "other-password", "secret_key": "other-secret-key"}
    with (
        Simulator(SimulatorSettings(clusters=2, jobs=3, rate_limit=0, time_scale=600, **credentials)) as good,  # type: ignore[arg-type]
        Simulator(SimulatorSettings(clusters=1, jobs=1, rate_limit=0, access_key=ACCESS_KEY, **wrong)) as bad,  # type: ignore[arg-type]
    ):
        yield SecretWorld(good, bad, tmp_path, record_issued_tokens(good))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdm_exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(env),
        cwd=REPO,
        check=False,
    )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    drop = ("CDM_EXPORTER_", "HUAWEICLOUD_SDK_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    return {**env, **(extra or {})}


class ServeProcess:
    """``cdm-exporter serve`` in a subprocess. Its output goes to files in ``directory`` (a pipe
    nobody reads would fill up with debug lines and block the process), read after it stops."""

    def __init__(
        self, directory: Path, *args: str, env: dict[str, str] | None = None, scheme: str = "http"
    ) -> None:
        self.port = free_port()
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self._out, self._err = directory / f"serve-{self.port}.out", directory / f"serve-{self.port}.err"
        command = [sys.executable, "-m", "cdm_exporter", "serve"]
        command += ["--web.listen-address", f"127.0.0.1:{self.port}", *args]
        with self._out.open("w") as out, self._err.open("w") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=clean_env(env), cwd=REPO)

    def _read(self) -> tuple[str, str]:
        return self._out.read_text(encoding="utf-8"), self._err.read_text(encoding="utf-8")

    def wait_listening(self, timeout: float = 30) -> None:
        def listening() -> bool:
            assert self.process.poll() is None, self._read()[1][-3000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout, "cdm-exporter serve did not start listening")

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        out, err = self._read()
        return self.process.returncode, out, err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_appear_in_no_log_page_metric_or_check_output(
    secret_world: SecretWorld, log_format: str
) -> None:
    world = secret_world
    config = world.config_file()
    serve = ServeProcess(
        world.directory,
        "--config.file",
        str(config),
        "--log.level",
        "debug",
        "--log.format",
        log_format,
        env=world.env,
    )
    seen: list[tuple[str, str]] = []
    try:
        serve.wait_listening()
        wait_until(
            lambda: requests.get(f"{serve.base}/-/ready", timeout=5).status_code == 200, 30, "never ready"
        )

        def get(path: str) -> None:
            response = requests.get(
                f"{serve.base}{path}", headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"}, timeout=30
            )
            seen.append((path, response.text))
            seen.append((f"{path} headers", str(response.headers)))

        get("/metrics")
        get("/metrics")  # statuses and run histories of the second collection
        for name in (
            "token-ok",
            "password-ok",
            "aksk-ok",
            "token-refused",
            "password-refused",
            "aksk-refused",
        ):
            get(f"/probe?target={name}")
        for path in ("/", "/-/ready", "/-/healthy", "/nope"):
            get(path)
        # a revoked IAM token: 401, renewed; then renewals failing at IAM
        world.good.revoke_tokens()
        get("/metrics")
        world.good.revoke_tokens()
        world.good.add_fault(Fault(endpoint="iam_token", status=500, count=3))
        get("/metrics")
        world.good.add_fault(Fault(endpoint="iam_token", kind="html", count=2))
        world.good.revoke_tokens()
        get("/metrics")
        world.good.clear_faults()
        reload = requests.post(f"{serve.base}/-/reload", timeout=10)
        assert reload.status_code == 200, reload.text
        seen.append(("/-/reload", reload.text))
        get("/metrics")
    finally:
        code, out, log = serve.stop()
    assert code == 0, log[-3000:]
    metrics = Exposition.parse(seen[0][1])
    assert metrics.total("cdm_api_requests_total", endpoint="iam_token", code="401") >= 1  # wrong password
    assert metrics.total("cdm_api_requests_total", code="401") >= 3  # and the refused token and signature
    assert "API call failed" in log and "configuration reloaded" in log
    assert ("level=debug" in log) or ('"level": "debug"' in log)

    check_args = ["--config.file", str(config), "--log.level", "debug", "--log.format", log_format]
    check = run_cli("check", *check_args, "--timeout", "15", env=world.env)
    assert check.returncode == 1, check.stderr[-3000:]  # the refused targets
    assert "token-refused" in check.stdout and "DOWN" in check.stdout

    secrets = (*SECRETS, *world.issued, WEB_PASSWORD)
    assert len(secrets) > len(SECRETS) + 3, "IAM issued too few tokens to mean anything"
    assert_no_secret(log, f"serve log ({log_format})", secrets)
    assert_no_secret(out, "serve stdout", secrets)
    for where, text in seen:
        assert_no_secret(text, where, secrets)
    assert_no_secret(check.stdout, "check stdout", secrets)
    assert_no_secret(check.stderr, f"check log ({log_format})", secrets)


def collect_error_text(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def test_no_secret_in_exception_text_or_debug_records(
    secret_world: SecretWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """Each authentication failure, forced in-process: the exceptions, their causes and every
    log record (rendered by both formatters, ``extra`` fields included) are free of secrets."""
    good, bad = secret_world.good, secret_world.bad
    texts: list[str] = []
    pid = good.settings.project_id
    user = (good.settings.iam_domain, good.settings.iam_user)

    def failing(name: str, client: CdmClient) -> None:
        with pytest.raises(CdmError) as raised:
            client.list_clusters(timeout=10)
        texts.append(f"{name}: " + collect_error_text(raised.value))
        texts.append(repr(client))
        client.close()

    caplog.set_level(logging.DEBUG)

    def client(sim: Simulator, auth: CdmAuth) -> CdmClient:
        return CdmClient(endpoint=sim.url, project_id=pid, auth=auth)

    failing("wrong password", client(bad, PasswordAuth(bad.url, *user, PASSWORD, pid)))
    failing("wrong token", client(bad, TokenAuth(TOKEN)))
    failing("wrong secret key", client(bad, AkSkAuth(ACCESS_KEY, SECRET_KEY, pid, SECURITY_TOKEN)))

    # a revoked token whose renewal fails: 401, then IAM answers 401 too
    renewing = CdmClient(endpoint=good.url, project_id=pid, auth=PasswordAuth(good.url, *user, PASSWORD, pid))
    renewing.list_clusters(timeout=10)
    good.revoke_tokens()
    good.add_fault(Fault(endpoint="iam_token", status=401, count=1))
    failing("revoked token, renewal refused", renewing)

    # IAM echoing the password back in its error message: the client masks its own secrets
    echo = json.dumps({"error": {"code": 400, "message": f"bad password {PASSWORD}, says IAM"}})
    good.add_fault(Fault(endpoint="iam_token", status=400, body=echo, count=1))
    failing("echoed secret", client(good, PasswordAuth(good.url, *user, PASSWORD, pid)))

    # the same through the exporter, whose log records carry the errors in extra fields
    config = Config(
        targets=(
            sim_target(bad, "password", auth=PasswordAuthConfig(*user, Secret(PASSWORD))),
            sim_target(bad, "token", auth=TokenAuthConfig(Secret(TOKEN))),
            sim_target(
                bad, "aksk", auth=AkSkAuthConfig(ACCESS_KEY, Secret(SECRET_KEY), Secret(SECURITY_TOKEN))
            ),
        ),
        collection=CollectionConfig(),
    )
    exporter = Exporter(config)
    try:
        exporter.collect(5)
        exporter.collect(5)
        snapshot = exporter.snapshot()
    finally:
        exporter.close()
    assert {t.up for t in snapshot.targets} == {False}
    texts += [f"{t.name}: {t.error}" for t in snapshot.targets]
    # the access key is an identifier the configuration shows (it travels in clear in every
    # signed request's Authorization header); everything that is secret stays hidden
    for shown in (repr(config), str(config)):
        assert_no_secret(shown, "repr(config)", tuple(s for s in SECRETS if s != ACCESS_KEY))

    assert len(caplog.records) > 5
    for formatter in (LogfmtFormatter(), JsonFormatter()):
        texts += [formatter.format(record) for record in caplog.records]
    secrets = (*SECRETS, *secret_world.issued)
    for text in texts:
        assert_no_secret(text, text[:80], secrets)
    assert any("wrong password" in t and "AuthError" in t for t in texts)


# --- TLS of the API ------------------------------------------------------------------------------------


def test_api_tls_is_verified_unless_a_ca_bundle_is_given(
    certs: TLSCerts, exporter_server: ExporterServer, no_proxy_env: None
) -> None:
    settings = SimulatorSettings(
        clusters=1, jobs=1, rate_limit=0, certfile=str(certs.server_cert), keyfile=str(certs.server_key)
    )
    with Simulator(settings) as sim:
        assert sim.url.startswith("https://")
        labels = {"project_id": sim.settings.project_id, "region": sim.settings.region}

        exporter_server.mount(Exporter(Config(targets=(sim_target(sim, "default"),))))
        refused = exporter_server.scrape(5).exposition
        assert exporter_server.exporter is not None
        error = exporter_server.exporter.snapshot().targets[0].error
        exporter_server.mount(
            Exporter(Config(targets=(replace(sim_target(sim, "with-ca"), ca_bundle=str(certs.ca_cert)),)))
        )
        accepted = exporter_server.scrape(5).exposition
        exporter_server.mount(None)
        # the refused handshake never reached the API; the accepted one did
        assert sim.stats.count("list_clusters") >= 1

    assert refused.value("cdm_up", **labels) == 0
    assert refused.value("cdm_api_requests_total", endpoint="list_clusters", code="error") == 1
    assert error is not None and "TLS" in error and "CERTIFICATE_VERIFY_FAILED" in error
    assert accepted.value("cdm_up", **labels) == 1
    assert accepted.value("cdm_api_requests_total", endpoint="list_clusters", code="200") == 1


# --- where requests go ---------------------------------------------------------------------------------


class Recorder(http.server.ThreadingHTTPServer):
    """A local HTTP server that records every request; with ``redirect_to``, it answers each one
    with ``status`` and ``Location: redirect_to + path``."""

    daemon_threads = True

    def __init__(self, status: int = 200, redirect_to: str | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status = status
        self.redirect_to = redirect_to
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        payload = b'{"clusters": [], "token": {}}'
        self.send_response(self.server.status)
        if self.server.redirect_to is not None:
            self.send_header("Location", self.server.redirect_to + self.path)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Subject-Token", "trap-token")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(exporter_server: ExporterServer, no_proxy_env: None, status: int) -> None:
    trap = Recorder()
    redirector = Recorder(status, redirect_to=trap.url)
    project = "0123456789abcdef0123456789abcdef"
    try:
        targets = (
            replace(sim_target_like(redirector.url, project), name="token"),
            replace(
                sim_target_like(redirector.url, "f" * 32),
                name="password",
                auth=PasswordAuthConfig("domain", "user", Secret(PASSWORD)),
            ),
        )
        exporter_server.mount(Exporter(Config(targets=targets)))
        exp = exporter_server.scrape(5).exposition
        exporter_server.mount(None)
    finally:
        redirector.close()
        trap.close()
    assert trap.requests == [], "a redirect was followed"
    paths = sorted(path for _, path, _, _ in redirector.requests)
    assert paths == [f"/v1.1/{project}/clusters", "/v3/auth/tokens?nocatalog=true"], paths
    assert exp.value("cdm_up", project_id=project, region="cn-north-4") == 0
    assert exp.value("cdm_up", project_id="f" * 32, region="cn-north-4") == 0
    assert exp.value("cdm_api_requests_total", endpoint="list_clusters", code=str(status)) == 1
    assert exp.value("cdm_api_requests_total", endpoint="iam_token", code=str(status)) == 1


def sim_target_like(url: str, project_id: str) -> Any:
    from cdm_exporter.config import TargetConfig

    return TargetConfig(
        name="t",
        region="cn-north-4",
        project_id=project_id,
        endpoint=url,
        iam_endpoint=url,
        auth=TokenAuthConfig(Secret(TOKEN)),
    )


def test_every_request_reaches_the_configured_endpoint(
    exporter_server: ExporterServer, no_proxy_env: None
) -> None:
    """With no proxy in the environment, what the exporter counts having sent is exactly what the
    simulator counts having received, each at a known API path."""
    with Simulator(SimulatorSettings(clusters=2, jobs=4, rate_limit=0, time_scale=600)) as sim:
        settings = sim.settings
        password = PasswordAuthConfig(settings.iam_domain, settings.iam_user, Secret(settings.iam_password))
        config = Config(
            targets=(sim_target(sim, "token"), sim_target(sim, "password", auth=password)),
            collection=CollectionConfig(job_list_interval=0, history_interval=0),
        )
        exporter_server.mount(Exporter(config))
        for _ in range(3):
            exp = exporter_server.scrape(5).exposition
        exporter_server.mount(None)
        received = sim.stats.log
    sent = exp.total("cdm_api_requests_total")
    assert sent > 20
    assert len(received) == sent
    assert {r.endpoint for r in received} <= {
        "iam_token",
        "list_clusters",
        "list_jobs",
        "job_status",
        "submissions",
    }


# --- the exporter's own web configuration ------------------------------------------------------------


@pytest.fixture(scope="module")
def web_sim() -> Iterator[Simulator]:
    with Simulator(SimulatorSettings(clusters=1, jobs=2, rate_limit=0)) as sim:
        yield sim


@pytest.fixture
def web_service(tmp_path: Path, web_sim: Simulator) -> Iterator[Callable[[str], tuple[Service, str]]]:
    started: list[Service] = []

    def start(web_yaml: str) -> tuple[Service, str]:
        path = tmp_path / "web.yml"
        path.write_text(web_yaml)
        service = Service(
            Config(targets=(sim_target(web_sim, "sim-target"),)), web_config=load_web_config(path)
        )
        http = service.start("127.0.0.1:0")
        started.append(service)
        return service, http.url()

    yield start
    for service in started:
        service.stop()


def users_yaml() -> str:
    digest = bcrypt.hashpw(WEB_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"basic_auth_users:\n  {WEB_USER}: '{digest}'\n"


def tls_yaml(certs: TLSCerts, *, client_auth: bool = False) -> str:
    text = f"tls_server_config:\n  cert_file: {certs.server_cert}\n  key_file: {certs.server_key}\n"
    if client_auth:
        text += f"  client_ca_file: {certs.ca_cert}\n  client_auth_type: RequireAndVerifyClientCert\n"
    return text


def test_basic_auth_guards_every_path_but_the_health_probes(
    web_service: Callable[[str], tuple[Service, str]],
) -> None:
    _, base = web_service(users_yaml())
    good = (WEB_USER, WEB_PASSWORD)
    wrong = (None, (WEB_USER, "wrong"), ("someone", WEB_PASSWORD), (WEB_USER, WEB_PASSWORD + "x"))
    # a refused password is answered a second late: the four of a path are sent at once (three
    # password checks, fewer than may queue), so the refusals take a second per path, not four
    with ThreadPoolExecutor(max_workers=len(wrong)) as pool:
        for path in ("/metrics", "/probe?target=sim-target", "/", "/nope"):

            def get(auth: tuple[str, str] | None, path: str = path) -> requests.Response:
                return requests.get(base + path, auth=auth, timeout=10)

            for auth, refused in zip(wrong, pool.map(get, wrong), strict=True):
                assert refused.status_code == 401, (path, auth)
                assert refused.headers["WWW-Authenticate"].startswith("Basic")
                assert "cdm_" not in refused.text and "sim-target" not in refused.text
    assert requests.post(f"{base}/-/reload", timeout=10).status_code == 401
    wait_until(lambda: requests.get(f"{base}/-/ready", timeout=5).status_code == 200, 20, "never ready")
    assert requests.get(f"{base}/-/healthy", timeout=5).status_code == 200

    metrics = requests.get(f"{base}/metrics", auth=good, timeout=10)
    assert metrics.status_code == 200 and "cdm_up{" in metrics.text
    probe = requests.get(f"{base}/probe?target=sim-target", auth=good, timeout=10)
    assert probe.status_code == 200 and "cdm_up{" in probe.text
    landing = requests.get(f"{base}/", auth=good, timeout=10)
    assert landing.status_code == 200 and "sim-target" in landing.text


def test_a_wrong_password_flood_neither_blocks_scrapes_nor_health_probes(
    web_service: Callable[[str], tuple[Service, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password checks are made to hang (a flood of cost-12 checks, frozen): the flood fills the
    queue of checks and then gets 429 at once; the scraper, whose credentials were checked before,
    and the unauthenticated health probes are served meanwhile; threads stay bounded."""
    _, base = web_service(users_yaml())
    good = (WEB_USER, WEB_PASSWORD)
    assert requests.get(f"{base}/metrics", auth=good, timeout=10).status_code == 200  # now cached
    release = threading.Event()
    real_checkpw = bcrypt.checkpw

    def frozen_checkpw(password: bytes, hashed: bytes) -> bool:
        release.wait(60)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", frozen_checkpw)
    flood_codes: list[int] = []
    flood = [
        threading.Thread(
            target=lambda i=i: flood_codes.append(
                requests.get(f"{base}/metrics", auth=(WEB_USER, f"guess-{i}"), timeout=60).status_code
            )
        )
        for i in range(40)
    ]
    threads_before = threading.active_count()
    for thread in flood:
        thread.start()
    try:
        wait_until(
            lambda: flood_codes.count(429) >= 40 - 8, 30, f"the flood was not turned away: {flood_codes}"
        )
        assert requests.get(f"{base}/metrics", auth=good, timeout=10).status_code == 200
        assert requests.get(f"{base}/-/healthy", timeout=10).status_code == 200
        assert requests.get(f"{base}/-/ready", timeout=10).status_code in (200, 503)
        # 40 client threads of the test, and the server's bounded pools: not a thread per request
        assert threading.active_count() <= threads_before + 40 + 16 + 2
    finally:
        release.set()
        for thread in flood:
            thread.join(60)
    assert sorted(set(flood_codes)) == [401, 429] and flood_codes.count(401) <= 8


def test_readiness_names_failing_targets_only_to_an_authenticated_caller(
    web_service: Callable[[str], tuple[Service, str]], web_sim: Simulator
) -> None:
    service, base = web_service(users_yaml())
    broken = sim_target(web_sim, "broken-target", auth=TokenAuthConfig(Secret("wrong")))
    service.exporter.apply(Config(targets=(sim_target(web_sim, "sim-target"), broken)))
    assert requests.get(f"{base}/metrics", auth=(WEB_USER, WEB_PASSWORD), timeout=10).status_code == 200
    anonymous = requests.get(f"{base}/-/ready", timeout=10)
    assert anonymous.status_code == 200 and "1 target(s) failing" in anonymous.text
    assert "broken-target" not in anonymous.text
    wrong = requests.get(f"{base}/-/ready", auth=(WEB_USER, "wrong"), timeout=10)
    assert "broken-target" not in wrong.text
    told = requests.get(f"{base}/-/ready", auth=(WEB_USER, WEB_PASSWORD), timeout=10)
    assert told.status_code == 200 and "broken-target" in told.text


def test_tls_is_served_and_plain_http_gets_no_metrics(
    web_service: Callable[[str], tuple[Service, str]], certs: TLSCerts
) -> None:
    _, base = web_service(tls_yaml(certs) + users_yaml())
    assert base.startswith("https://")
    response = requests.get(
        f"{base}/metrics", verify=str(certs.ca_cert), auth=(WEB_USER, WEB_PASSWORD), timeout=10
    )
    assert response.status_code == 200 and "cdm_up{" in response.text
    plain = base.replace("https://", "http://")
    for path in ("/metrics", "/-/healthy"):
        try:
            answer = requests.get(plain + path, auth=(WEB_USER, WEB_PASSWORD), timeout=10)
        except requests.ConnectionError:
            continue
        assert answer.status_code != 200 and "cdm_" not in answer.text
    with pytest.raises(requests.exceptions.SSLError):  # the certificate is checked by clients
        requests.get(f"{base}/-/healthy", timeout=10)


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(
    web_service: Callable[[str], tuple[Service, str]], certs: TLSCerts
) -> None:
    _, base = web_service(tls_yaml(certs, client_auth=True))
    ca = str(certs.ca_cert)
    ok = requests.get(
        f"{base}/metrics", verify=ca, cert=(str(certs.client_cert), str(certs.client_key)), timeout=10
    )
    assert ok.status_code == 200 and "cdm_up{" in ok.text
    for cert in (None, (str(certs.rogue_client_cert), str(certs.rogue_client_key))):
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.get(f"{base}/-/healthy", verify=ca, cert=cert, timeout=10)
    # also at the socket level: no handshake completes without a client certificate
    context = ssl.create_default_context(cafile=ca)
    port = int(base.rsplit(":", 1)[1])

    def answer_without_client_certificate() -> bytes:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(100)  # with TLS 1.3 the refusal arrives here, not in the handshake
        except (ssl.SSLError, OSError):
            return b""

    assert answer_without_client_certificate() == b""


def test_serve_command_applies_the_web_config_file(
    tmp_path: Path, web_sim: Simulator, certs: TLSCerts
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(tls_yaml(certs) + users_yaml())
    config = tmp_path / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "sim",
                        "region": web_sim.settings.region,
                        "project_id": web_sim.settings.project_id,
                        "endpoint": web_sim.url,
                        "iam_endpoint": web_sim.url,
                        "auth": {"token": web_sim.settings.token},
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    serve = ServeProcess(
        tmp_path, "--config.file", str(config), "--web.config.file", str(web), scheme="https"
    )
    try:
        serve.wait_listening()
        ca = str(certs.ca_cert)
        ok = scrape(f"{serve.base}/metrics", 5, verify=ca, auth=(WEB_USER, WEB_PASSWORD))
        assert (
            ok.status == 200
            and ok.exposition.value(
                "cdm_up", project_id=web_sim.settings.project_id, region=web_sim.settings.region
            )
            == 1
        )
        assert requests.get(f"{serve.base}/metrics", verify=ca, timeout=10).status_code == 401
        assert requests.get(f"{serve.base}/-/healthy", verify=ca, timeout=10).status_code == 200
    finally:
        code, _, log = serve.stop()
    assert code == 0, log[-2000:]
    assert_no_secret(log, "serve log", (WEB_PASSWORD,))
