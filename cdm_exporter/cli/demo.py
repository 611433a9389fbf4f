"""``cdm-exporter demo``: the simulator and an exporter pointed at it, nothing to configure."""

from __future__ import annotations

import click

from cdm_exporter.cli.options import env, fail, listen_address_option, logging_options, start_logging
from cdm_exporter.cli.service import Service
from cdm_exporter.cli.storage import StorageOptions, open_store, path_option
from cdm_exporter.config import (
    CollectionConfig,
    Config,
    JobsFilter,
    PasswordAuthConfig,
    Secret,
    TargetConfig,
)
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Simulator, SimulatorSettings
from cdm_exporter.web.http_server import parse_listen_address

DEMO_PORT = 9792


def demo_config(sim: Simulator) -> Config:
    """A one-target configuration that logs in to the simulator's IAM like a real account."""
    settings = sim.settings
    target = TargetConfig(
        name="demo",
        region=settings.region,
        project_id=settings.project_id,
        endpoint=sim.url,
        iam_endpoint=sim.url,
        auth=PasswordAuthConfig(
            domain=settings.iam_domain, user=settings.iam_user, password=Secret(settings.iam_password)
        ),
        clusters=(),
        jobs=JobsFilter(),
    )
    # a short list interval keeps the demo lively; a real account keeps the defaults
    return Config(targets=(target,), collection=CollectionConfig(job_list_interval=15.0))


@click.command()
@listen_address_option(f"127.0.0.1:{DEMO_PORT}")
@click.option(
    "--simulator.listen-address",
    "simulator_address",
    default="127.0.0.1:0",
    show_default=True,
    envvar=env("simulator.listen-address"),
    help="Where the simulated CDM API listens (port 0 picks a free one).",
)
@click.option(
    "--clusters", type=click.IntRange(1, 50), default=3, show_default=True, help="Simulated clusters."
)
@click.option("--jobs", type=click.IntRange(1, 5000), default=12, show_default=True, help="Jobs per cluster.")
@path_option
@logging_options
def demo(
    listen_address: str,
    simulator_address: str,
    clusters: int,
    jobs: int,
    storage_path: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the CDM simulator and an exporter scraping it: try cdm-exporter with no cloud account."""
    start_logging(log_level, log_format)
    try:
        parse_listen_address(listen_address)
        sim_host, sim_port = parse_listen_address(simulator_address)
    except ValueError as error:
        fail(str(error))
    opened = open_store(StorageOptions(path=storage_path))  # off unless asked for
    sim = Simulator(SimulatorSettings(clusters=clusters, jobs=jobs))
    sim.start(host=sim_host, port=sim_port)
    config = demo_config(sim)
    service = Service(
        config, exporter=Exporter(config, store=opened.store, store_interval=opened.write_interval)
    )
    try:
        http = service.start(listen_address)
    except OSError as error:
        sim.stop()
        fail(f"--web.listen-address {listen_address}: {error.strerror or error}")
    click.echo(
        f"CDM simulator:  {sim.url}  "
        f"(IAM user {sim.settings.iam_user!r} in domain {sim.settings.iam_domain!r})"
    )
    click.echo(f"cdm-exporter:   {http.url('/metrics')}")
    click.echo(
        f"Open {http.url('/')} in a browser, or scrape {http.url('/metrics')} with Prometheus. Ctrl-C stops."
    )
    try:
        service.run_until_stopped()
    finally:
        sim.stop()
