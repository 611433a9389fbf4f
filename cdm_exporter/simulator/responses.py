"""JSON bodies of the CDM API, built from world views, with the documented quirks.

Shapes follow docs/api-notes.md.  Where the sources disagree, every variant is produced,
chosen deterministically per job and run from the seed (so a client meets all of them, and
the same state always renders the same way):

* the user key of a submission is ``last-udpate-user`` (Sqoop's typo), ``last-update-user``, or
  both;
* epoch-millisecond timestamps are numbers or numeric strings;
* ``progress`` is an int or a float; ``isStopingIncrement`` is a string, usually ``""``;
* ``counters`` appear only when SUCCEEDED, ``error-summary``/``error-details`` only on failure;
* a BOOTING/PENDING submission is sometimes as terse as the documented example;
* a job that never ran answers ShowJobStatus with either an empty list or NEVER_EXECUTED;
* job list entries carry ``status``; their run counters are sometimes left out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdm_exporter.simulator import rng
from cdm_exporter.simulator.generate import STATUS_DETAIL
from cdm_exporter.simulator.runs import BOOTING, FAILED, FAILURE_ON_SUBMIT, NEVER_EXECUTED, PENDING, SUCCEEDED
from cdm_exporter.simulator.world import ClusterView, History, JobView, RunView

COUNTERS_KEY = "org.apache.sqoop.submission.counter.SqoopCounters"

_NODE_STATUSES = ("100", "200", "300", "303", "400", "800")


def ms(t: float) -> int:
    return round(t * 1000)


def iso_utc(t: float) -> str:
    """Cluster dates: ISO 8601 without zone, as in the documented example."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _ts(t: float, seed: int, *parts: object) -> int | str:
    value = ms(t)
    return str(value) if rng.chance(0.25, seed, *parts, "ts-as-string") else value


def cluster_json(c: ClusterView, seed: int) -> dict[str, Any]:
    frozen = c.status == "800"
    instance_id = rng.uuid_string(seed, c.id, "instance")
    body: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "status": c.status,
        "statusDetail": _status_detail(c.status),
        "isFrozen": "1" if frozen else "0",
        "created": iso_utc(c.created),
        "updated": iso_utc(c.updated),
        "azName": c.az,
        "flavorName": c.flavor,
        "dbuser": "cdm",
        "namespace": "SYS.CDM",
        "clusterMode": "sharding",
        "publicEndpoint": c.public_ip,
        "recentEvent": rng.randint(0, 12, seed, c.id, "events"),
        "isAutoOff": False,
        "isScheduleBootOff": False,
        "bakExpectedStartTime": "",
        "bakKeepDay": 0,
        "datastore": {"type": "cdm", "version": c.version},
        "instances": [
            {
                "id": instance_id,
                "name": f"{c.name}-cdm-{instance_id[:5]}-0",
                "type": "cdm",
                "status": c.status if c.status in _NODE_STATUSES else "200",
                "role": "master",
                "group": "node",
                "isFrozen": "1" if frozen else "0",
                "publicIp": c.public_ip,
                "manageIp": c.private_ip,
                "trafficIp": c.private_ip,
                "private_ip": c.private_ip,
                "internal_ip": c.private_ip,
                "manage_fix_ip": c.private_ip,
                "shard_id": "1",
                "flavor": {"id": rng.uuid_string(seed, c.flavor, "flavor"), "links": []},
                "volume": {"type": "LOCAL_DISK", "size": 100},
                "actions": ["REBOOTING"] if c.status == "500" else [],
                "config_status": "In-Sync",
                "paramsGroupId": rng.uuid_string(seed, c.id, "params"),
                "components": "cdm",
                "links": [],
                "resource": [],
            }
        ],
        "actionProgress": {"CREATING": "29%"} if c.status == "100" else {},
        "failedReasons": (
            {"CREATE_FAILED": {"errorCode": "Cdm.0000", "errorMsg": "Failed to create the ECS."}}
            if c.status in ("300", "303")
            else {}
        ),
        "customerConfig": {
            "failureRemind": "false",
            "clusterName": c.name,
            "serviceProvider": "",
            "localDisk": "false",
            "ssl": "false",
            "createFrom": "console",
            "resourceId": "",
            "flavorType": "",
            "workSpaceId": "",
            "trial": "false",
        },
    }
    if c.status == "500":
        body["task"] = {"id": rng.uuid_string(seed, c.id, "task"), "name": "RESTART", "description": ""}
    # The old documentation's example also had these two keys.
    if rng.chance(0.5, seed, c.id, "old-keys"):
        body["version"] = c.version
        body["config_status"] = "In-Sync"
    return body


