"""``cdm-exporter serve``: the exporter itself."""

from __future__ import annotations

from typing import Any

import click

from cdm_exporter.cli.options import (
    DEFAULT_PORT,
    config_file_option,
    fail,
    listen_address_option,
    load_or_exit,
    logging_options,
    option,
    start_logging,
)
from cdm_exporter.cli.service import Service
from cdm_exporter.cli.storage import open_store, storage_from_kwargs, storage_options
from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.webconfig import WebConfig, load_web_config
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.web.http_server import parse_listen_address


@click.command()
@config_file_option
@listen_address_option(f":{DEFAULT_PORT}")
@option(
    "--web.telemetry-path",
    "telemetry_path",
    default="/metrics",
    help="Path under which to expose metrics.",
)
@option(
    "--web.config.file",
    "web_config_file",
    type=click.Path(dir_okay=False),
    help="exporter-toolkit web configuration (TLS, basic auth).",
)
@storage_options
@logging_options()
def serve(
    config_file: str | None,
    listen_address: str,
    telemetry_path: str,
    web_config_file: str | None,
    log_level: str,
    log_format: str,
    **storage_flags: Any,
) -> None:
    """Serve metrics of CDM jobs and clusters for Prometheus to scrape."""
    start_logging(log_level, log_format)
    try:
        parse_listen_address(listen_address)
    except ValueError as error:
        fail(f"--web.listen-address: {error}")
    if (
        not telemetry_path.startswith("/")
        or telemetry_path in ("/", "/probe")
        or telemetry_path.startswith("/-/")
    ):
        fail(f"--web.telemetry-path: {telemetry_path!r} must start with '/' and not be a reserved path")
    config = load_or_exit(config_file)
    web_config: WebConfig | None = None
    if web_config_file:
        try:
            web_config = load_web_config(web_config_file)
        except ConfigError as error:
            fail(str(error) if error.key == "web.config.file" else f"{web_config_file}: {error}")
    opened = open_store(storage_from_kwargs(storage_flags))
    Service(
        config,
        config_file=config_file,
        web_config=web_config,
        exporter=Exporter(config, store=opened.store, store_interval=opened.write_interval),
        extra_secrets=opened.secrets,
    ).run(listen_address, telemetry_path)
