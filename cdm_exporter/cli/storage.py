"""The ``--storage.*`` options and the state store they ask for.

``--storage.path FILE``: the embedded store, for one process (``cdm_exporter.storage.file_store``).
``--storage.redis-url URL``: Redis shared by replicas (``cdm_exporter.storage.redis_store``); its
password comes from ``--storage.redis-password-file`` or ``CDM_EXPORTER_STORAGE_REDIS_PASSWORD``,
never from the command line (a URL with a password is refused). A bad value exits with code 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from cdm_exporter.cli.options import env, fail, option
from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.loader import parse_duration
from cdm_exporter.config.secret_sources import read_secret_file
from cdm_exporter.polling.persistence import StateStore, StoreError

F = TypeVar("F", bound=Callable[..., Any])

#: the environment variable holding the Redis password (there is no flag: no secret on the command line)
PASSWORD_ENV = env("storage.redis-password")
REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class StorageOptions:
    path: str | None = None
    redis_url: str | None = None
    redis_password_file: str | None = None
    redis_ca_file: str | None = None
    redis_prefix: str = "cdm-exporter"
    redis_replicas: int = 2
    lease_period: str = "15s"
    write_interval: str = "5s"


def path_option(func: F) -> F:
    return option(
        "--storage.path",
        "storage_path",
        type=click.Path(dir_okay=False),
        help="Keep known state and the API calls of the current minute in this file (SQLite), so "
        "that a restart serves what was known before and spends nothing twice. One process per file.",
    )(func)


def storage_options(func: F) -> F:
    """Every ``--storage.*`` option, passed to the command as ``storage: StorageOptions``."""
    options = [
        option(
            "--storage.redis-url",
            "storage_redis_url",
            help="Share state and the API budget with the other replicas through Redis "
            "(redis://HOST:PORT/DB, rediss:// for TLS). One replica polls, the others serve its state.",
        ),
        option(
            "--storage.redis-password-file",
            "storage_redis_password_file",
            type=click.Path(dir_okay=False),
            help=f"File holding the Redis password (or set {PASSWORD_ENV}).",
        ),
        option(
            "--storage.redis-ca-file",
            "storage_redis_ca_file",
            type=click.Path(dir_okay=False),
            help="PEM bundle to verify Redis' TLS certificate with (rediss://); system CAs by default.",
        ),
        option(
            "--storage.redis-prefix",
            "storage_redis_prefix",
            default="cdm-exporter",
            help="Prefix of the Redis keys of this Deployment's lease and state (one per Deployment).",
        ),
        option(
            "--storage.redis-replicas",
            "storage_redis_replicas",
            type=click.IntRange(1, 64),
            default=2,
            help="Replicas sharing the budget: without Redis, each spends at most budget / this.",
        ),
        option(
            "--storage.lease-period",
            "storage_lease_period",
            default="15s",
            help="With Redis: when the polling replica dies, another one polls within this period.",
        ),
        option(
            "--storage.write-interval",
            "storage_write_interval",
            default="5s",
            help="How often the known state is written to the store (in the background).",
        ),
        path_option,
    ]
    for decorate in reversed(options):
        func = decorate(func)
    return func


def storage_from_kwargs(kwargs: dict[str, Any]) -> StorageOptions:
    """Take the ``storage_*`` parameters out of a command's ``kwargs``."""
    return StorageOptions(
        path=kwargs.pop("storage_path", None),
        redis_url=kwargs.pop("storage_redis_url", None),
        redis_password_file=kwargs.pop("storage_redis_password_file", None),
        redis_ca_file=kwargs.pop("storage_redis_ca_file", None),
        redis_prefix=kwargs.pop("storage_redis_prefix", "cdm-exporter"),
        redis_replicas=kwargs.pop("storage_redis_replicas", 2),
        lease_period=kwargs.pop("storage_lease_period", "15s"),
        write_interval=kwargs.pop("storage_write_interval", "5s"),
    )


@dataclass(frozen=True)
class OpenedStore:
    store: StateStore | None
    write_interval: float
    secrets: tuple[str, ...]  # to mask in the log


def _duration(value: str, flag: str, low: float, high: float) -> float:
    try:
        seconds = parse_duration(value, flag)
    except ConfigError as error:
        fail(str(error))
    if not low <= seconds <= high:
        fail(f"{flag}: must be between {low:g}s and {high:g}s, got {seconds:g}s")
    return seconds


def redis_password(options: StorageOptions, environ: Mapping[str, str]) -> str | None:
    if options.redis_password_file is not None:
        if PASSWORD_ENV in environ:
            fail(f"--storage.redis-password-file and {PASSWORD_ENV} are both set; use one")
        try:
            return read_secret_file(options.redis_password_file, "--storage.redis-password-file").reveal()
        except ConfigError as error:
            fail(str(error))
    return environ.get(PASSWORD_ENV) or None


def check_redis_url(url: str) -> None:
    """Refuse what cannot work and a password in the URL; the URL itself is never echoed."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError as error:
        fail(f"--storage.redis-url: not a URL ({error})")
    if parts.scheme not in REDIS_SCHEMES:
        fail(f"--storage.redis-url: the scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    if has_password:
        fail(
            "--storage.redis-url: a password in the URL would be on the command line; "
            f"use --storage.redis-password-file or {PASSWORD_ENV}"
        )


def open_store(options: StorageOptions, environ: Mapping[str, str] = os.environ) -> OpenedStore:
    """The store the options ask for (None: none), or exit 2 naming what is wrong."""
    interval = _duration(options.write_interval, "--storage.write-interval", 0.1, 3600)
    if options.path is not None and options.redis_url is not None:
        fail("--storage.path and --storage.redis-url: use one (Redis keeps the state for every replica)")
    if options.path is not None:
        from cdm_exporter.storage.file_store import FileStore

        try:
            return OpenedStore(FileStore(options.path), interval, ())
        except StoreError as error:
            fail(f"--storage.path: {error}")
    if options.redis_url is None:
        for flag, value in (
            ("--storage.redis-password-file", options.redis_password_file),
            ("--storage.redis-ca-file", options.redis_ca_file),
        ):
            if value is not None:
                fail(f"{flag} needs --storage.redis-url")
        return OpenedStore(None, interval, ())
    check_redis_url(options.redis_url)
    period = _duration(options.lease_period, "--storage.lease-period", 0.5, 600)
    password = redis_password(options, environ)
    if options.redis_ca_file is not None and not os.path.isfile(options.redis_ca_file):
        fail(f"--storage.redis-ca-file: {options.redis_ca_file} is not a file")
    from cdm_exporter.storage.redis_link import connect
    from cdm_exporter.storage.redis_store import RedisStore

    client = connect(
        options.redis_url,
        password=password,
        timeout=max(0.2, min(2.0, period / 4)),
        ca_file=options.redis_ca_file,
    )
    store = RedisStore(
        client, prefix=options.redis_prefix, lease_period=period, replicas=options.redis_replicas
    )
    return OpenedStore(store, interval, (password,) if password else ())
