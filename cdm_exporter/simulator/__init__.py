"""A simulated Huawei Cloud CDM (Cloud Data Migration) + IAM API, for the demo, tests and benchmarks.

It is an independent reading of the API documentation (``docs/api-notes.md``): it shares no code
with the exporter's client.

What it models
    ListClusters, ShowClusterDetail, ShowJobs (list and single), ShowJobStatus, ShowSubmissions
    and IAM ``POST /v3/auth/tokens`` and ``GET /v3/auth/projects``; an account of several
    projects in several regions (one port per region, a region without CDM); clusters in several
    states; jobs of the three
    types living through runs (BOOTING/PENDING -> RUNNING -> SUCCEEDED | FAILED |
    FAILURE_ON_SUBMIT, some NEVER_EXECUTED) computed from (seed, simulated time); the documented
    JSON quirks; token and AK/SK (``SDK-HMAC-SHA256``) authentication; per-user, per-policy
    rate limits; injected faults; an admin API under ``/_sim/``.

Quick start::

    from cdm_exporter.simulator import Simulator, SimulatorSettings, Fault
    with Simulator(SimulatorSettings(clusters=2, jobs=10, seed=1)) as sim:
        requests.get(f"{sim.url}/v1.1/{sim.settings.project_id}/clusters",
                     headers={"X-Auth-Token": sim.settings.token})
"""

from cdm_exporter.simulator.clock import ManualClock
from cdm_exporter.simulator.faults import SPEC_HELP, ActiveFault, Fault, FaultSet, FaultSpecError
from cdm_exporter.simulator.projects import ProjectView
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.simulator import Simulator
from cdm_exporter.simulator.stats import RequestRecord, SimulatorStats
from cdm_exporter.simulator.world import (
    ClusterNotFound,
    ClusterView,
    History,
    JobNotFound,
    JobRunning,
    JobView,
    NoRunInProgress,
    RunView,
    World,
    WorldError,
)

__all__ = [
    "SPEC_HELP",
    "ActiveFault",
    "ClusterNotFound",
    "ClusterView",
    "Fault",
    "FaultSet",
    "FaultSpecError",
    "History",
    "JobNotFound",
    "JobRunning",
    "JobView",
    "ManualClock",
    "NoRunInProgress",
    "ProjectView",
    "RequestRecord",
    "RunView",
    "Simulator",
    "SimulatorSettings",
    "SimulatorStats",
    "World",
    "WorldError",
]
