"""The ``--web.config.file``: TLS and basic authentication for the exporter's own HTTP server.

The file uses the Prometheus exporter-toolkit format
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md), so a file
written for node_exporter works here unchanged, with these deliberate differences:

* ``tls_server_config.cert`` / ``key`` (inline PEM) and ``client_allowed_sans`` are refused with a
  clear error rather than silently ignored: Python's ``ssl`` loads a server key only from a file
  (and the container's root file system is read-only), and it has no hook to check client SANs
  during the handshake. ``client_ca`` (inline CA PEM) is supported.
* ``client_auth_type`` values that verify or require a client certificate need ``client_ca_file``
  (or ``client_ca``); see :data:`CLIENT_AUTH_TYPES` for the mapping and why.
* ``curve_preferences`` is validated and then ignored (Python 3.11's ``ssl`` can set one curve
  only, not a preference list; OpenSSL's default groups are all safe ones).
* ``http_server_config.http2`` is accepted and ignored: the exporter serves HTTP/1.1 only.
* ``rate_limit`` is refused: nothing here would enforce it.

Every problem is a :class:`~cdm_exporter.config.errors.ConfigError` whose key is the dotted path
inside the file (``tls_server_config.cert_file``), checked as the main configuration is
(:mod:`cdm_exporter.config.strict_yaml`: duplicate keys refused, unknown keys with a "did you
mean"). No password or hash ever appears in a message.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, NoReturn

import bcrypt

from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.strict_yaml import boolean, describe, mapping_of, parse_yaml, string, strings

__all__ = [
    "CIPHER_SUITES",
    "CLIENT_AUTH_TYPES",
    "AuthVerdict",
    "ClientAuthType",
    "TLSServerConfig",
    "WebConfig",
    "load_web_config",
]

FILE_KEY: Final = "web.config.file"
"""The key named by errors about the file as a whole (unreadable, not YAML, not a mapping)."""


class ClientAuthType(enum.Enum):
    """exporter-toolkit's ``client_auth_type`` values (Go's ``tls.ClientAuthType`` names)."""

    NO_CLIENT_CERT = "NoClientCert"
    REQUEST_CLIENT_CERT = "RequestClientCert"
    REQUIRE_ANY_CLIENT_CERT = "RequireAnyClientCert"
    VERIFY_CLIENT_CERT_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY_CLIENT_CERT = "RequireAndVerifyClientCert"


# How each Go client-auth policy maps onto Python's ssl, which knows only three modes:
# CERT_NONE (no certificate is requested), CERT_OPTIONAL (one is requested; if the client sends one
# it must verify against the client CAs, else the handshake fails) and CERT_REQUIRED (one must be
# sent and must verify). Python cannot accept a certificate without verifying it, so the two Go
# policies that take unverified certificates become the nearest *stricter* behaviour:
#
#   NoClientCert               -> CERT_NONE.      Exact.
#   RequestClientCert          -> CERT_OPTIONAL with client CAs, CERT_NONE without. Go asks for a
#                                 certificate and never checks it, so it authenticates nobody; we
#                                 either verify what is sent (stricter) or, with no CA to verify
#                                 against, do not ask (same effect: anyone may connect).
#   RequireAnyClientCert       -> CERT_REQUIRED.  Stricter: the certificate must also chain to the
#                                 client CAs, so client_ca_file is required.
#   VerifyClientCertIfGiven    -> CERT_OPTIONAL.  Exact, given client CAs.
#   RequireAndVerifyClientCert -> CERT_REQUIRED.  Exact, given client CAs.
#
# Go falls back to the system roots when no client CA is configured; we refuse that instead
# (ConfigError on client_ca_file), since trusting every public CA for client authentication is
# almost certainly a mistake. Like exporter-toolkit, client CAs with NoClientCert are an error.
CLIENT_AUTH_TYPES: Final[Mapping[ClientAuthType, ssl.VerifyMode]] = MappingProxyType(
    {
        ClientAuthType.NO_CLIENT_CERT: ssl.CERT_NONE,
        ClientAuthType.REQUEST_CLIENT_CERT: ssl.CERT_OPTIONAL,
        ClientAuthType.REQUIRE_ANY_CLIENT_CERT: ssl.CERT_REQUIRED,
        ClientAuthType.VERIFY_CLIENT_CERT_IF_GIVEN: ssl.CERT_OPTIONAL,
        ClientAuthType.REQUIRE_AND_VERIFY_CLIENT_CERT: ssl.CERT_REQUIRED,
    }
)
_CLIENT_AUTH_ALIASES: Final = {"RequireClientCert": ClientAuthType.REQUIRE_ANY_CLIENT_CERT}  # Go's old name
_NEEDS_CLIENT_CA: Final = frozenset(
    {
        ClientAuthType.REQUIRE_ANY_CLIENT_CERT,
        ClientAuthType.VERIFY_CLIENT_CERT_IF_GIVEN,
        ClientAuthType.REQUIRE_AND_VERIFY_CLIENT_CERT,
    }
)

_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's cipher suite names (the IANA names, as accepted by exporter-toolkit: Go's tls.CipherSuites())
# -> OpenSSL names for SSLContext.set_ciphers. The TLS 1.3 suites are accepted and ignored, as Go
# does: TLS 1.3 suites are not configurable there either. tests/test_webconfig.py checks this table
# against `openssl ciphers -stdname`.
CIPHER_SUITES: Final[Mapping[str, str | None]] = MappingProxyType(
    {
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_AES_128_GCM_SHA256": None,
        "TLS_AES_256_GCM_SHA384": None,
        "TLS_CHACHA20_POLY1305_SHA256": None,
    }
)
_CURVES: Final = frozenset({"CurveP256", "CurveP384", "CurveP521", "X25519"})

# The keys each section accepts, as exporter-toolkit's (some are refused later, with a reason).
_TOP_KEYS: Final = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
# fmt: off
_TLS_KEYS: Final = ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
                    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
                    "prefer_server_cipher_suites", "curve_preferences")
# fmt: on

# Response headers exporter-toolkit lets a user set, with the values it allows (None = any).
_HEADERS: Final[Mapping[str, frozenset[str] | None]] = MappingProxyType(
    {
        "Strict-Transport-Security": None,
        "X-Content-Type-Options": frozenset({"nosniff"}),
        "X-Frame-Options": frozenset({"deny", "sameorigin"}),
        "X-XSS-Protection": None,
        "Content-Security-Policy": None,
    }
)

# $2a$/$2b$/$2x$/$2y$, two-digit cost, 22 characters of salt and 31 of hash in bcrypt's base64.
_BCRYPT_HASH: Final = re.compile(r"\$2[abxy]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD: Final = 72  # bcrypt only ever reads this many bytes of a password

AUTH_CACHE_TTL_SECONDS: Final = 120.0
"""How long a basic-auth result is remembered; each use of a good one renews it (several scrapes at
the usual 15-60 s)."""
_AUTH_CACHE_MAX_ENTRIES: Final = 1024
MAX_QUEUED_CHECKS: Final = 8
"""Uncached checks that may wait for the one bcrypt check running (8 x ~250 ms at cost 12)."""

_monotonic: Callable[[], float] = time.monotonic  # replaced in tests


@dataclass(frozen=True)
class TLSServerConfig:
    """A validated ``tls_server_config``; paths are absolute or relative to the working directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: ClientAuthType = ClientAuthType.NO_CLIENT_CERT
    client_ca_file: Path | None = None
    client_ca_pem: str | None = None  # the inline ``client_ca``
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()  # OpenSSL names; empty = OpenSSL's defaults
    prefer_server_cipher_suites: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        """Build a server context, reading the certificate, key and CA files now.

        Each call reads the files again, so a server may call it again to pick up renewed
        certificates. Raises ConfigError naming the key whose file is unreadable or invalid.
        """
        prefix = "tls_server_config."
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.minimum_version = self.min_version
            ctx.maximum_version = self.max_version
        except (ValueError, ssl.SSLError) as exc:
            raise ConfigError(prefix + "min_version", f"not supported by this OpenSSL: {exc}") from None
        if self.cipher_suites:
            try:
                ctx.set_ciphers(":".join(self.cipher_suites))
            except ssl.SSLError:
                raise ConfigError(
                    prefix + "cipher_suites", "none of these cipher suites is available in this OpenSSL"
                ) from None
        ctx.set_alpn_protocols(["http/1.1"])

        _check_readable(prefix + "cert_file", self.cert_file)
        _check_certificates(prefix + "cert_file", self.cert_file)
        _check_readable(prefix + "key_file", self.key_file)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_refuse_password)
        except _EncryptedKeyError:
            raise ConfigError(
                prefix + "key_file", f"{self.key_file} is encrypted; an unencrypted PEM key is needed"
            ) from None
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                raise ConfigError(
                    prefix + "key_file", f"{self.key_file} does not match the certificate in cert_file"
                ) from None
            raise ConfigError(
                prefix + "key_file", f"{self.key_file} is not a valid PEM private key"
            ) from None

        ctx.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            key = prefix + "client_ca_file"
            _check_readable(key, self.client_ca_file)
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError:
                raise ConfigError(key, f"{self.client_ca_file} holds no valid PEM certificate") from None
        elif self.client_ca_pem is not None:
            try:
                ctx.load_verify_locations(cadata=self.client_ca_pem)
            except (ssl.SSLError, ValueError):
                raise ConfigError(prefix + "client_ca", "is not a valid PEM certificate") from None
        elif self.client_auth_type is ClientAuthType.REQUEST_CLIENT_CERT:
            ctx.verify_mode = ssl.CERT_NONE  # nothing to verify against: do not ask (see above)
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """The parsed web configuration. ``WebConfig(None, {})`` is plain HTTP with no authentication."""

    tls: TLSServerConfig | None
    basic_auth_users: Mapping[str, bytes]  # user name -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Extra response headers (``http_server_config.headers``) for the server to add."""
    _auth: _BasicAuth = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "basic_auth_users", MappingProxyType(dict(self.basic_auth_users)))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        object.__setattr__(self, "_auth", _BasicAuth(self.basic_auth_users))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A fresh server-side SSLContext, or None for plain HTTP. Raises ConfigError."""
        return None if self.tls is None else self.tls.ssl_context()

    def authorized(self, authorization_header: str | None) -> bool:
        """Whether a request with this ``Authorization`` header may be served.

        True when no users are configured. Otherwise the header must be ``Basic`` credentials of a
        configured user with the right password.
        """
        return self._auth.check(authorization_header) is AuthVerdict.ALLOWED

    def authenticate(self, authorization_header: str | None) -> AuthVerdict:
        """Like :meth:`authorized`, telling a refusal from "too busy to check now"."""
        return self._auth.check(authorization_header)

    @property
    def requires_auth(self) -> bool:
        return bool(self.basic_auth_users)


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web configuration file; relative paths in it are relative to its directory.

    The TLS files are read and checked now, so that a mistake stops the exporter at start-up.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(FILE_KEY, f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    document = parse_yaml(raw, os.fspath(path), FILE_KEY)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            FILE_KEY, f"expected a mapping with keys {', '.join(_TOP_KEYS)}, got {describe(document)}"
        )
    top = mapping_of(document, "", _TOP_KEYS)
    if top.get("rate_limit") is not None:
        _fail("rate_limit", "is not supported by cdm-exporter; rate-limit in a reverse proxy instead")

    base_dir = Path(path).parent
    tls = _parse_tls(top.get("tls_server_config"), base_dir)
    headers = _parse_http_server_config(top.get("http_server_config"))
    users = _parse_users(top.get("basic_auth_users"))
    config = WebConfig(tls=tls, basic_auth_users=users, headers=headers)
    config.ssl_context()  # read and check the certificate, key and CA now
    return config


# ---------------------------------------------------------------------------------------------
# Parsing


def _parse_tls(value: object, base_dir: Path) -> TLSServerConfig | None:
    prefix = "tls_server_config"
    if value is None:
        return None
    section = mapping_of(value, prefix, _TLS_KEYS)
    for inline in ("cert", "key"):
        if _optional_str(f"{prefix}.{inline}", section.get(inline)):
            _fail(
                f"{prefix}.{inline}", f"inline PEM is not supported; put it in a file and use {inline}_file"
            )
    if section.get("client_allowed_sans"):
        _fail(
            f"{prefix}.client_allowed_sans",
            "is not supported by cdm-exporter; issue client certificates from a dedicated CA "
            "and use client_auth_type: RequireAndVerifyClientCert",
        )

    cert_file = _optional_str(f"{prefix}.cert_file", section.get("cert_file"))
    key_file = _optional_str(f"{prefix}.key_file", section.get("key_file"))
    client_ca_file = _optional_str(f"{prefix}.client_ca_file", section.get("client_ca_file"))
    client_ca_pem = _optional_str(f"{prefix}.client_ca", section.get("client_ca"))
    auth_name = _optional_str(f"{prefix}.client_auth_type", section.get("client_auth_type"))

    # As in exporter-toolkit: TLS is on as soon as any of these is set, and then needs both files.
    if not (cert_file or key_file or client_ca_file or client_ca_pem or auth_name):
        return None
    if not cert_file:
        _fail(f"{prefix}.cert_file", "is required to enable TLS" + (" (key_file is set)" if key_file else ""))
    if not key_file:
        _fail(f"{prefix}.key_file", "is required when cert_file is set")
    if client_ca_file and client_ca_pem:
        _fail(f"{prefix}.client_ca", "give either client_ca or client_ca_file, not both")

    auth_type = _parse_client_auth_type(f"{prefix}.client_auth_type", auth_name)
    has_ca = bool(client_ca_file or client_ca_pem)
    if has_ca and auth_type is ClientAuthType.NO_CLIENT_CERT:
        _fail(f"{prefix}.client_auth_type", "client CAs are configured but client_auth_type is NoClientCert")
    if not has_ca and auth_type in _NEEDS_CLIENT_CA:
        _fail(f"{prefix}.client_ca_file", f"is required with client_auth_type {auth_type.value}")

    min_version = _parse_tls_version(f"{prefix}.min_version", section.get("min_version"), "TLS12")
    max_version = _parse_tls_version(f"{prefix}.max_version", section.get("max_version"), "TLS13")
    if min_version > max_version:
        _fail(f"{prefix}.max_version", "is lower than min_version")

    ciphers: list[str] = []
    for index, name in enumerate(_str_list(f"{prefix}.cipher_suites", section.get("cipher_suites"))):
        if name not in CIPHER_SUITES:
            _fail(f"{prefix}.cipher_suites[{index}]", f"unknown cipher suite {name!r}")
        openssl_name = CIPHER_SUITES[name]
        if openssl_name is not None:
            ciphers.append(openssl_name)
    for index, name in enumerate(_str_list(f"{prefix}.curve_preferences", section.get("curve_preferences"))):
        if name not in _CURVES:
            _fail(
                f"{prefix}.curve_preferences[{index}]",
                f"unknown curve {name!r}; use one of {sorted(_CURVES)}",
            )
    prefer = section.get("prefer_server_cipher_suites")
    prefer = True if prefer is None else boolean(prefer, f"{prefix}.prefer_server_cipher_suites")

    return TLSServerConfig(
        cert_file=base_dir / cert_file,  # an absolute cert_file replaces base_dir
        key_file=base_dir / key_file,
        client_auth_type=auth_type,
        client_ca_file=base_dir / client_ca_file if client_ca_file else None,
        client_ca_pem=client_ca_pem or None,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=tuple(ciphers),
        prefer_server_cipher_suites=prefer,
    )


def _parse_client_auth_type(key: str, name: str | None) -> ClientAuthType:
    if not name:
        return ClientAuthType.NO_CLIENT_CERT
    if name in _CLIENT_AUTH_ALIASES:
        return _CLIENT_AUTH_ALIASES[name]
    try:
        return ClientAuthType(name)
    except ValueError:
        valid = ", ".join(t.value for t in ClientAuthType)
        _fail(key, f"invalid value {name!r}; use one of {valid}")


def _parse_tls_version(key: str, value: object, default: str) -> ssl.TLSVersion:
    name = _optional_str(key, value) or default
    if name not in _TLS_VERSIONS:
        _fail(key, f"unknown TLS version {name!r}; use one of {', '.join(_TLS_VERSIONS)}")
    return _TLS_VERSIONS[name]


def _parse_http_server_config(value: object) -> Mapping[str, str]:
    prefix = "http_server_config"
    if value is None:
        return {}
    section = mapping_of(value, prefix, ("http2", "headers"))
    if section.get("http2") is not None:
        boolean(section["http2"], f"{prefix}.http2")
    if section.get("headers") is None:
        return {}
    headers: dict[str, str] = {}
    for name, given in mapping_of(section["headers"], f"{prefix}.headers", tuple(_HEADERS)).items():
        key = f"{prefix}.headers.{name}"
        header_value = string(given, key, empty=True)
        if "\r" in header_value or "\n" in header_value:
            _fail(key, "must not contain a line break")
        if not header_value:  # blank means unset
            continue
        allowed = _HEADERS[name]
        if allowed is not None and header_value.lower() not in allowed:
            _fail(key, f"unsupported value; use one of {', '.join(sorted(allowed))}")
        headers[name] = header_value
    return headers


def _parse_users(value: object) -> dict[str, bytes]:
    prefix = "basic_auth_users"
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(prefix, f"expected a mapping of user name to bcrypt hash, got {describe(value)}")
    users: dict[str, bytes] = {}
    for name, hashed in value.items():
        if not isinstance(name, str) or not name:
            # YAML turns unquoted yes/no/123 into bools and numbers; the name itself is not secret.
            _fail(prefix, f"user name {name!r} must be a non-empty string (quote it)")
        if ":" in name:
            _fail(
                f"{prefix}.{name}",
                "a user name cannot contain ':' (basic auth separates it from the password)",
            )
        match = _BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            _fail(
                f"{prefix}.{name}",
                "is not a bcrypt hash (expected $2y$<cost>$..., e.g. from htpasswd -nBC 10)",
            )
        cost = int(match["cost"])
        if not 4 <= cost <= 31:
            _fail(f"{prefix}.{name}", f"bcrypt cost {cost} is outside 4..31")
        users[name] = match[0].encode("ascii")
    return users


# ---------------------------------------------------------------------------------------------
# Basic authentication


class AuthVerdict(enum.Enum):
    """What a basic-auth check decided."""

    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"  # too many uncached checks waiting: refused unchecked, try again shortly


class _BasicAuth:
    """Basic-auth checks that a flood of wrong passwords cannot turn into a CPU or thread sink.

    As exporter-toolkit does, one bcrypt check runs at a time and results are cached, failures
    included, so a repeated wrong password costs nothing the second time. Beyond that, at most
    :data:`MAX_QUEUED_CHECKS` uncached checks may wait for their turn; a request arriving when the
    queue is full is answered BUSY at once instead of holding a server thread for seconds. A
    scraper whose credentials are cached (each use keeps them for another
    :data:`AUTH_CACHE_TTL_SECONDS`) never waits in that queue.

    Every uncached check of a well-formed header costs one bcrypt round, whether or not the user
    exists (an unknown user is checked against a dummy hash of the same cost), and the user name is
    compared with every configured name using hmac.compare_digest. The caches key on the user name
    and an HMAC of (stored hash, password) under a random per-process key, so they hold nothing
    from which a password could be recovered.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = tuple((name.encode("utf-8"), hashed) for name, hashed in users.items())
        costs = [int(hashed[4:6]) for _, hashed in self._users]
        # A syntactically valid hash that no password is known to match; same cost as the real ones.
        self._dummy = b"$2b$%02d$" % max(costs, default=10) + b"N9qo8uLOickgx2ZMRZoMye" + b"." * 31
        self._key = secrets.token_bytes(32)
        self._allowed = _ExpiringSet(_AUTH_CACHE_MAX_ENTRIES)
        self._denied = _ExpiringSet(_AUTH_CACHE_MAX_ENTRIES)
        self._lock = threading.Lock()  # guards the caches and the queue count
        self._bcrypt = threading.Lock()  # one bcrypt check at a time
        self._queued = 0

    def check(self, header: str | None) -> AuthVerdict:
        if not self._users:
            return AuthVerdict.ALLOWED
        credentials = _parse_basic_header(header)
        if credentials is None:
            return AuthVerdict.DENIED
        user, password = credentials
        password = password[:_BCRYPT_MAX_PASSWORD]  # what bcrypt reads anyway; bcrypt>=5 refuses more

        stored: bytes | None = None
        for name, hashed in self._users:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(name, user):
                stored = hashed
        hashed = stored if stored is not None else self._dummy
        key = (user, hmac.new(self._key, hashed + b"\0" + password, hashlib.sha256).digest())

        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._lock:
            if self._queued >= MAX_QUEUED_CHECKS:
                return AuthVerdict.BUSY
            self._queued += 1
        try:
            with self._bcrypt:
                cached = self._cached(key)  # the same credentials may have been checked meanwhile
                if cached is not None:
                    return cached
                try:
                    ok = bcrypt.checkpw(password, hashed) and stored is not None
                except ValueError:  # e.g. a NUL byte in the password, refused by some bcrypt versions
                    ok = False
                with self._lock:
                    (self._allowed if ok else self._denied).add(key, _monotonic() + AUTH_CACHE_TTL_SECONDS)
                return AuthVerdict.ALLOWED if ok else AuthVerdict.DENIED
        finally:
            with self._lock:
                self._queued -= 1

    def _cached(self, key: tuple[bytes, bytes]) -> AuthVerdict | None:
        now = _monotonic()
        with self._lock:
            if self._allowed.get(key, now):
                self._allowed.add(key, now + AUTH_CACHE_TTL_SECONDS)  # in use: keep it
                return AuthVerdict.ALLOWED
            if self._denied.get(key, now):
                return AuthVerdict.DENIED
        return None


