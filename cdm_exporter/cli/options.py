"""Options shared by several commands, each with its ``CDM_EXPORTER_*`` environment twin."""

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


def env(option: str) -> str:
    """``web.listen-address`` -> ``CDM_EXPORTER_WEB_LISTEN_ADDRESS``."""
    return "CDM_EXPORTER_" + option.replace(".", "_").replace("-", "_").upper()


def config_file_option(func: F) -> F:
    return click.option(
        "--config.file",
        "config_file",
        type=click.Path(dir_okay=False),
        envvar=env("config.file"),
        help="YAML configuration file. Without one, HUAWEICLOUD_SDK_AK/SK/PROJECT_ID/REGION give one target.",
    )(func)


def listen_address_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--web.listen-address",
        "listen_address",
        default=default,
        show_default=True,
        envvar=env("web.listen-address"),
        help="Address to listen on for the web interface and telemetry, HOST:PORT or :PORT.",
    )


def logging_options(func: F) -> F:
    func = click.option(
        "--log.format",
        "log_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        envvar=env("log.format"),
        help="Log line format.",
    )(func)
    return click.option(
        "--log.level",
        "log_level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        envvar=env("log.level"),
        help="Only log messages with the given severity or above.",
    )(func)


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
