"""The names of the API calls the exporter makes and of the rate-limit policies they draw from.

One typed definition: an endpoint or policy name spelled wrong anywhere is a mypy error. The
names are label values (``cdm_api_requests_total{endpoint}``, ``cdm_api_budget_remaining{policy}``)
and log keys, so they are plain strings, never renamed.

CDM counts requests per IAM user and policy over a rolling minute: ``job_status`` covers
ShowJobStatus alone, ``common`` every other CDM call. IAM's calls (``iam_token``, and
``iam_projects``, the listing of a credential's projects) are not limited by CDM.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

Endpoint = Literal["iam_token", "iam_projects", "list_clusters", "list_jobs", "job_status", "submissions"]
Policy = Literal["job_status", "common"]

ENDPOINTS: Final[tuple[Endpoint, ...]] = get_args(Endpoint)
POLICIES: Final[tuple[Policy, ...]] = get_args(Policy)

#: which policy each CDM endpoint draws from
ENDPOINT_POLICY: Final[Mapping[Endpoint, Policy]] = MappingProxyType(
    {
        "list_clusters": "common",
        "list_jobs": "common",
        "submissions": "common",
        "job_status": "job_status",
    }
)
