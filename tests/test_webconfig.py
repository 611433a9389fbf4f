"""The exporter-toolkit web configuration: parsing, basic auth, and TLS over real loopback sockets."""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bcrypt
import pytest
from tls_certs import TLSCerts, client_context, make_tls_certs, openssl_available

from cdm_exporter.config import webconfig
from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.webconfig import ClientAuthType, WebConfig, load_web_config

pytestmark = pytest.mark.skipif(not openssl_available(), reason="needs the openssl binary")

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
METRICS = b"cdm_up 1\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSCerts:
    return make_tls_certs(tmp_path_factory.mktemp("tls"))


def write(tmp_path: Path, text: str, name: str = "web.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw).decode("ascii")


def tls_yaml(certs: TLSCerts, **extra: str) -> str:
    lines = [f"  cert_file: {certs.server_cert}", f"  key_file: {certs.server_key}"]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Parsing: every bad input names its key


BAD_CONFIGS: list[tuple[str, str, str]] = [
    # (id, YAML with {placeholders} filled in by the fixture below, expected key); {tls} = cert + key
    ("invalid-yaml", "basic_auth_users: {alice: [unclosed\n", "web.config.file"),
    ("not-a-mapping", "- tls_server_config\n", "web.config.file"),
    ("duplicate-key", "basic_auth_users: {}\nbasic_auth_users: {}\n", "web.config.file"),
    ("unknown-top-level-key", "tls_config: {}\n", "tls_config"),
    ("rate-limit-unsupported", "rate_limit: {interval: 1s, burst: 5}\n", "rate_limit"),
    ("tls-section-wrong-type", "tls_server_config: yes\n", "tls_server_config"),
    ("unknown-tls-key", "tls_server_config: {certfile: x}\n", "tls_server_config.certfile"),
    (
        "cert-file-wrong-type",
        "tls_server_config: {cert_file: 12, key_file: k}\n",
        "tls_server_config.cert_file",
    ),
    ("cert-without-key", "tls_server_config: {cert_file: '{cert}'}\n", "tls_server_config.key_file"),
    ("key-without-cert", "tls_server_config: {key_file: '{key}'}\n", "tls_server_config.cert_file"),
    (
        "auth-type-without-cert",
        "tls_server_config: {client_auth_type: NoClientCert}\n",
        "tls_server_config.cert_file",
    ),
    ("inline-cert", "tls_server_config: {cert: '-----BEGIN', key_file: k}\n", "tls_server_config.cert"),
    (
        "cert-missing",
        "tls_server_config: {cert_file: nope.crt, key_file: '{key}'}\n",
        "tls_server_config.cert_file",
    ),
    ("cert-is-dir", "tls_server_config: {cert_file: /, key_file: '{key}'}\n", "tls_server_config.cert_file"),
    (
        "cert-garbage",
        "tls_server_config: {cert_file: '{garbage}', key_file: '{key}'}\n",
        "tls_server_config.cert_file",
    ),
    (
        "cert-is-a-key",
        "tls_server_config: {cert_file: '{key}', key_file: '{key}'}\n",
        "tls_server_config.cert_file",
    ),
    (
        "key-missing",
        "tls_server_config: {cert_file: '{cert}', key_file: nope.key}\n",
        "tls_server_config.key_file",
    ),
    (
        "key-garbage",
        "tls_server_config: {cert_file: '{cert}', key_file: '{garbage}'}\n",
        "tls_server_config.key_file",
    ),
    (
        "key-mismatch",
        "tls_server_config: {cert_file: '{cert}', key_file: '{client_key}'}\n",
        "tls_server_config.key_file",
    ),
    (
        "key-encrypted",
        "tls_server_config: {cert_file: '{cert}', key_file: '{encrypted_key}'}\n",
        "tls_server_config.key_file",
    ),
    (
        "bad-client-auth-type",
        "tls_server_config: {{tls}, client_auth_type: VerifyAlways}\n",
        "tls_server_config.client_auth_type",
    ),
    (
        "verify-without-ca",
        "tls_server_config: {{tls}, client_auth_type: RequireAndVerifyClientCert}\n",
        "tls_server_config.client_ca_file",
    ),
    (
        "ca-without-client-auth",
        "tls_server_config: {{tls}, client_ca_file: '{ca}'}\n",
        "tls_server_config.client_auth_type",
    ),
    (
        "client-ca-garbage",
        "tls_server_config: {{tls}, client_ca_file: '{garbage}',"
        " client_auth_type: RequireAndVerifyClientCert}\n",
        "tls_server_config.client_ca_file",
    ),
    (
        "client-ca-missing",
        "tls_server_config: {{tls}, client_ca_file: nope.pem, client_auth_type: VerifyClientCertIfGiven}\n",
        "tls_server_config.client_ca_file",
    ),
    (
        "client-allowed-sans",
        "tls_server_config: {{tls}, client_allowed_sans: [a]}\n",
        "tls_server_config.client_allowed_sans",
    ),
    (
        "min-version-unknown",
        "tls_server_config: {{tls}, min_version: TLS14}\n",
        "tls_server_config.min_version",
    ),
    (
        "min-version-wrong-type",
        "tls_server_config: {{tls}, min_version: 1.2}\n",
        "tls_server_config.min_version",
    ),
    (
        "max-below-min",
        "tls_server_config: {{tls}, min_version: TLS13, max_version: TLS12}\n",
        "tls_server_config.max_version",
    ),
    (
        "unknown-cipher",
        "tls_server_config: {{tls}, cipher_suites: [TLS_FAST_AND_LOOSE]}\n",
        "tls_server_config.cipher_suites[0]",
    ),
    (
        "cipher-suites-not-a-list",
        "tls_server_config: {{tls}, cipher_suites: TLS_AES_128_GCM_SHA256}\n",
        "tls_server_config.cipher_suites",
    ),
    (
        "unknown-curve",
        "tls_server_config: {{tls}, curve_preferences: [CurveP256, P999]}\n",
        "tls_server_config.curve_preferences[1]",
    ),
    (
        "prefer-server-not-bool",
        "tls_server_config: {{tls}, prefer_server_cipher_suites: maybe}\n",
        "tls_server_config.prefer_server_cipher_suites",
    ),
    ("http-unknown-key", "http_server_config: {keepalive: true}\n", "http_server_config.keepalive"),
    ("http2-not-bool", "http_server_config: {http2: 'on'}\n", "http_server_config.http2"),
    (
        "header-not-allowed",
        "http_server_config: {headers: {X-Powered-By: me}}\n",
        "http_server_config.headers.X-Powered-By",
    ),
    (
        "header-bad-value",
        "http_server_config: {headers: {X-Frame-Options: allow}}\n",
        "http_server_config.headers.X-Frame-Options",
    ),
    ("users-not-a-mapping", "basic_auth_users: [alice]\n", "basic_auth_users"),
    ("user-name-not-a-string", "basic_auth_users: {yes: '{hash}'}\n", "basic_auth_users"),
    ("user-name-with-colon", "basic_auth_users: {'a:b': '{hash}'}\n", "basic_auth_users.a:b"),
    ("hash-is-a-password", "basic_auth_users: {alice: hunter2}\n", "basic_auth_users.alice"),
    ("hash-truncated", "basic_auth_users: {alice: '{short_hash}'}\n", "basic_auth_users.alice"),
    ("hash-not-a-string", "basic_auth_users: {alice: 12345}\n", "basic_auth_users.alice"),
    ("hash-cost-too-high", "basic_auth_users: {alice: '{cost_hash}'}\n", "basic_auth_users.alice"),
]


@pytest.fixture(scope="module")
def placeholders(certs: TLSCerts) -> dict[str, str]:
    garbage = certs.directory / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    encrypted = certs.directory / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(certs.server_key), "-aes256", "-passout", "pass:secret",
         "-out", str(encrypted)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {
        "tls": "cert_file: '{cert}', key_file: '{key}'",
        "ca": str(certs.ca_cert),
        "cert": str(certs.server_cert),
        "key": str(certs.server_key),
        "client_key": str(certs.client_key),
        "garbage": str(garbage),
        "encrypted_key": str(encrypted),
        "hash": HASH,
        "short_hash": HASH[:-2],
        "cost_hash": "$2b$32$" + HASH[7:],
    }


@pytest.mark.parametrize(
    ("text", "key"), [(t, k) for _, t, k in BAD_CONFIGS], ids=[i for i, _, _ in BAD_CONFIGS]
)
def test_bad_input_names_the_key(tmp_path: Path, placeholders: dict[str, str], text: str, key: str) -> None:
    for name, value in placeholders.items():
        text = text.replace("{" + name + "}", value)
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    assert caught.value.key == key, str(caught.value)
    assert str(caught.value).startswith(key + ": ")
    for secret in (HASH, HASH[7:29], "hunter2", PASSWORD, "secret"):
        assert secret not in str(caught.value)


def test_unreadable_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(tmp_path / "missing.yml")
    assert caught.value.key == "web.config.file"
    assert "missing.yml" in caught.value.message


def test_yaml_error_does_not_quote_the_line_holding_a_hash(tmp_path: Path) -> None:
    # PyYAML's own message would print this line, hash included.
    path = write(tmp_path, f"basic_auth_users:\n  alice: {HASH} ]\n  bob: [\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert caught.value.key == "web.config.file"
    assert caught.value.message.startswith(f"{path}:4:1: invalid YAML")  # where, as in the main config
    assert HASH[7:] not in str(caught.value)


UNKNOWN_KEYS: list[tuple[str, str, str]] = [
    # (YAML, expected key, expected message): the same "did you mean" as the main configuration
    ("tls_server_confg: {}\n", "tls_server_confg", "unknown key; did you mean 'tls_server_config'?"),
    ("basic_auth_user: {}\n", "basic_auth_user", "unknown key; did you mean 'basic_auth_users'?"),
    (
        "tls_server_config: {certfile: x}\n",
        "tls_server_config.certfile",
        "unknown key; did you mean 'cert_file'?",
    ),
    (
        "tls_server_config: {Min_Version: TLS12}\n",
        "tls_server_config.Min_Version",
        "unknown key; did you mean 'min_version'?",
    ),
    (
        "http_server_config: {http_2: true}\n",
        "http_server_config.http_2",
        "unknown key; did you mean 'http2'?",
    ),
    (
        "http_server_config: {headers: {X-Frame-Option: deny}}\n",
        "http_server_config.headers.X-Frame-Option",
        "unknown key; did you mean 'X-Frame-Options'?",
    ),
    (
        "colour: blue\n",
        "colour",
        "unknown key; allowed keys: tls_server_config, http_server_config, basic_auth_users, rate_limit",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), UNKNOWN_KEYS, ids=[k for _, k, _ in UNKNOWN_KEYS])
def test_unknown_keys_get_a_did_you_mean(tmp_path: Path, text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    assert (caught.value.key, caught.value.message) == (key, message)


def test_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config.tls is None
    assert dict(config.basic_auth_users) == {}
    assert config.ssl_context() is None
    assert config.authorized(None)
    assert config.authorized("Basic garbage")


def test_empty_tls_section_means_plain_http(tmp_path: Path) -> None:
    # As exporter-toolkit: TLS is enabled only once a certificate, key, CA or auth type is set.
    config = load_web_config(write(tmp_path, "tls_server_config: {cert_file: '', key_file: ''}\n"))
    assert config.tls is None


def test_full_config_is_parsed(tmp_path: Path, certs: TLSCerts) -> None:
    text = tls_yaml(
        certs,
        client_ca_file=str(certs.ca_cert),
        client_auth_type="RequireAndVerifyClientCert",
        min_version="TLS13",
        max_version="TLS13",
        cipher_suites="[TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]",
        prefer_server_cipher_suites="false",
        curve_preferences="[X25519, CurveP256]",
    )
    text += "http_server_config:\n  http2: false\n  headers:\n"
    text += "    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: ''\n"
    text += f"basic_auth_users:\n  alice: '{HASH}'\n  bob: '{HASH.replace('$2b$', '$2y$')}'\n"
    config = load_web_config(write(tmp_path, text))

    assert config.tls is not None
    assert config.tls.cert_file == certs.server_cert
    assert config.tls.client_ca_file == certs.ca_cert
    assert config.tls.client_auth_type is ClientAuthType.REQUIRE_AND_VERIFY_CLIENT_CERT
    assert config.tls.min_version is ssl.TLSVersion.TLSv1_3
    assert config.tls.max_version is ssl.TLSVersion.TLSv1_3
    # The TLS 1.3 suite is accepted but not configurable, as in Go.
    assert config.tls.cipher_suites == ("ECDHE-RSA-AES128-GCM-SHA256",)
    assert dict(config.headers) == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
    assert set(config.basic_auth_users) == {"alice", "bob"}
    ctx = config.ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.authorized(basic("bob", PASSWORD))  # htpasswd's $2y$ prefix works
    assert "correct horse" not in repr(config)


def test_default_min_version_is_tls12(tmp_path: Path, certs: TLSCerts) -> None:
    config = load_web_config(write(tmp_path, tls_yaml(certs)))
    ctx = config.ssl_context()
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_relative_paths_resolve_against_the_config_directory(
    certs: TLSCerts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        certs.directory,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: ./server.key\n"
        "  client_ca_file: ca.crt\n  client_auth_type: VerifyClientCertIfGiven\n",
        name="relative.yml",
    )
    monkeypatch.chdir(tmp_path)  # nothing there: a cwd-relative lookup would fail
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file.resolve() == certs.server_cert.resolve()
    assert config.tls.key_file.resolve() == certs.server_key.resolve()
    assert config.tls.client_ca_file is not None
    assert config.tls.client_ca_file.resolve() == certs.ca_cert.resolve()


@pytest.mark.parametrize(
    ("auth_type", "with_ca", "expected"),
    [
        ("NoClientCert", False, ssl.CERT_NONE),
        ("RequestClientCert", False, ssl.CERT_NONE),
        ("RequestClientCert", True, ssl.CERT_OPTIONAL),
        ("RequireAnyClientCert", True, ssl.CERT_REQUIRED),
        ("RequireClientCert", True, ssl.CERT_REQUIRED),  # Go's old spelling, kept by exporter-toolkit
        ("VerifyClientCertIfGiven", True, ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", True, ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_type_mapping(
    tmp_path: Path, certs: TLSCerts, auth_type: str, with_ca: bool, expected: ssl.VerifyMode
) -> None:
    extra = {"client_auth_type": auth_type}
    if with_ca:
        extra["client_ca_file"] = str(certs.ca_cert)
    ctx = load_web_config(write(tmp_path, tls_yaml(certs, **extra))).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == expected


def test_inline_client_ca_is_supported(tmp_path: Path, certs: TLSCerts) -> None:
    pem = certs.ca_cert.read_text().strip().replace("\n", "\n    ")
    text = tls_yaml(certs, client_auth_type="RequireAndVerifyClientCert") + f"  client_ca: |\n    {pem}\n"
    ctx = load_web_config(write(tmp_path, text)).ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_cipher_table_matches_openssl_names() -> None:
    for iana, openssl_name in webconfig.CIPHER_SUITES.items():
        if openssl_name is None:
            assert iana.startswith("TLS_") and "_WITH_" not in iana  # the TLS 1.3 suites
            continue
        out = subprocess.run(
            ["openssl", "ciphers", "-stdname", openssl_name], capture_output=True, text=True, check=False
        ).stdout
        pairs = {tuple(part.strip() for part in line.split(" - ", 1)[:2]) for line in out.splitlines()}
        assert any(p[0] == iana and p[1].split()[0] == openssl_name for p in pairs), (iana, out)


# ---------------------------------------------------------------------------------------------
# Basic authentication


@pytest.fixture
def auth_config() -> WebConfig:
    return WebConfig(tls=None, basic_auth_users={"alice": HASH.encode(), "jürgen": _hash("pässwörd")})


def _hash(password: str | bytes) -> bytes:
    raw = password.encode() if isinstance(password, str) else password
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=4))


def test_basic_auth_accepts_the_right_password(auth_config: WebConfig) -> None:
    assert auth_config.authorized(basic("alice", PASSWORD))
    # The scheme is case-insensitive.
    assert auth_config.authorized("basic " + basic("alice", PASSWORD).split()[1])
    assert auth_config.authorized(basic("jürgen", "pässwörd"))  # UTF-8, as RFC 7617 says


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        basic("alice", "wrong"),
        basic("alice", ""),
        basic("alice", PASSWORD + " "),
        basic("Alice", PASSWORD),
        basic("mallory", PASSWORD),
        basic("", PASSWORD),
        basic("jürgen".encode("latin-1"), "pässwörd".encode("latin-1")),  # right text, wrong encoding
        "Bearer " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(),
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"alice").decode(),  # no colon
        "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()[:-2],  # broken padding
        "Basic dXNlcjpw\u00e4ss",  # non-ASCII in the header itself
        "Basic \u2603",
        basic("alice", PASSWORD.encode() + b"\0"),
    ],
)
def test_basic_auth_refuses(auth_config: WebConfig, header: str | None) -> None:
    assert not auth_config.authorized(header)


