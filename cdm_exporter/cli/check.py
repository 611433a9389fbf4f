"""``cdm-exporter check``: validate, collect once, print what the exporter sees.

It reads each thing the report shows once: the cluster list (1 call), each cluster's job list
(a call per job type and page of 100 jobs), then one ShowJobStatus per job, as far as
``collection.budget_per_minute.job_status`` allows. No run history (the report does not show
the last success) and no second pass. For C clusters of N jobs in all, with the three job types
and fewer than 100 jobs of a type per cluster: 1 + 3 C + N calls.

Standard output holds the report, standard error only problems the report does not show
(a configuration warning, an internal error); ``--log.level debug`` shows everything.

With ``--record FILE`` every API exchange of that collection is also written to FILE, without
any secret (and with ``--redact-names`` without names): see :mod:`cdm_exporter.api.recording`.
"""

from __future__ import annotations

import sys
import time

import click

from cdm_exporter.api.recording import ExchangeRecorder
from cdm_exporter.api.transport import Observer, RecordingObserver
from cdm_exporter.cli.options import config_file_option, load_or_exit, logging_options, option, start_logging
from cdm_exporter.cli.report import incomplete, render_report, target_failed
from cdm_exporter.config import AkSkAuthConfig, CollectionConfig, Config, TargetConfig
from cdm_exporter.logs import redact_secrets
from cdm_exporter.polling.client_factory import (
    ClientFactory,
    ListerFactory,
    ProjectLister,
    build_client,
    build_project_lister,
)
from cdm_exporter.polling.poller import ApiClient
from cdm_exporter.polling.targets import Exporter

EXIT_FAILED = 1
EXIT_INCOMPLETE = 3
#: collections of ``check --record``: clusters and lists, then statuses, then run history
RECORDING_PASSES = 3


def recording_secrets(config: Config) -> tuple[str, ...]:
    """What a recording must never contain: the configured secrets and the access keys."""
    keys = [t.auth.access_key for t in config.targets if isinstance(t.auth, AkSkAuthConfig)]
    return (*config.secret_values(), *keys)


def recording_factory(recorder: ExchangeRecorder) -> ClientFactory:
    """Clients whose every exchange also goes to ``recorder``."""

    def factory(
        target: TargetConfig, collection: CollectionConfig, observer: Observer
    ) -> tuple[ApiClient, str]:
        return build_client(target, collection, RecordingObserver(observer, recorder))

    return factory


def recording_lister_factory(recorder: ExchangeRecorder) -> ListerFactory:
    """IAM project listers (of ``projects`` targets) whose every exchange also goes to ``recorder``."""

    def factory(target: TargetConfig, collection: CollectionConfig, observer: Observer) -> ProjectLister:
        return build_project_lister(target, collection, RecordingObserver(observer, recorder))

    return factory


@click.command()
@config_file_option
@option(
    "--timeout",
    type=click.FloatRange(1, 600),
    default=60.0,
    help="Seconds to spend collecting.",
)
@option(
    "--record",
    "record_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write every API exchange of the collection to this file (JSON lines, secrets "
    "removed), to send with a bug report or to serve back with 'simulate --replay'.",
)
@option(
    "--redact-names",
    is_flag=True,
    default=False,
    help="With --record: replace cluster, job, link, user and account names by stable pseudonyms.",
)
@logging_options("warning")
def check(
    config_file: str | None,
    timeout: float,
    record_file: str | None,
    redact_names: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Validate the configuration, collect once and print a table of jobs.

    \b
    Exit codes:
      0  everything shown was read
      1  a target or a cluster's job list could not be read
      2  the configuration or a flag is invalid
      3  incomplete: some job statuses or job lists were not read
         (throttled, or the API budget or --timeout ran out); the report says which
    """
    if redact_names and record_file is None:
        raise click.UsageError("--redact-names needs --record FILE")
    start_logging(log_level, log_format)
    config = load_or_exit(config_file)
    redact_secrets(config.secret_values())
    recorder = ExchangeRecorder(recording_secrets(config)) if record_file is not None else None
    factory = build_client if recorder is None else recording_factory(recorder)
    lister = build_project_lister if recorder is None else recording_lister_factory(recorder)
    # one_shot: failed calls and runs are logged at debug level (the report shows them). A
    # recording also carries the run history, which a run's end makes wanted only once its status
    # has landed: a second and third pass read it, so a replay serves what `serve` reads. A new
    # budget holds a whole minute's calls; nothing is called between the passes.
    exporter = Exporter(
        config,
        client_factory=factory,
        lister_factory=lister,
        one_shot=True,
        read_history=recorder is not None,
        pacing="off",
    )
    deadline = time.monotonic() + timeout
    try:
        for _ in range(RECORDING_PASSES if recorder is not None else 1):
            exporter.collect(max(0.0, deadline - time.monotonic()))
        snapshot = exporter.snapshot()
    finally:
        exporter.close()
    budget = config.collection.budget_per_minute
    click.echo(render_report(snapshot, status_budget=budget.job_status, common_budget=budget.common))
    if recorder is not None and record_file is not None:
        try:
            count = recorder.write(record_file, redact_names=redact_names)
        except OSError as exc:
            click.echo(f"cdm-exporter: error: cannot write {record_file}: {exc.strerror or exc}", err=True)
            sys.exit(2)
        names = ", names replaced by pseudonyms" if redact_names else ""
        click.echo(f"recorded {count} API exchange(s) to {record_file} (secrets removed{names})", err=True)
    if target_failed(snapshot):
        sys.exit(EXIT_FAILED)
    if incomplete(snapshot):
        sys.exit(EXIT_INCOMPLETE)
