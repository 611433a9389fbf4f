"""``cdm-exporter check``: validate, collect once, print what the exporter sees.

It reads each thing the report shows once: the cluster list (1 call), each cluster's job list
(a call per job type and page of 100 jobs), then one ShowJobStatus per job, as far as
``collection.budget_per_minute.job_status`` allows. No run history (the report does not show
the last success) and no second pass. For C clusters of N jobs in all, with the three job types
and fewer than 100 jobs of a type per cluster: 1 + 3 C + N calls.

Standard output holds the report, standard error only problems the report does not show
(a configuration warning, an internal error); ``--log.level debug`` shows everything.
"""

from __future__ import annotations

import sys

import click

from cdm_exporter.cli.options import config_file_option, load_or_exit, logging_options, option, start_logging
from cdm_exporter.cli.report import incomplete, render_report, target_failed
from cdm_exporter.logs import redact_secrets
from cdm_exporter.polling.targets import Exporter

EXIT_FAILED = 1
EXIT_INCOMPLETE = 3


@click.command()
@config_file_option
@option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=60.0,
    help="Seconds to spend collecting.",
)
@logging_options("warning")
def check(config_file: str | None, timeout: float, log_level: str, log_format: str) -> None:
    """Validate the configuration, collect once and print a table of jobs.

    \b
    Exit codes:
      0  everything shown was read
      1  a target or a cluster's job list could not be read
      2  the configuration or a flag is invalid
      3  incomplete: some job statuses or job lists were not read
         (throttled, or the API budget or --timeout ran out); the report says which
    """
    start_logging(log_level, log_format)
    config = load_or_exit(config_file)
    redact_secrets(config.secret_values())
    exporter = Exporter(config, one_shot=True)  # failed calls and runs are logged at debug level
    try:
        exporter.collect(timeout)
        snapshot = exporter.snapshot()
    finally:
        exporter.close()
    budget = config.collection.budget_per_minute
    click.echo(render_report(snapshot, status_budget=budget.job_status, common_budget=budget.common))
    if target_failed(snapshot):
        sys.exit(EXIT_FAILED)
    if incomplete(snapshot):
        sys.exit(EXIT_INCOMPLETE)
