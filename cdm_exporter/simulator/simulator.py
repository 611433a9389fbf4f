"""``Simulator``: a fake Huawei Cloud CDM + IAM endpoint on one local port.

Start it, point a client at ``sim.url`` (both the CDM paths and ``/v3/auth/tokens`` live
there), and inspect or change what it does through ``sim.world``, ``sim.stats`` and
``sim.add_fault``.  It serves in background threads; ``stop()`` (or leaving the ``with`` block)
closes everything, including connections stuck in injected hangs.
"""

from __future__ import annotations

from cdm_exporter.simulator.app import SimulatorApp
from cdm_exporter.simulator.auth import TokenStore
from cdm_exporter.simulator.components import Components
from cdm_exporter.simulator.faults import ActiveFault, Fault, FaultSet
from cdm_exporter.simulator.service import HttpService
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import SimulatorStats
from cdm_exporter.simulator.world import World


class Simulator(HttpService):
    """A running (or ready-to-run) simulated CDM endpoint. See the package docstring."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.settings = settings if settings is not None else SimulatorSettings()
        self._parts = Components.create(self.settings)
        super().__init__(
            SimulatorApp(self._parts, lambda: self.url), self.settings.certfile, self.settings.keyfile
        )

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

    def revoke_tokens(self) -> int:
        """Invalidate every IAM-issued token (clients must get a new one after their 401)."""
        return self._parts.tokens.revoke_all()
