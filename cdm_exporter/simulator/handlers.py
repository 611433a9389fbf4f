"""The CDM read API proper: ListClusters, ShowClusterDetail, ShowJobs, ShowJobStatus,
ShowSubmissions, answering from the world (authentication, throttling and faults are done
before these are reached).

Choices where the real service is not documented (docs/api-notes.md, "Open questions"), each made
deterministically from the seed so that clients meet every variant:

* unknown cluster id on a cluster-scoped path: 400 or 404, body ``Cdm.0001``;
* a cluster that is not normal (status other than ``"200"``) answers its job endpoints with
  400 ``Cdm.0021`` "Failed to connect to server <cluster name>." (the service cannot reach
  the cluster's own server);
* unknown job: 400 ``Cdm.0100`` (sometimes ``Cdm.0054``);
* ``page_size`` of ``job/all`` defaults to 10 or 100; out of 10..100 it is 400 ``Cdm.0024``;
* ShowSubmissions accepts ``page_no``/``page_size`` (1..100, default 10) and lists runs in
  ``settings.history_order`` (newest first by default);
* a job type in ``settings.refused_job_types`` is answered 400 ``Cdm.0014`` on every cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cdm_exporter.simulator import errors, responses, rng
from cdm_exporter.simulator.generate import JOB_TYPES
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.world import ClusterNotFound, History, JobNotFound, JobView, World

Result = tuple[int, dict[str, Any]]

_MAX_INT = 2147483647


class _ParamError(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("externalMessage", ""))
        self.body = body


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _ParamError(errors.cdm_error("Cdm.0009", name)) from None
    if not low <= value <= high:
        raise _ParamError(errors.cdm_error("Cdm.0024", name, f"{low}, {high}"))
    return value


class CdmApi:
    def __init__(self, world: World, settings: SimulatorSettings) -> None:
        self.world = world
        self.settings = settings
        self.seed = settings.seed
        self.default_page_size = 10 if rng.chance(0.5, settings.seed, "default-page-size") else 100

    def list_clusters(self) -> Result:
        return 200, {"clusters": [responses.cluster_json(c, self.seed) for c in self.world.clusters()]}

    def cluster_detail(self, cluster_id: str) -> Result:
        try:
            cluster = self.world.cluster(cluster_id)
        except ClusterNotFound:
            return self._unknown_cluster(cluster_id)
        return 200, responses.cluster_detail_json(cluster, self.seed, self.settings.project_id)

    def list_jobs(self, cluster_id: str, params: Mapping[str, str], single: str | None) -> Result:
        gate = self._gate(cluster_id)
        if gate is not None:
            return gate
        try:
            page_no = _int_param(params, "page_no", 1, 1, _MAX_INT)
            page_size = _int_param(params, "page_size", self.default_page_size, 10, 100)
        except _ParamError as exc:
            return 400, exc.body
        if single is not None:
            try:
                job = self.world.job(cluster_id, single)
            except JobNotFound:
                return self._unknown_job(cluster_id, single)
            return 200, responses.jobs_body([job], 0, page_no, page_size, self.seed)
        job_type = params.get("jobType") or "NORMAL_JOB"
        if job_type not in JOB_TYPES or job_type in self.settings.refused_job_types:
            return 400, errors.cdm_error("Cdm.0014")
        try:
            page, total = self.world.job_page(
                cluster_id, job_type, params.get("filter", ""), (page_no - 1) * page_size, page_size
            )
        except ClusterNotFound:  # removed in between
            return self._unknown_cluster(cluster_id)
        return 200, responses.jobs_body(page, total, page_no, page_size, self.seed)

    def job_status(self, cluster_id: str, name: str) -> Result:
        gate = self._gate(cluster_id)
        if gate is not None:
            return gate
        job = self._job(cluster_id, name)
        if job is None:
            return self._unknown_job(cluster_id, name)
        return 200, responses.job_status_body(job, self.seed)

    def submissions(self, cluster_id: str, params: Mapping[str, str]) -> Result:
        gate = self._gate(cluster_id)
        if gate is not None:
            return gate
        name = params.get("jname")
        if not name:
            return 400, errors.cdm_error("Cdm.0014")
        try:
            page_no = _int_param(params, "page_no", 1, 1, _MAX_INT)
            page_size = _int_param(params, "page_size", 10, 1, 100)
        except _ParamError as exc:
            return 400, exc.body
        job = self._job(cluster_id, name)
        if job is None:
            return self._unknown_job(cluster_id, name)
        try:
            history = self.world.history(cluster_id, name)
        except (JobNotFound, ClusterNotFound):  # deleted in between
            return self._unknown_job(cluster_id, name)
        ordered = self._ordered(history, cluster_id, name)
        return 200, responses.submissions_body(job, ordered, page_no, page_size, self.seed)

    def _ordered(self, history: History, cluster_id: str, name: str) -> History:
        order = self.settings.history_order
        if order == "oldest-first":
            return replace(history, runs=history.runs[::-1])
        if order == "shuffled":
            key = (self.seed, "history-order", cluster_id, name)
            return replace(history, runs=sorted(history.runs, key=lambda r: rng.unit(*key, r.submission_id)))
        return history

    def _job(self, cluster_id: str, name: str) -> JobView | None:
        try:
            return self.world.job(cluster_id, name)
        except (JobNotFound, ClusterNotFound):
            return None

    def _gate(self, cluster_id: str) -> Result | None:
        try:
            cluster = self.world.cluster(cluster_id)
        except ClusterNotFound:
            return self._unknown_cluster(cluster_id)
        if cluster.status != "200":
            return 400, errors.cdm_error("Cdm.0021", cluster.name)
        return None

    def _unknown_cluster(self, cluster_id: str) -> Result:
        status = 404 if rng.chance(0.5, self.seed, "unknown-cluster", cluster_id) else 400
        return status, errors.cdm_error("Cdm.0001")

    def _unknown_job(self, cluster_id: str, name: str) -> Result:
        code = "Cdm.0054" if rng.chance(0.2, self.seed, "unknown-job", cluster_id, name) else "Cdm.0100"
        return 400, errors.cdm_error(code, name)