class _ExpiringSet:
    """Keys with an expiry time, at most ``size`` of them; the least recently added goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._expiry: OrderedDict[tuple[bytes, bytes], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def keys(self) -> list[tuple[bytes, bytes]]:
        return list(self._expiry)

    def get(self, key: tuple[bytes, bytes], now: float) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if now >= expires:
            del self._expiry[key]
            return False
        return True

    def add(self, key: tuple[bytes, bytes], expires: float) -> None:
        self._expiry.pop(key, None)
        self._expiry[key] = expires
        while len(self._expiry) > self._size:
            self._expiry.popitem(last=False)


def _parse_basic_header(header: str | None) -> tuple[bytes, bytes] | None:
    """(user, password) as bytes from ``Basic base64(user:password)``, or None if malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password  # compared as UTF-8 bytes (RFC 7617), never decoded


# ---------------------------------------------------------------------------------------------
# Helpers


class _EncryptedKeyError(Exception):
    pass


def _refuse_password() -> NoReturn:
    # Called by OpenSSL only for an encrypted key; without it OpenSSL would prompt on the terminal.
    raise _EncryptedKeyError


def _check_readable(key: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror or exc}") from None


def _check_certificates(key: str, path: Path) -> None:
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        scratch.load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError(key, f"{path} holds no valid PEM certificate") from None


def _fail(key: str, message: str) -> NoReturn:
    raise ConfigError(key, message)


def _optional_str(key: str, value: object) -> str | None:
    """A string setting, where null and "" both mean unset (as in exporter-toolkit)."""
    return None if value is None else string(value, key, empty=True)


def _str_list(key: str, value: object) -> tuple[str, ...]:
    return () if value is None else strings(value, key)
