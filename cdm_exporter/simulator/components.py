"""The parts of one simulator, bundled so the HTTP application and admin API share them."""

from __future__ import annotations

from dataclasses import dataclass

from cdm_exporter.simulator.auth import TokenStore
from cdm_exporter.simulator.faults import FaultSet
from cdm_exporter.simulator.projects import Projects
from cdm_exporter.simulator.ratelimit import RateLimiter
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import SimulatorStats
from cdm_exporter.simulator.world import World


@dataclass(frozen=True)
class Components:
    settings: SimulatorSettings
    world: World  # the primary project's
    projects: Projects
    tokens: TokenStore
    limiter: RateLimiter
    faults: FaultSet
    stats: SimulatorStats

    @classmethod
    def create(cls, settings: SimulatorSettings) -> Components:
        world = World(settings)
        return cls(
            settings=settings,
            world=world,
            projects=Projects(settings, world),
            tokens=TokenStore(settings.seed, settings.token_ttl_seconds, settings.clock),
            limiter=RateLimiter(settings.rate_limit),
            faults=FaultSet(),
            stats=SimulatorStats(),
        )
