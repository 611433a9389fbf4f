"""``cdm-exporter simulate``: run the CDM + IAM simulator alone, until SIGINT/SIGTERM.

Every option can also come from an environment variable ``CDM_SIMULATOR_<OPTION>``
(e.g. ``CDM_SIMULATOR_WEB_LISTEN_ADDRESS``, ``CDM_SIMULATOR_TIME_SCALE``; ``CDM_SIMULATOR_FAULT``
holds whitespace-separated specs): its own prefix, so that the exporter's ``CDM_EXPORTER_*``
variables never move the simulator.  The credentials on this command line are test
credentials: the simulator guards nothing real.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cdm_exporter.cli.options import SIMULATOR_ENV_PREFIX, option
from cdm_exporter.simulator import SPEC_HELP, Fault, FaultSpecError, Simulator, SimulatorSettings
from cdm_exporter.simulator import settings as defaults
from cdm_exporter.simulator.generate import JOB_TYPES
from cdm_exporter.simulator.replay import RecordingError, Replay, ReplayServer
from cdm_exporter.simulator.service import HttpService

FC = TypeVar("FC", bound=Callable[..., Any])

# click.ParamType is generic for type checkers (click >= 8.2) but not subscriptable at run time
# in older releases.
if TYPE_CHECKING:
    _AddressParam = click.ParamType[tuple[str, int]]
    _FaultParam = click.ParamType[Fault]
    _TextParam = click.ParamType[str]
else:
    _AddressParam = _FaultParam = _TextParam = click.ParamType


class ListenAddress(_AddressParam):
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces)."""

    name = "HOST:PORT"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]*)):(?P<port>\d{1,5})", text)
        if match is None:
            self.fail(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9796 or [::1]:9796)", param, ctx)
        port = int(match["port"])
        if port > 65535:
            self.fail(f"port {port} is out of range 0..65535", param, ctx)
        host = match["v6"] or match["host"] or "0.0.0.0"  # noqa: S104 - ":PORT" means all interfaces
        return host, port


class FaultSpec(_FaultParam):
    name = "SPEC"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Fault:
        if isinstance(value, Fault):
            return value
        try:
            return Fault.parse(str(value))
        except (FaultSpecError, ValueError) as exc:
            self.fail(str(exc), param, ctx)


class NonEmpty(_TextParam):
    name = "TEXT"

    def __init__(self, pattern: str | None = None, what: str = "a non-empty value") -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text or (self.pattern is not None and not self.pattern.fullmatch(text)):
            self.fail(f"{text!r} is not {self.what}", param, ctx)
        return text


ADMIN_HELP = """\
Admin API (JSON, no auth) under /_sim/; GET /_sim/ lists it all, e.g.:
  POST /_sim/faults {"spec": "job_status:500"}     DELETE /_sim/faults
  POST /_sim/clusters/{id}/jobs {"name": "j1"}
  POST /_sim/clusters/{id}/jobs/{name}/start       POST /_sim/tokens/revoke
  GET  /_sim/stats"""


def _option(*decls: str, **kwargs: Any) -> Callable[[FC], FC]:
    """An option of the simulator, whose environment twin is ``CDM_SIMULATOR_*``."""
    return option(*decls, env_prefix=SIMULATOR_ENV_PREFIX, **kwargs)


# "\b" keeps click from re-wrapping a paragraph.
EPILOG = "\n\n".join("\b\n" + part for part in (SPEC_HELP + "\n\n" + ADMIN_HELP).split("\n\n"))


