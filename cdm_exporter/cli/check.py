"""``cdm-exporter check``: validate, collect once, print what the exporter sees."""

from __future__ import annotations

import sys
import time

import click

from cdm_exporter.cli.options import config_file_option, load_or_exit, logging_options, start_logging
from cdm_exporter.cli.report import render_report, target_failed
from cdm_exporter.logs import redact_secrets
from cdm_exporter.polling.targets import Exporter

#: collections run by check: clusters and lists, then statuses, then run history
CHECK_PASSES = 3


@click.command()
@config_file_option
@click.option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=60.0,
    show_default=True,
    help="Seconds to spend collecting.",
)
@logging_options
def check(config_file: str | None, timeout: float, log_level: str, log_format: str) -> None:
    """Validate the configuration, collect once and print a table of jobs.

    Exits 1 when a target or cluster could not be read, 2 when the configuration is invalid.
    """
    start_logging(log_level, log_format)
    config = load_or_exit(config_file)
    redact_secrets(config.secret_values())
    # a new budget holds a whole minute's calls; nothing is called between the passes
    exporter = Exporter(config, pacing="off")
    deadline = time.monotonic() + timeout
    try:
        for _ in range(CHECK_PASSES):
            exporter.collect(max(0.0, deadline - time.monotonic()))
        snapshot = exporter.snapshot()
    finally:
        exporter.close()
    click.echo(render_report(snapshot))
    sys.exit(1 if target_failed(snapshot) else 0)
