"""How each fault kind (see ``faults``) becomes a response plan."""

from __future__ import annotations

from collections.abc import Callable

from cdm_exporter.simulator import errors
from cdm_exporter.simulator.exchange import JSON_TYPE, Plan, json_bytes, json_plan
from cdm_exporter.simulator.faults import DEFAULT_HUGE_SIZE, Fault

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center><h1>502 Bad Gateway"
    b"</h1></center><hr><center>nginx</center></body></html>\n"
)

_MALFORMED = {
    "iam_token": b'{"token": {"expires_at": "2020-01-04T09:05:22.70',
    "list_clusters": b'{"clusters": [{"id": "bae65496-643e-47ca-84af-948672de7eeb", "name": "cdm-',
    "cluster_detail": b'{"id": "bae65496-643e-47ca-84af-948672de7eeb", "status": 2',
    "list_jobs": b'{"total": 12, "jobs": [{"name": "mysql2hive_orders", "status": "RUNN',
    "job_status": b'{"submissions": [{"job-name": "mysql2hive_orders", "progress": 4',
    "submissions": b'{"submissions": [{"job-name": "mysql2hive_orders"}, {"status": ',
}

_WRONG_SHAPE = {
    "iam_token": {"token": ["not", "an", "object"]},
    "list_clusters": {"clusters": {"id": "not-a-list"}},
    "cluster_detail": ["not", "an", "object"],
    "list_jobs": {"total": "many", "jobs": {"name": 1}, "page_no": "first"},
    "job_status": {"submissions": [1, "two", None, {"status": 3, "progress": "half"}]},
    "submissions": {"submissions": {"job-name": []}, "total": None},
}

# Closing part of a huge body: the endpoint's real (empty) shape, after a padding key.
_HUGE_SUFFIX = {
    "iam_token": b'","token":{}}',
    "list_clusters": b'","clusters":[]}',
    "cluster_detail": b'","id":"huge"}',
    "list_jobs": b'","total":0,"jobs":[],"page_no":1,"page_size":10}',
    "job_status": b'","submissions":[]}',
    "submissions": b'","submissions":[],"total":0,"page_no":1,"page_size":10}',
}

NEEDS_NORMAL_RESPONSE = frozenset({"delay", "trickle", "reset"})


def fault_plan(fault: Fault, endpoint: str, request_id: str, normal: Callable[[], Plan]) -> Plan:
    """The plan for ``fault`` on a request to ``endpoint``; ``normal`` computes the regular
    answer, used by the kinds that distort it (delay, trickle, reset)."""
    kind = fault.effective_kind
    if kind in NEEDS_NORMAL_RESPONSE:
        plan = normal()
        if kind == "trickle":
            plan.action = "trickle"
            plan.chunk_size = max(1, fault.size or 1)
            plan.interval = fault.interval
        elif kind == "reset":
            plan.action = "reset"
            plan.reset_after = min(
                fault.size if fault.size is not None else len(plan.body) // 2, len(plan.body)
            )
    elif kind == "status":
        status = fault.status if fault.status is not None else 500
        if fault.body is not None:
            plan = Plan(
                status=status, body=fault.body.encode("utf-8"), content_type=fault.content_type or JSON_TYPE
            )
        else:
            plan = json_plan(
                status, errors.default_fault_body(status, endpoint, fault.error_code, request_id)
            )
    elif kind == "hang":
        plan = Plan(status=0, action="hang")
    elif kind == "close":
        plan = Plan(status=0, action="close")
    elif kind == "malformed":
        plan = Plan(status=fault.status or 200, body=_MALFORMED.get(endpoint, b'{"truncated": '))
    elif kind == "html":
        plan = Plan(status=fault.status or 200, body=HTML_PAGE, content_type="text/html")
    elif kind == "wrong_shape":
        plan = Plan(status=fault.status or 200, body=json_bytes(_WRONG_SHAPE.get(endpoint, [])))
    else:  # huge
        size = fault.size if fault.size is not None else DEFAULT_HUGE_SIZE
        prefix = b'{"padding":"'
        suffix = _HUGE_SUFFIX.get(endpoint, b'"}')
        plan = Plan(
            status=fault.status or 200,
            action="stream",
            stream_prefix=prefix,
            stream_fill=max(0, size - len(prefix) - len(suffix)),
            stream_suffix=suffix,
        )
    if fault.content_type is not None:
        plan.content_type = fault.content_type
    plan.delay += fault.delay
    return plan