def cluster_detail_json(c: ClusterView, seed: int, project_id: str) -> dict[str, Any]:
    body = cluster_json(c, seed)
    body.update(
        {
            "vpc_id": rng.uuid_string(seed, project_id, "vpc"),
            "subnet_id": rng.uuid_string(seed, project_id, "subnet"),
            "security_group_id": rng.uuid_string(seed, project_id, "sg"),
            "eipId": rng.uuid_string(seed, c.id, "eip"),
            "endpointDomainName": "",
            "publicEndpointDomainName": "",
            "config_status": "In-Sync",
            "actions": [],
            "eps_id": "0",
            "tags": [],
            "maintainWindow": {"day": "Mon", "startTime": "02:00", "endTime": "06:00"},
        }
    )
    return body


def _status_detail(status: str) -> str:
    return STATUS_DETAIL.get(status, "Unknown")


def _progress(run: RunView, seed: int, *parts: object) -> int | float:
    if rng.chance(0.5, seed, *parts, "progress-float"):
        return float(run.progress)
    return round(run.progress)


def _users(sub: dict[str, Any], user: str, seed: int, *parts: object) -> None:
    variant = rng.weighted((("typo", 0.45), ("correct", 0.35), ("both", 0.2)), seed, *parts, "user-key")
    if variant in ("typo", "both"):
        sub["last-udpate-user"] = user
    if variant in ("correct", "both"):
        sub["last-update-user"] = user


def submission_json(job: JobView, run: RunView, seed: int) -> dict[str, Any]:
    """One Submission (ShowJobStatus / ShowSubmissions), quirks keyed by job and run."""
    q = (job.cluster_id, job.key, run.submission_id)
    user = job.meta.creation_user
    if run.status in (BOOTING, PENDING) and rng.chance(0.5, seed, *q, "terse"):
        # As terse as the documented BOOTING example.
        return {
            "job-name": job.name,
            "creation-user": user,
            "creation-date": _ts(run.start, seed, *q, "creation"),
            "progress": 1 if rng.chance(0.5, seed, *q, "terse-progress") else 0,
            "status": run.status,
        }
    sub: dict[str, Any] = {
        "job-name": job.name,
        "submission-id": run.submission_id,
        "status": run.status,
        "progress": _progress(run, seed, *q),
        "external-id": run.external_id,
        "creation-user": user,
        "creation-date": _ts(run.start, seed, *q, "creation"),
        "execute-date": _ts(run.start, seed, *q, "execute"),
        "last-update-date": _ts(run.last_update, seed, *q, "update"),
        "isIncrementing": job.meta.incremental,
        "isStopingIncrement": "" if rng.chance(0.85, seed, *q, "stoping") else "false",
        "is-execute-auto": job.scheduled,
        "isDeleteJob": job.meta.delete_after_run,
        "delete_rows": run.delete_rows,
        "update_rows": run.update_rows,
        "write_rows": run.write_rows,
    }
    _users(sub, user, seed, *q)
    if run.status == SUCCEEDED:
        sub["counters"] = {
            COUNTERS_KEY: {
                "BYTES_READ": run.bytes_read,
                "BYTES_WRITTEN": run.bytes_written,
                "ROWS_READ": run.rows_read,
                "ROWS_WRITTEN": run.rows_written,
                "ROWS_WRITTEN_SKIPPED": run.rows_skipped,
                "TOTAL_SIZE": run.total_size,
                "TOTAL_FILES": run.total_files,
                "FILES_READ": run.files_read,
                "FILES_WRITTEN": run.files_written,
                "FILES_SKIPPED": run.files_skipped,
            }
        }
    if run.status in (FAILED, FAILURE_ON_SUBMIT):
        sub["progress"] = -1 if isinstance(sub["progress"], int) else -1.0
        sub["error-summary"] = run.error_summary or ""
        sub["error-details"] = run.error_details or ""
    return sub


