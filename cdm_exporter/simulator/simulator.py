"""``Simulator``: a fake Huawei Cloud CDM + IAM account on local ports.

Start it, point a client at ``sim.url`` (both the primary project's CDM paths and IAM's
``/v3/auth/tokens`` and ``/v3/auth/projects`` live there), and inspect or change what it does
through ``sim.world``, ``sim.stats`` and ``sim.add_fault``.  With ``extra_projects`` or
``regions_without_cdm`` in its settings, every other region is served on a port of its own
(``sim.region_url(region)``; IAM answers there too), and ``sim.projects`` adds, disables and
removes projects at run time.  It serves in background threads; ``stop()`` (or leaving the
``with`` block) closes everything, including connections stuck in injected hangs.
"""

from __future__ import annotations

import functools

from cdm_exporter.simulator.app import SimulatorApp
from cdm_exporter.simulator.auth import TokenStore
from cdm_exporter.simulator.components import Components
from cdm_exporter.simulator.faults import ActiveFault, Fault, FaultSet
from cdm_exporter.simulator.projects import Projects
from cdm_exporter.simulator.service import HttpService
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import SimulatorStats
from cdm_exporter.simulator.world import World


class Simulator(HttpService):
    """A running (or ready-to-run) simulated CDM endpoint. See the package docstring."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else SimulatorSettings()
        self._parts = Components.create(self.settings)
        certfile, keyfile = self.settings.certfile, self.settings.keyfile
        super().__init__(
            SimulatorApp(self._parts, lambda: self.url, self.settings.region, self.region_url),
            certfile,
            keyfile,
        )
        # every other region's CDM endpoint, on a port of its own
        self._regions = {
            region: HttpService(
                SimulatorApp(
                    self._parts, functools.partial(self.region_url, region), region, self.region_url
                ),
                certfile,
                keyfile,
            )
            for region in self._parts.projects.regions[1:]
        }

    # --- the parts --------------------------------------------------------------------------

    @property
    def world(self) -> World:
        return self._parts.world

    @property
    def stats(self) -> SimulatorStats:
        return self._parts.stats

    @property
    def faults(self) -> FaultSet:
        return self._parts.faults

    @property
    def tokens(self) -> TokenStore:
        return self._parts.tokens

    def add_fault(self, fault: Fault) -> int:
        """Inject a fault; returns its id (for :meth:`remove_fault`)."""
        return self._parts.faults.add(fault)

    def remove_fault(self, fault_id: int) -> bool:
        return self._parts.faults.remove(fault_id)

    def clear_faults(self) -> None:
        self._parts.faults.clear()

    def active_faults(self) -> list[ActiveFault]:
        return self._parts.faults.active()

    @property
    def projects(self) -> Projects:
        """The account's IAM projects, each with its world (``projects.world(project_id)``)."""
        return self._parts.projects

    def region_url(self, region: str) -> str:
        """``http(s)://HOST:PORT`` of the CDM endpoint of ``region`` (``url`` for the primary one)."""
        if region == self.settings.region:
            return self.url
        service = self._regions.get(region)
        if service is None:
            served = ", ".join(self._parts.projects.regions)
            raise KeyError(f"region {region!r} is not served (served: {served})")
        return service.url

    def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve the primary region on ``port`` and every other region on a free port of ``host``."""
        super().start(host, port)
        for service in self._regions.values():
            service.start(host, 0)

    def stop(self) -> None:
        for service in self._regions.values():
            service.stop()
        super().stop()

    def revoke_tokens(self) -> int:
        """Invalidate every IAM-issued token (clients must get a new one after their 401)."""
        return self._parts.tokens.revoke_all()
