"""What an exposition, a report or the `check` table is built from: the known state at one moment."""

from __future__ import annotations

from dataclasses import dataclass

from cdm_exporter.config import StatusSeries
from cdm_exporter.polling.state import DiscoveryView, TargetView
from cdm_exporter.polling.telemetry import TelemetrySnapshot


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one exposition is built from."""

    targets: tuple[TargetView, ...]
    telemetry: TelemetrySnapshot
    scrape_duration: float | None
    discoveries: tuple[DiscoveryView, ...] = ()  # one per ``projects`` target
    storage_up: bool | None = None  # None: no state store configured
    leader: bool = True  # this process polls the API
    status_series: StatusSeries = "all"  # collection.status_series