def never_executed_json(job: JobView, seed: int) -> dict[str, Any]:
    return {
        "job-name": job.name,
        "status": NEVER_EXECUTED,
        "progress": -1,
        "creation-user": job.meta.creation_user,
        "creation-date": _ts(job.created, seed, job.cluster_id, job.key, "never-created"),
        "is-execute-auto": job.scheduled,
        "isIncrementing": job.meta.incremental,
        "isStopingIncrement": "",
        "isDeleteJob": job.meta.delete_after_run,
    }


def job_status_body(job: JobView, seed: int) -> dict[str, Any]:
    if job.latest is None:
        return {"submissions": [] if job.never_status_empty else [never_executed_json(job, seed)]}
    return {"submissions": [submission_json(job, job.latest, seed)]}


def submissions_body(
    job: JobView, history: History, page_no: int, page_size: int, seed: int
) -> dict[str, Any]:
    first = (page_no - 1) * page_size
    page = history.runs[first : first + page_size]
    return {
        "submissions": [submission_json(job, run, seed) for run in page],
        "total": history.total,
        "page_no": page_no,
        "page_size": page_size,
    }


def job_json(job: JobView, seed: int) -> dict[str, Any]:
    """A Job of ShowJobs: the definition plus status and latest-run fields."""
    m = job.meta
    run = job.latest
    q = (job.cluster_id, job.key, run.submission_id if run else 0)
    body: dict[str, Any] = {
        "name": job.name,
        "job_type": job.job_type,
        "type": job.job_type,
        "id": job.serial,
        "status": job.list_status,
        "from-connector-name": m.from_connector,
        "to-connector-name": m.to_connector,
        "from-link-name": m.from_link,
        "to-link-name": m.to_link,
        "creation-user": m.creation_user,
        "update-user": m.update_user,
        "creation-date": _ts(job.created, seed, *q, "job-created"),
        "update-date": _ts(
            max(job.updated, run.last_update) if run else job.updated, seed, *q, "job-updated"
        ),
        "is_incre_job": m.incremental,
        "is_incrementing": m.incremental and run is not None and not run.finished,
        "is_use_sql": m.use_sql,
        "enabled": True,
        "flag": m.flag,
        "group_name": m.group_name,
        "external_id": run.external_id if run else "",
        "from-config-values": m.from_config,
        "to-config-values": m.to_config,
        "driver-config-values": m.driver_config,
    }
    if run is not None:
        body["execute_start_date"] = _ts(run.start, seed, *q, "exec-start")
        body["execute_update_date"] = _ts(run.last_update, seed, *q, "exec-update")
        body["execute_create_date"] = _ts(run.start, seed, *q, "exec-create")
        # Whether listings always carry the counters is not confirmed: sometimes leave them out.
        if not rng.chance(0.15, seed, *q, "no-list-counters"):
            body.update(
                {
                    "bytes_read": run.bytes_read,
                    "bytes_written": run.bytes_written,
                    "rows_read": run.rows_read,
                    "rows_written": run.rows_written,
                    "write_rows": run.write_rows,
                    "update_rows": run.update_rows,
                    "delete_rows": run.delete_rows,
                    "files_read": run.files_read,
                    "files_written": run.files_written,
                }
            )
    return body


def jobs_body(jobs: list[JobView], total: int, page_no: int, page_size: int, seed: int) -> dict[str, Any]:
    return {
        "total": total,
        "jobs": [job_json(j, seed) for j in jobs],
        "page_no": page_no,
        "page_size": page_size,
    }
