"""A small admin HTTP API under ``/_sim/`` to drive a simulator in another process.

No authentication (the simulator guards nothing real; bind it to localhost).  Bodies are JSON;
job names in paths are percent-encoded like in the CDM API.  Errors: ``{"error": "..."}`` with
400 (bad input), 404 (no such cluster/job/fault) or 409 (conflict, e.g. job already running).

==========================================================  =======================================
``GET    /_sim/``                                            this list, settings, credentials
``GET    /_sim/stats``                                       request counts, 429s, per-minute load
``POST   /_sim/stats/reset``                                 zero the stats
``GET    /_sim/faults``                                      faults in force
``POST   /_sim/faults``                                      ``{"spec": "job_status:500"}`` or the
                                                             Fault fields as JSON; answers its id
``DELETE /_sim/faults``                                      clear all faults
``DELETE /_sim/faults/{id}``                                 remove one fault
``POST   /_sim/tokens/revoke``                               revoke every IAM-issued token
``GET    /_sim/clusters``                                    clusters with their job counts
``POST   /_sim/clusters``                                    ``{"name"?, "status"?, "jobs"?}``
``DELETE /_sim/clusters/{id}``                               remove a cluster
``PUT    /_sim/clusters/{id}/status``                        ``{"status": "900"}``
``GET    /_sim/clusters/{id}/jobs``                          jobs with their current status
``POST   /_sim/clusters/{id}/jobs``                          ``{"name", "job_type"?, "scheduled"?,
                                                             "period"?, "duration"?,
                                                             "fail_probability"?}``
``DELETE /_sim/clusters/{id}/jobs/{name}``                   delete a job
``POST   /_sim/clusters/{id}/jobs/{name}/start``             ``{"outcome"?, "duration"?}``
``POST   /_sim/clusters/{id}/jobs/{name}/outcome``           ``{"outcome", "which"?: "current" |
                                                             "next", "end_now"?: false}``
``GET    /_sim/projects``                                    IAM projects, their regions and URLs
``POST   /_sim/projects``                                    ``{"name", "clusters"?, "jobs"?,
                                                             "enabled"?}`` in a served region
``PATCH  /_sim/projects/{project_id}``                       ``{"enabled": false}``
``DELETE /_sim/projects/{project_id}``                       remove a project
``*      /_sim/projects/{project_id}/clusters/...``          the cluster and job routes above, on
                                                             that project (they act on the primary
                                                             project otherwise)
==========================================================  =======================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from cdm_exporter.simulator.components import Components
from cdm_exporter.simulator.exchange import Plan, json_plan
from cdm_exporter.simulator.faults import Fault, FaultSpecError
from cdm_exporter.simulator.routing import BadRequestTarget, decode_segment
from cdm_exporter.simulator.world import JobView, World, WorldError

T = TypeVar("T")

ENDPOINTS_HELP = [line.strip() for line in (__doc__ or "").splitlines() if line.startswith("``")]


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _field(
    data: dict[str, Any], key: str, kind: type[T], default: T | None = None, *, required: bool = False
) -> T | None:
    if key not in data or data[key] is None:
        if required:
            raise _AdminError(400, f"{key} is required")
        return default
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _AdminError(400, f"{key} must be a {kind.__name__}")
    return value


def _job_summary(job: JobView) -> dict[str, Any]:
    latest = job.latest
    return {
        "name": job.name,
        "job_type": job.job_type,
        "scheduled": job.scheduled,
        "status": job.list_status,
        "run_status": latest.status if latest else None,
        "submission_id": latest.submission_id if latest else None,
        "progress": latest.progress if latest else None,
    }


class AdminApi:
    def __init__(self, parts: Components, region_urls: Callable[[], dict[str, str]] | None = None) -> None:
        self.parts = parts
        self.region_urls = region_urls or dict

    def handle(self, method: str, raw_path: str, body: bytes) -> Plan:
        try:
            segs = [decode_segment(s) for s in raw_path.split("/")[2:] if s != ""]
            data = self._body(body)
            return self._route(method, segs, data)
        except _AdminError as exc:
            return json_plan(exc.status, {"error": str(exc)})
        except WorldError as exc:
            return json_plan(exc.http_status, {"error": str(exc), "errCode": exc.err_code})
        except (FaultSpecError, BadRequestTarget) as exc:
            return json_plan(400, {"error": str(exc)})

    @staticmethod
    def _body(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except ValueError:
            raise _AdminError(400, "the body must be JSON") from None
        if not isinstance(data, dict):
            raise _AdminError(400, "the body must be a JSON object")
        return data

    def _route(self, method: str, segs: list[str], data: dict[str, Any]) -> Plan:
        projects = self.parts.projects
        match method, segs:
            case "GET", ["projects"]:
                urls = self.region_urls()
                return json_plan(
                    200, {"projects": [{**asdict(v), "url": urls.get(v.region)} for v in projects.views()]}
                )
            case "POST", ["projects"]:
                view = projects.add(
                    _field(data, "name", str, required=True) or "",
                    clusters=_field(data, "clusters", int),
                    jobs=_field(data, "jobs", int),
                    enabled=bool(_field(data, "enabled", bool, True)),
                )
                return json_plan(201, asdict(view))
            case "PATCH", ["projects", project_id]:
                enabled = bool(_field(data, "enabled", bool, required=True))
                return json_plan(200, asdict(projects.set_enabled(project_id, enabled)))
            case "DELETE", ["projects", project_id]:
                projects.remove(project_id)
                return json_plan(200, {"ok": True})
            case _, ["projects", project_id, "clusters", *rest]:
                return self._world_route(method, ["clusters", *rest], data, projects.world(project_id))
        return self._world_route(method, segs, data, self.parts.world)

    def _world_route(self, method: str, segs: list[str], data: dict[str, Any], world: World) -> Plan:
        p = self.parts
        match method, segs:
            case "GET", []:
                return json_plan(200, self._index())
            case "GET", ["stats"]:
                return json_plan(200, p.stats.snapshot())
            case "POST", ["stats", "reset"]:
                p.stats.reset()
                return json_plan(200, {"ok": True})
            case "GET", ["faults"]:
                return json_plan(
                    200,
                    {
                        "faults": [
                            {"id": a.id, "remaining": a.remaining, **a.fault.to_dict()}
                            for a in p.faults.active()
                        ]
                    },
                )
            case "POST", ["faults"]:
                spec = data.get("spec")
                fault = Fault.parse(spec) if isinstance(spec, str) else Fault.from_dict(data)
                return json_plan(201, {"id": p.faults.add(fault), **fault.to_dict()})
            case "DELETE", ["faults"]:
                p.faults.clear()
                return json_plan(200, {"ok": True})
            case "DELETE", ["faults", fault_id]:
                if not fault_id.isdigit() or not p.faults.remove(int(fault_id)):
                    raise _AdminError(404, f"no fault {fault_id}")
                return json_plan(200, {"ok": True})
            case "POST", ["tokens", "revoke"]:
                return json_plan(200, {"revoked": p.tokens.revoke_all()})
            case "GET", ["clusters"]:
                return json_plan(200, {"clusters": [asdict(c) for c in world.clusters()]})
            case "POST", ["clusters"]:
                cluster = world.add_cluster(
                    name=_field(data, "name", str),
                    status=_field(data, "status", str),
                    jobs=_field(data, "jobs", int),
                )
                return json_plan(201, asdict(cluster))
            case "DELETE", ["clusters", cluster_id]:
                world.remove_cluster(cluster_id)
                return json_plan(200, {"ok": True})
            case "PUT", ["clusters", cluster_id, "status"]:
                world.set_cluster_status(cluster_id, _field(data, "status", str, required=True) or "")
                return json_plan(200, asdict(world.cluster(cluster_id)))
            case "GET", ["clusters", cluster_id, "jobs"]:
                return json_plan(200, {"jobs": [_job_summary(j) for j in world.jobs(cluster_id)]})
            case "POST", ["clusters", cluster_id, "jobs"]:
                job = world.add_job(
                    cluster_id,
                    _field(data, "name", str, required=True) or "",
                    _field(data, "job_type", str, "NORMAL_JOB") or "NORMAL_JOB",
                    scheduled=bool(_field(data, "scheduled", bool, False)),
                    period=_field(data, "period", float),
                    duration=_field(data, "duration", float),
                    fail_probability=_field(data, "fail_probability", float),
                )
                return json_plan(201, _job_summary(job))
            case "DELETE", ["clusters", cluster_id, "jobs", name]:
                world.delete_job(cluster_id, name)
                return json_plan(200, {"ok": True})
            case "POST", ["clusters", cluster_id, "jobs", name, "start"]:
                run = world.start_run(
                    cluster_id,
                    name,
                    outcome=_field(data, "outcome", str),
                    duration=_field(data, "duration", float),
                )
                return json_plan(201, {"submission_id": run.submission_id, "status": run.status})
            case "POST", ["clusters", cluster_id, "jobs", name, "outcome"]:
                which = _field(data, "which", str, "current")
                if which not in ("current", "next"):
                    raise _AdminError(400, "which must be 'current' or 'next'")
                world.set_run_outcome(
                    cluster_id,
                    name,
                    _field(data, "outcome", str, required=True) or "",
                    which="current" if which == "current" else "next",
                    end_now=bool(_field(data, "end_now", bool, False)),
                )
                return json_plan(200, _job_summary(world.job(cluster_id, name)))
        raise _AdminError(404, f"no admin endpoint {method} /_sim/{'/'.join(segs)}")

    def _index(self) -> dict[str, Any]:
        s = self.parts.settings
        return {
            "endpoints": ENDPOINTS_HELP,
            "project_id": s.project_id,
            "region": s.region,
            "seed": s.seed,
            "time_scale": s.time_scale,
            "rate_limit": s.rate_limit,
            "regions": self.region_urls(),
            "credentials": {
                "token": s.token,
                "access_key": s.access_key,
                "secret_key": s.secret_key,
                "iam_domain": s.iam_domain,
                "iam_user": s.iam_user,
                "iam_password": s.iam_password,
            },
        }
