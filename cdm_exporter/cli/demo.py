"""``cdm-exporter demo``: the simulator and an exporter pointed at it, nothing to configure.

The simulated account has a project in two regions with CDM (and a sub-project in the first),
and a region without CDM; the exporter finds them all through IAM (``projects: all``)."""

from __future__ import annotations

import click

from cdm_exporter.api.models import CLUSTER_STATUSES
from cdm_exporter.cli.options import fail, listen_address_option, logging_options, option, start_logging
from cdm_exporter.cli.service import Service
from cdm_exporter.cli.storage import StorageOptions, open_store, path_option
from cdm_exporter.config import (
    CollectionConfig,
    Config,
    JobsFilter,
    PasswordAuthConfig,
    ProjectSelection,
    Secret,
    TargetConfig,
)
from cdm_exporter.config.model import DEFAULT_ENDPOINT_TEMPLATE
from cdm_exporter.polling.targets import Exporter
from cdm_exporter.simulator import Simulator, SimulatorSettings
from cdm_exporter.web.http_server import parse_listen_address

DEMO_PORT = 9792
#: the demo account: a sub-project next to the primary project (cn-north-4), a second region with
#: CDM, and a region without CDM (its project is discovered and set aside)
DEMO_PROJECTS = ("cn-north-4_analytics", "ap-southeast-1")
DEMO_REGIONS_WITHOUT_CDM = ("ap-southeast-3",)


def demo_config(sim: Simulator) -> Config:
    """One ``projects: all`` target that logs in to the simulator's IAM like a real account."""
    settings = sim.settings
    target = TargetConfig(
        name="demo",
        region="",
        project_id="",
        endpoint=DEFAULT_ENDPOINT_TEMPLATE,
        iam_endpoint=sim.url,
        auth=PasswordAuthConfig(
            domain=settings.iam_domain, user=settings.iam_user, password=Secret(settings.iam_password)
        ),
        clusters=(),
        jobs=JobsFilter(),
        projects=ProjectSelection(all_projects=True),
        region_endpoints=tuple((region, sim.region_url(region)) for region in sim.projects.regions),
    )
    # a short list interval keeps the demo lively; a real account keeps the defaults
    return Config(targets=(target,), collection=CollectionConfig(job_list_interval=30.0))


@click.command()
@listen_address_option(f"127.0.0.1:{DEMO_PORT}")
@option(
    "--simulator.listen-address",
    "simulator_address",
    default="127.0.0.1:0",
    help="Where the simulated CDM API listens (port 0 picks a free one).",
)
@option(
    "--clusters",
    type=click.IntRange(1, 50),
    default=3,
    help="Simulated clusters (the third is stopped, to show a failing cluster).",
)
@option("--jobs", type=click.IntRange(1, 5000), default=12, help="Jobs per cluster.")
@path_option
@logging_options()
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
    sim = Simulator(
        SimulatorSettings(
            clusters=clusters,
            jobs=jobs,
            extra_projects=DEMO_PROJECTS,
            regions_without_cdm=DEMO_REGIONS_WITHOUT_CDM,
        )
    )
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
    for project in sim.projects.views():
        where = sim.region_url(project.region) if project.cdm else "no CDM in this region"
        click.echo(f"  project {project.name:<22} {where}")
    click.echo(f"cdm-exporter:   {http.url('/metrics')}")
    for cluster in sim.world.clusters():
        status = CLUSTER_STATUSES.get(cluster.status, cluster.status)
        if status != "normal":
            click.echo(
                f"Cluster {cluster.name} is {status} on purpose, to show a failing cluster: "
                f'cdm_cluster_status{{status="{status}"}} 1 and cdm_cluster_up 0, and an info line '
                "in the log that its job list is unavailable."
            )
    click.echo(
        f"Open {http.url('/')} in a browser, or scrape {http.url('/metrics')} with Prometheus. Ctrl-C stops."
    )
    try:
        service.run_until_stopped()
    finally:
        sim.stop()
