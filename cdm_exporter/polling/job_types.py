"""Job types a cluster does not know: remembered per cluster, skipped, tried again hourly.

The newest ShowJobs reference lists only ``NORMAL_JOB`` and ``BATCH_JOB``; ``SCENARIO_JOB``
appears in older pages only, so a cluster may refuse a list of that type. A type counts as
refused when its list answers a CDM error (``Cdm.xxxx``) on a 4xx that is neither an
authentication failure (401/403, ``Cdm.0032``), throttling (429) nor "not found", *and* another
type of the same cluster listed fine in the same listing: a cluster that refuses every type is
down, not selective (a cluster that is not running answers every list with ``Cdm.0021``).
Only a cluster that ListClusters calls normal (``200``) can refuse a type: one that is not
running answers every list with an error, which stays a failure of its list (one call, not one
per type). A refused type is logged once, skipped, and tried again after
:data:`RETRY_SECONDS`; the cluster stays up with its other types.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdm_exporter.api.errors import ApiError, AuthError, CdmError, NotFound, RateLimited
from cdm_exporter.api.models import Cluster

#: how long a refused job type is skipped before it is tried again
RETRY_SECONDS = 3600.0


def refuses_type(cluster: Cluster, error: CdmError) -> bool:
    """Whether a failed list of one job type may mean ``cluster`` does not know that type."""
    return (
        cluster.status in (None, "200")
        and isinstance(error, ApiError)
        and not isinstance(error, AuthError | RateLimited | NotFound)
        and error.status is not None
        and 400 <= error.status < 500
        and (error.code or "").upper().startswith("CDM.")
    )


def skipped(job_type: str, unsupported: Mapping[str, float], now: float) -> bool:
    """Whether ``job_type`` is still to be skipped at ``now`` (monotonic seconds)."""
    refused_at = unsupported.get(job_type)
    return refused_at is not None and now - refused_at < RETRY_SECONDS
