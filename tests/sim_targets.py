"""Exporter target configurations pointing at a running simulator."""

from __future__ import annotations

from cdm_exporter.config import (
    AuthConfig,
    PasswordAuthConfig,
    ProjectSelection,
    Secret,
    TargetConfig,
    TokenAuthConfig,
)
from cdm_exporter.config.model import DEFAULT_ENDPOINT_TEMPLATE
from cdm_exporter.simulator import Simulator


def password_auth(sim: Simulator) -> PasswordAuthConfig:
    """Log in to the simulator's IAM with its user and password."""
    settings = sim.settings
    return PasswordAuthConfig(settings.iam_domain, settings.iam_user, Secret(settings.iam_password))


def sim_target(sim: Simulator, name: str = "sim", *, auth: AuthConfig | None = None) -> TargetConfig:
    """A target for ``sim`` (CDM and IAM on the same port), with its static token by default."""
    return TargetConfig(
        name=name,
        region=sim.settings.region,
        project_id=sim.settings.project_id,
        endpoint=sim.url,
        iam_endpoint=sim.url,
        auth=auth or TokenAuthConfig(Secret(sim.settings.token)),
    )


def sim_account_target(
    sim: Simulator, name: str = "account", *, auth: AuthConfig | None = None
) -> TargetConfig:
    """A ``projects: all`` target for ``sim``'s whole account: IAM on its main port, each served
    region's CDM at its own URL; the static token by default (its one project is polled)."""
    return TargetConfig(
        name=name,
        region="",
        project_id="",
        endpoint=DEFAULT_ENDPOINT_TEMPLATE,
        iam_endpoint=sim.url,
        auth=auth or TokenAuthConfig(Secret(sim.settings.token)),
        projects=ProjectSelection(all_projects=True),
        region_endpoints=tuple((region, sim.region_url(region)) for region in sim.projects.regions),
    )
