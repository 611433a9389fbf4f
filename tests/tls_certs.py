"""Test certificates made with the ``openssl`` binary: a CA, a server and a client certificate.

Usage::

    certs = make_tls_certs(tmp_path)           # or tmp_path_factory.mktemp("tls")
    server_ctx = ...load_cert_chain(certs.server_cert, certs.server_key)
    client_ctx = client_context(certs, with_client_cert=True)

All keys are unencrypted EC P-256 (fast to make); certificates are valid for two days. The server
certificate names ``localhost`` and ``127.0.0.1``. ``rogue_client_cert``/``key`` are signed by a
second CA that nothing trusts, for negative tests of client-certificate verification.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSCerts", "client_context", "make_tls_certs", "openssl_available"]

_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class TLSCerts:
    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca_cert: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *(str(a) for a in args)], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=cdm-exporter test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _make_leaf(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str, common_name: str
) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}.{suffix}" for suffix in ("crt", "key", "csr", "ext"))
    ext.write_text(_LEAF_EXTENSIONS + extensions)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-sha256", "-extfile", ext,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_tls_certs(directory: Path) -> TLSCerts:
    """Create the certificates in ``directory`` (which must exist) and return their paths."""
    ca = _make_ca(directory, "ca")
    server = _make_leaf(
        directory,
        "server",
        ca,
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n",
        "localhost",
    )
    client = _make_leaf(directory, "client", ca, "extendedKeyUsage = clientAuth\n", "prometheus")
    rogue_ca = _make_ca(directory, "rogue-ca")
    rogue = _make_leaf(directory, "rogue-client", rogue_ca, "extendedKeyUsage = clientAuth\n", "prometheus")
    return TLSCerts(
        directory=directory,
        ca_cert=ca[0],
        ca_key=ca[1],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        rogue_ca_cert=rogue_ca[0],
        rogue_client_cert=rogue[0],
        rogue_client_key=rogue[1],
    )


def client_context(
    certs: TLSCerts,
    *,
    with_client_cert: bool = False,
    rogue_client_cert: bool = False,
    maximum_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A client context trusting the test CA, optionally presenting a (trusted or rogue) client cert."""
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    if with_client_cert:
        ctx.load_cert_chain(certs.client_cert, certs.client_key)
    elif rogue_client_cert:
        ctx.load_cert_chain(certs.rogue_client_cert, certs.rogue_client_key)
    if maximum_version is not None:
        ctx.maximum_version = maximum_version
    return ctx
