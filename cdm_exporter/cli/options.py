"""Options shared by several commands, and the one rule every option follows.

Each option has an environment twin named after its flag (``--web.listen-address`` is
``CDM_EXPORTER_WEB_LISTEN_ADDRESS``), shown in ``--help`` with its default. The simulator's
options use ``CDM_SIMULATOR_*``, so that a variable set for the exporter never moves it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from cdm_exporter.config import Config, load_config
from cdm_exporter.config.errors import ConfigError
from cdm_exporter.logs import setup_logging

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PORT = 9792
LOG_LEVELS = ("debug", "info", "warning", "error")
EXPORTER_ENV_PREFIX = "CDM_EXPORTER_"
SIMULATOR_ENV_PREFIX = "CDM_SIMULATOR_"


def env(flag: str, prefix: str = EXPORTER_ENV_PREFIX) -> str:
    """``--web.listen-address`` -> ``CDM_EXPORTER_WEB_LISTEN_ADDRESS``."""
    return prefix + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


def option(*decls: str, env_prefix: str = EXPORTER_ENV_PREFIX, **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with its environment twin (named after the first ``--`` flag) and its
    default shown in ``--help``."""
    flag = next(decl for decl in decls if decl.startswith("--"))
    kwargs["envvar"] = env(flag, env_prefix)
    kwargs["show_envvar"] = True
    if not kwargs.get("is_flag") and kwargs.get("default") is not None:
        kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def config_file_option(func: F) -> F:
    return option(
        "--config.file",
        "config_file",
        type=click.Path(dir_okay=False),
        help="YAML configuration file. Without one, HUAWEICLOUD_SDK_AK/SK/PROJECT_ID/REGION give one target.",
    )(func)


def listen_address_option(default: str) -> Callable[[F], F]:
    return option(
        "--web.listen-address",
        "listen_address",
        default=default,
        help="Address to listen on for the web interface and telemetry, HOST:PORT or :PORT.",
    )


def logging_options(default_level: str = "info") -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = option(
            "--log.format",
            "log_format",
            type=click.Choice(["text", "json"]),
            default="text",
            help="Log line format.",
        )(func)
        return option(
            "--log.level",
            "log_level",
            type=click.Choice(LOG_LEVELS, case_sensitive=False),
            default=default_level,
            help="Only log messages with the given severity or above.",
        )(func)

    return decorate


def fail(message: str) -> NoReturn:
    """Exit with code 2 and one line naming what is wrong (docs/architecture.md, "Failure semantics")."""
    click.echo(f"cdm-exporter: error: {message}", err=True)
    sys.exit(2)


def load_or_exit(config_file: str | None) -> Config:
    try:
        return load_config(config_file, os.environ)
    except ConfigError as error:
        # file-level errors (not found, bad YAML) name the file themselves and have no key
        where = f"{config_file}: " if config_file and error.key else ""
        fail(f"{where}{error}")


def start_logging(level: str, fmt: str) -> None:
    setup_logging(level.lower(), fmt)