@click.command("simulate", epilog=EPILOG, context_settings={"max_content_width": 100})
@_option(
    "--web.listen-address",
    "listen_address",
    type=ListenAddress(),
    default="127.0.0.1:9796",
    help="Address to serve the simulated CDM and IAM APIs on (port 0: any free port).",
)
@_option(
    "--project-id",
    type=NonEmpty(r"[A-Za-z0-9_-]+", "a project id (letters, digits, '-', '_')"),
    default=defaults.DEFAULT_PROJECT_ID,
    help="Project id in the API paths.",
)
@_option(
    "--region",
    type=NonEmpty(r"[A-Za-z0-9_-]+", "a region name"),
    default=defaults.DEFAULT_REGION,
    help="Region (the IAM project name a token may be scoped to).",
)
@_option(
    "--project",
    "extra_projects",
    type=NonEmpty(r"[A-Za-z0-9_-]{1,64}", "a project name (region ID, or region_suffix for a sub-project)"),
    multiple=True,
    help="Another IAM project, with clusters and jobs of its own (repeatable): a region's "
    "project (ap-southeast-1) is served on a port of its own, a sub-project (cn-north-4_dev) "
    "by its region's.",
)
@_option(
    "--region-without-cdm",
    "regions_without_cdm",
    type=NonEmpty(r"[A-Za-z0-9-]+", "a region name"),
    multiple=True,
    help="A region (with its project) whose gateway offers no CDM: 404 to every CDM path (repeatable).",
)
@_option(
    "--clusters",
    type=click.IntRange(0, 1000),
    default=2,
    help="Number of clusters (from the third one on, some are not normal).",
)
@_option(
    "--jobs",
    type=click.IntRange(0, 100_000),
    default=10,
    help="Jobs per cluster.",
)
@_option(
    "--seed",
    type=int,
    default=1,
    help="Seed of everything generated; same seed and clock, same answers.",
)
@_option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Latency added to every API answer.",
)
@_option(
    "--rate-limit",
    type=click.IntRange(min=0),
    default=120,
    help="Requests per minute per user and policy; 0 = unlimited.",
)
@_option(
    "--time-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    help="Speed of simulated job time (60: a minute per second).",
)
@_option(
    "--token-ttl-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=86400.0,
    help="Lifetime of IAM-issued tokens.",
)
@_option(
    "--token",
    type=NonEmpty(),
    default=defaults.DEFAULT_TOKEN,
    help="Static X-Auth-Token accepted (never expires).",
)
@_option(
    "--access-key",
    type=NonEmpty(),
    default=defaults.DEFAULT_ACCESS_KEY,
    help="AK accepted for SDK-HMAC-SHA256 signatures.",
)
@_option(
    "--secret-key",
    type=NonEmpty(),
    default=defaults.DEFAULT_SECRET_KEY,
    help="SK of that AK.",
)
@_option(
    "--iam-domain",
    type=NonEmpty(),
    default=defaults.DEFAULT_IAM_DOMAIN,
    help="IAM account (domain) name for password tokens.",
)
@_option(
    "--iam-user",
    type=NonEmpty(),
    default=defaults.DEFAULT_IAM_USER,
    help="IAM user name.",
)
@_option(
    "--iam-password",
    type=NonEmpty(),
    default=defaults.DEFAULT_IAM_PASSWORD,
    help="IAM user password.",
)
@_option(
    "--fault",
    "faults",
    type=FaultSpec(),
    multiple=True,
    help="Inject a fault (repeatable); grammar below.",
)
@_option(
    "--odd-job-names",
    is_flag=True,
    default=False,
    help="Give some jobs of the first cluster hostile names (a/b, .., ?x#y, 100%, ...).",
)
@_option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve HTTPS with this certificate (PEM); needs --tls-key.",
)
@_option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Private key (PEM) of --tls-cert.",
)
@_option(
    "--refuse-job-type",
    "refused_job_types",
    type=click.Choice(JOB_TYPES),
    multiple=True,
    help="Answer job lists of this type with 400 Cdm.0014, like a cluster that does not know it "
    "(repeatable).",
)
@_option(
    "--history-order",
    type=click.Choice(defaults.HISTORY_ORDERS),
    default="newest-first",
    help="Order of the runs in the run history (ShowSubmissions).",
)
@_option(
    "--replay",
    "replay_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Serve the API exchanges of a recording ('check --record FILE') instead of a simulated "
    "world; any credential is accepted. Only --web.listen-address and --tls-* apply then.",
)
def simulate(
    *,
    listen_address: tuple[str, int],
    project_id: str,
    region: str,
    extra_projects: tuple[str, ...],
    regions_without_cdm: tuple[str, ...],
    clusters: int,
    jobs: int,
    seed: int,
    latency_ms: float,
    rate_limit: int,
    time_scale: float,
    token_ttl_seconds: float,
    token: str,
    access_key: str,
    secret_key: str,
    iam_domain: str,
    iam_user: str,
    iam_password: str,
    faults: tuple[Fault, ...],
    odd_job_names: bool,
    tls_cert: str | None,
    tls_key: str | None,
    refused_job_types: tuple[str, ...],
    history_order: str,
    replay_file: str | None,
) -> None:
    """Run a simulated Huawei Cloud CDM + IAM API (for demos, tests and dashboards).

    One port serves the CDM paths (/v1.1/{project_id}/...) and IAM (POST /v3/auth/tokens,
    GET /v3/auth/projects); each other region of --project or --region-without-cdm gets a port
    of its own. It prints the URLs and the credentials it accepts, and runs until SIGINT or
    SIGTERM.
    With --replay it serves a recording of a real account instead.
    """
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key must be given together")
    if replay_file is not None:
        if faults:
            raise click.UsageError("--fault cannot be used with --replay")
        _replay(replay_file, listen_address, tls_cert, tls_key)
        return
    try:
        settings = SimulatorSettings(
            project_id=project_id,
            region=region,
            extra_projects=extra_projects,
            regions_without_cdm=regions_without_cdm,
            clusters=clusters,
            jobs=jobs,
            seed=seed,
            latency_ms=latency_ms,
            rate_limit=rate_limit,
            time_scale=time_scale,
            token_ttl_seconds=token_ttl_seconds,
            token=token,
            access_key=access_key,
            secret_key=secret_key,
            iam_domain=iam_domain,
            iam_user=iam_user,
            iam_password=iam_password,
            odd_job_names=odd_job_names,
            certfile=tls_cert,
            keyfile=tls_key,
            refused_job_types=refused_job_types,
            history_order=history_order,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = Simulator(settings)
    for fault in faults:
        sim.add_fault(fault)
    _start(sim, listen_address)
    _print_banner(sim, faults)
    _serve_until_signal(sim)
    click.echo("simulator stopped")


def _replay(
    replay_file: str, listen_address: tuple[str, int], tls_cert: str | None, tls_key: str | None
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        replay = Replay.load(replay_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {replay_file}: {exc}") from None
    except RecordingError as exc:
        raise click.ClickException(f"{replay_file}: {exc}") from None
    server = ReplayServer(replay, tls_cert, tls_key)
    _start(server, listen_address)
    recorded = replay.header.get("recorded_at", "?")
    click.echo(
        "\n".join(
            [
                f"CDM replay listening on {server.url}",
                f"  recording    {replay_file} ({replay.exchange_count} exchanges, recorded {recorded})",
                "  credentials  any are accepted; point endpoint and iam_endpoint here",
                f"  served       {server.url}/_sim/replay",
            ]
        )
    )
    sys.stdout.flush()
    _serve_until_signal(server)
    click.echo("replay stopped")


def _start(service: HttpService, listen_address: tuple[str, int]) -> None:
    host, port = listen_address
    try:
        service.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _serve_until_signal(service: HttpService) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        service.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.run_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_banner(sim: Simulator, faults: tuple[Fault, ...]) -> None:
    s = sim.settings
    lines = [
        f"CDM simulator listening on {sim.url}",
        f"  CDM API      {sim.url}/v1.1/{s.project_id}/clusters",
        f"  IAM API      {sim.url}/v3/auth/tokens",
        f"  admin API    {sim.url}/_sim/",
        f"  project_id   {s.project_id}   region {s.region}",
        f"  token        X-Auth-Token: {s.token}",
        f"  AK/SK        {s.access_key} / {s.secret_key}",
        f"  IAM password domain {s.iam_domain}, user {s.iam_user}, password {s.iam_password}",
        f"  seed {s.seed}, time scale {s.time_scale}, rate limit {s.rate_limit}/min per user and policy",
        f"  run history  {s.history_order}",
    ]
    if s.refused_job_types:
        lines.append(f"  job types refused by every cluster: {', '.join(s.refused_job_types)}")
    for cluster in sim.world.clusters():
        lines.append(
            f"  cluster      {cluster.id} {cluster.name} status {cluster.status} ({cluster.job_count} jobs)"
        )
    if len(sim.projects.regions) > 1:
        lines.append(f"  IAM projects {sim.url}/v3/auth/projects")
        for project in sim.projects.views():
            where = sim.region_url(project.region) if project.cdm else "no CDM in this region (404)"
            lines.append(f"  project      {project.id} {project.name}: {where}")
    lines.extend(f"  fault        {f}" for f in faults)
    click.echo("\n".join(lines))
    sys.stdout.flush()