def test_password_may_contain_a_colon() -> None:
    config = WebConfig(tls=None, basic_auth_users={"alice": _hash("a:b:c")})
    assert config.authorized(basic("alice", "a:b:c"))
    assert not config.authorized(basic("alice", "a"))


def test_long_password_is_checked_like_bcrypt_does() -> None:
    # bcrypt reads only the first 72 bytes; bcrypt>=5 raises on longer input instead of truncating.
    long_password = b"x" * 72
    config = WebConfig(tls=None, basic_auth_users={"alice": _hash(long_password)})
    assert config.authorized(basic("alice", long_password + b"tail"))
    assert not config.authorized(basic("alice", b"y" * 100))


class CountingCheckpw:
    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self._real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls.append(hashed)
        return self._real(password, hashed)


@pytest.fixture
def checkpw(monkeypatch: pytest.MonkeyPatch) -> CountingCheckpw:
    counter = CountingCheckpw()
    monkeypatch.setattr(bcrypt, "checkpw", counter)
    return counter


def test_successful_checks_are_cached_briefly(
    auth_config: WebConfig, checkpw: CountingCheckpw, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(webconfig, "_monotonic", lambda: now[0])
    good = basic("alice", PASSWORD)
    assert auth_config.authorized(good)
    assert len(checkpw.calls) == 1
    for _ in range(5):
        now[0] += 15  # a scrape every 15 s
        assert auth_config.authorized(good)
    assert len(checkpw.calls) == 1
    now[0] += webconfig.AUTH_CACHE_TTL_SECONDS
    assert auth_config.authorized(good)
    assert len(checkpw.calls) == 2  # expired: checked again


def test_failures_are_cached_too(auth_config: WebConfig, checkpw: CountingCheckpw) -> None:
    assert auth_config.authorized(basic("alice", PASSWORD))
    for _ in range(3):
        assert not auth_config.authorized(basic("alice", "wrong"))
    assert len(checkpw.calls) == 2  # a repeated wrong password costs one bcrypt check, as in exporter-toolkit
    assert not auth_config.authorized(basic("alice", "wrong again"))
    assert len(checkpw.calls) == 3
    assert auth_config.authorized(basic("alice", PASSWORD))  # a cached failure never shadows the password


def test_one_bcrypt_check_runs_at_a_time(auth_config: WebConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    real = bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)
            return real(password, hashed)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    verdicts: list[webconfig.AuthVerdict] = []
    threads = [
        threading.Thread(
            target=lambda i=i: verdicts.append(auth_config.authenticate(basic("alice", f"x{i}")))
        )
        for i in range(webconfig.MAX_QUEUED_CHECKS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert verdicts == [webconfig.AuthVerdict.DENIED] * webconfig.MAX_QUEUED_CHECKS
    assert most == 1


def test_a_full_queue_refuses_at_once_and_cached_credentials_skip_it(
    auth_config: WebConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert auth_config.authorized(basic("alice", PASSWORD))  # cached from now on
    release = threading.Event()
    real = bcrypt.checkpw

    def blocked_checkpw(password: bytes, hashed: bytes) -> bool:
        release.wait(30)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", blocked_checkpw)
    verdicts: list[webconfig.AuthVerdict] = []
    flood = [
        threading.Thread(
            target=lambda i=i: verdicts.append(auth_config.authenticate(basic("alice", f"x{i}")))
        )
        for i in range(webconfig.MAX_QUEUED_CHECKS)
    ]
    for thread in flood:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while auth_config._auth._queued < webconfig.MAX_QUEUED_CHECKS and time.monotonic() < deadline:
            time.sleep(0.01)
        assert auth_config._auth._queued == webconfig.MAX_QUEUED_CHECKS
        # the queue is full: a new uncached check is refused unchecked, without waiting
        assert auth_config.authenticate(basic("alice", "one more")) is webconfig.AuthVerdict.BUSY
        assert not auth_config.authorized(basic("mallory", "x"))
        # the scraper's cached credentials do not wait behind the flood
        assert auth_config.authenticate(basic("alice", PASSWORD)) is webconfig.AuthVerdict.ALLOWED
    finally:
        release.set()
        for thread in flood:
            thread.join(30)
    assert verdicts == [webconfig.AuthVerdict.DENIED] * webconfig.MAX_QUEUED_CHECKS
    assert auth_config._auth._queued == 0


def test_unknown_user_costs_a_bcrypt_round_too(auth_config: WebConfig, checkpw: CountingCheckpw) -> None:
    assert not auth_config.authorized(basic("mallory", PASSWORD))
    assert not auth_config.authorized(basic("mallory", PASSWORD + "2"))
    assert len(checkpw.calls) == 2
    cost = HASH.encode()[:7]  # $2b$04$
    assert all(hashed.startswith(cost) for hashed in checkpw.calls)
    assert HASH.encode() not in checkpw.calls


def test_unknown_user_is_refused_even_if_the_dummy_hash_matched(auth_config: WebConfig) -> None:
    auth_config._auth._dummy = HASH.encode()
    assert not auth_config.authorized(basic("mallory", PASSWORD))


def test_cache_holds_no_password(auth_config: WebConfig) -> None:
    assert auth_config.authorized(basic("alice", PASSWORD))
    assert not auth_config.authorized(basic("alice", "wrong"))
    ((user, digest),) = auth_config._auth._allowed.keys()
    ((_, wrong_digest),) = auth_config._auth._denied.keys()
    assert b"wrong" not in wrong_digest
    assert user == b"alice"
    assert PASSWORD.encode() not in digest
    for plain in (
        hashlib.sha256(PASSWORD.encode()).digest(),
        hashlib.sha256(HASH.encode() + b"\0" + PASSWORD.encode()).digest(),
    ):
        assert digest != plain  # keyed, not a plain digest someone could brute-force offline


def test_concurrent_checks_are_consistent(auth_config: WebConfig) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def worker(header: str, expected: bool) -> None:
        for _ in range(5):
            ok = auth_config.authorized(header)
            with lock:
                results.append(ok == expected)

    threads = [threading.Thread(target=worker, args=(basic("alice", PASSWORD), True)) for _ in range(4)]
    threads += [threading.Thread(target=worker, args=(basic("alice", "nope"), False)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results and all(results)


# ---------------------------------------------------------------------------------------------
# Over real sockets


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _app(config: WebConfig) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not config.authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="cdm-exporter"')])
            return [b"Unauthorized\n"]
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
        return [METRICS]

    return app


@contextmanager
def serve(config: WebConfig) -> Iterator[int]:
    """A wsgiref server on 127.0.0.1 using the config's SSLContext and basic auth; yields its port."""
    server: WSGIServer = make_server("127.0.0.1", 0, _app(config), handler_class=_QuietHandler)
    ctx = config.ssl_context()
    if ctx is not None:
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def https_get(
    port: int, ctx: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        assert isinstance(conn.sock, ssl.SSLSocket)
        version = conn.sock.version()
        response = conn.getresponse()
        return response.status, response.read(), version
    finally:
        conn.close()


REFUSED = (OSError, http.client.HTTPException)  # ssl.SSLError, resets and EOFs are all OSErrors


def tls_config(certs: TLSCerts, tmp_path: Path, **extra: str) -> WebConfig:
    return load_web_config(write(tmp_path, tls_yaml(certs, **extra)))


def test_https_with_the_ca_bundle(certs: TLSCerts, tmp_path: Path) -> None:
    with serve(tls_config(certs, tmp_path)) as port:
        status, body, version = https_get(port, client_context(certs))
        assert (status, body, version) == (200, METRICS, "TLSv1.3")
        # The DNS name in the certificate verifies as well as the IP address.
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_context(certs).wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.getpeercert() is not None
        # And the certificate really is checked: a client that does not trust the CA refuses it.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(port, ssl.create_default_context(cafile=str(certs.rogue_ca_cert)))


def test_plain_http_to_the_tls_port_gets_no_metrics(certs: TLSCerts, tmp_path: Path) -> None:
    with serve(tls_config(certs, tmp_path)) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
        except REFUSED:
            body = b""
        finally:
            conn.close()
        assert METRICS not in body
        assert https_get(port, client_context(certs))[0] == 200  # the server survived it


def test_mutual_tls_requires_a_verified_client_certificate(certs: TLSCerts, tmp_path: Path) -> None:
    config = tls_config(
        certs, tmp_path, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(certs.ca_cert)
    )
    with serve(config) as port:
        with pytest.raises(REFUSED):
            https_get(port, client_context(certs))
        with pytest.raises(REFUSED):
            https_get(port, client_context(certs, rogue_client_cert=True))
        with pytest.raises(REFUSED):  # the same over TLS 1.2, where the handshake itself fails
            https_get(port, client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert https_get(port, client_context(certs, with_client_cert=True))[:2] == (200, METRICS)


def test_verify_client_cert_if_given(certs: TLSCerts, tmp_path: Path) -> None:
    config = tls_config(
        certs, tmp_path, client_auth_type="VerifyClientCertIfGiven", client_ca_file=str(certs.ca_cert)
    )
    with serve(config) as port:
        assert https_get(port, client_context(certs))[0] == 200
        assert https_get(port, client_context(certs, with_client_cert=True))[0] == 200
        with pytest.raises(REFUSED):
            https_get(port, client_context(certs, rogue_client_cert=True))


def test_min_version_tls13_refuses_a_tls12_client(certs: TLSCerts, tmp_path: Path) -> None:
    with serve(tls_config(certs, tmp_path, min_version="TLS13")) as port:
        with pytest.raises(ssl.SSLError):
            https_get(port, client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2))
        assert https_get(port, client_context(certs))[::2] == (200, "TLSv1.3")


def test_max_version_tls12_is_honoured(certs: TLSCerts, tmp_path: Path) -> None:
    with serve(tls_config(certs, tmp_path, max_version="TLS12")) as port:
        assert https_get(port, client_context(certs))[::2] == (200, "TLSv1.2")


def test_basic_auth_over_https(certs: TLSCerts, tmp_path: Path) -> None:
    path = write(tmp_path, tls_yaml(certs) + f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    with serve(load_web_config(path)) as port:
        ctx = client_context(certs)
        status, body, _ = https_get(port, ctx)
        assert status == 401 and METRICS not in body
        assert https_get(port, ctx, {"Authorization": basic("prometheus", "nope")})[0] == 401
        assert https_get(port, ctx, {"Authorization": basic("prometheus", PASSWORD)})[:2] == (200, METRICS)
