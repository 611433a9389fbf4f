"""The mutable model of one project: clusters, their jobs, and the jobs' runs over time.

State that *changes by itself* (job runs) is computed on demand from ``runs`` as a pure
function of the seed and simulated time; the only stored state is what Python callers changed
(clusters and jobs added or removed, statuses set, runs started or forced).  So a fixed clock
gives fixed answers and two worlds with the same seed and clock agree exactly.

Time: ``settings.clock`` gives wall seconds.  Simulated time runs ``time_scale`` times faster
from ``t0`` (the clock when the world was made): ``sim = t0 + (wall - t0) * time_scale``.  All
times in views are wall seconds (``wall = t0 + (sim - t0) / time_scale``), so timestamps in API
responses agree with the real "now"; with time_scale > 1 runs simply look shorter.  Durations
passed to mutations (``duration``, ``period``) are simulated seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cdm_exporter.simulator import failures, generate, runs
from cdm_exporter.simulator.generate import JOB_TYPES, ClusterSpec, JobMeta, JobSpec
from cdm_exporter.simulator.runs import ManualRun, RunKey, RunOverride, RunState
from cdm_exporter.simulator.settings import SimulatorSettings

LIST_STATUS_NEW = "NEW"


class WorldError(Exception):
    """A mutation or lookup the world refuses; carries the CDM error it maps to."""

    err_code = "Cdm.0000"
    http_status = 400


class ClusterNotFound(WorldError):
    err_code = "Cdm.0001"
    http_status = 404


class JobNotFound(WorldError):
    err_code = "Cdm.0100"
    http_status = 404


class JobRunning(WorldError):
    err_code = "Cdm.0052"
    http_status = 409


class NoRunInProgress(WorldError):
    err_code = "Cdm.0053"
    http_status = 409


class AlreadyExists(WorldError):
    err_code = "Cdm.0014"
    http_status = 409


class InvalidValue(WorldError):
    err_code = "Cdm.0014"
    http_status = 400


@dataclass(frozen=True)
class ClusterView:
    id: str
    name: str
    index: int
    status: str
    created: float
    updated: float
    version: str
    flavor: str
    az: str
    public_ip: str
    private_ip: str
    job_count: int


@dataclass(frozen=True)
class RunView:
    """One run of a job as seen now (times in wall seconds)."""

    submission_id: int
    status: str
    progress: float
    finished: bool
    start: float
    last_update: float
    end: float | None
    rows_read: int
    rows_written: int
    rows_skipped: int
    bytes_read: int
    bytes_written: int
    total_size: int
    files_read: int
    files_written: int
    files_skipped: int
    total_files: int
    write_rows: int
    update_rows: int
    delete_rows: int
    external_id: str
    error_summary: str | None
    error_details: str | None
    manual: bool


@dataclass(frozen=True)
class JobView:
    cluster_id: str
    name: str
    serial: int
    job_type: str
    scheduled: bool
    created: float
    updated: float
    meta: JobMeta
    latest: RunView | None
    never_status_empty: bool
    key: str

    @property
    def list_status(self) -> str:
        """The status ShowJobs reports: NEW for a job that never ran, FAILED for any failure."""
        if self.latest is None:
            return LIST_STATUS_NEW
        if self.latest.status == runs.FAILURE_ON_SUBMIT:
            return runs.FAILED
        return self.latest.status


@dataclass(frozen=True)
class History:
    """Run history of a job: ``runs`` newest first; ``total`` kept records; ``started`` all runs."""

    runs: list[RunView]
    total: int
    started: int


@dataclass
class _Job:
    spec: JobSpec
    manual: list[ManualRun] = field(default_factory=list)
    overrides: dict[RunKey, RunOverride] = field(default_factory=dict)
    pending_outcome: str | None = None
    pending_slot: int | None = None


@dataclass
class _Cluster:
    spec: ClusterSpec
    status: str
    updated: float
    jobs: dict[str, _Job]
    next_serial: int


class World:
    """Clusters and jobs of the simulated project. All methods are thread-safe."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self._settings = settings
        self._clock = settings.clock
        self._scale = settings.time_scale
        self.t0 = settings.clock()
        self._lock = threading.RLock()
        self._clusters: dict[str, _Cluster] = {}
        self._next_cluster_index = 0
        for _ in range(settings.clusters):
            self._create_cluster(None, None, settings.jobs)

    # --- time -------------------------------------------------------------------------------

    def now(self) -> float:
        """Wall seconds from the settings' clock."""
        return self._clock()

    def sim_time(self, wall: float | None = None) -> float:
        w = self._clock() if wall is None else wall
        return self.t0 + (w - self.t0) * self._scale

    def _wall(self, sim: float) -> float:
        return self.t0 + (sim - self.t0) / self._scale

    # --- reading ----------------------------------------------------------------------------

    def clusters(self) -> list[ClusterView]:
        with self._lock:
            return [self._cluster_view(c) for c in self._clusters.values()]

    def cluster(self, cluster_id: str) -> ClusterView:
        with self._lock:
            return self._cluster_view(self._get_cluster(cluster_id))

    def jobs(self, cluster_id: str, job_type: str | None = None) -> list[JobView]:
        """Jobs of a cluster in creation order, optionally of one type."""
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            t = self.sim_time()
            return [
                self._job_view(cluster, job, t)
                for job in cluster.jobs.values()
                if job_type is None or job.spec.job_type == job_type
            ]

    def job_page(
        self, cluster_id: str, job_type: str | None, text: str, offset: int, limit: int
    ) -> tuple[list[JobView], int]:
        """One page of the jobs of a type whose name contains ``text`` (case-insensitive), and
        how many match in all.  Only the page's jobs are evaluated, so huge clusters stay cheap."""
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            needle = text.lower()
            matching = [
                job
                for job in cluster.jobs.values()
                if (job_type is None or job.spec.job_type == job_type) and needle in job.spec.name.lower()
            ]
            t = self.sim_time()
            return [self._job_view(cluster, job, t) for job in matching[offset : offset + limit]], len(
                matching
            )

    def job(self, cluster_id: str, name: str) -> JobView:
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            return self._job_view(cluster, self._get_job(cluster, name), self.sim_time())

    def history(self, cluster_id: str, name: str, limit: int | None = None) -> History:
        """The kept run history (``settings.history_size`` runs at most, or ``limit``: every run a
        test needs to count), newest first."""
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            job = self._get_job(cluster, name)
            t = self.sim_time()
            limit = self._settings.history_size if limit is None else limit
            found, started = runs.timeline(job.spec.profile, job.manual, job.overrides, t, limit)
            views = [
                self._run_view(cluster, job, run, job.spec.sid_base + started - 1 - i, t)
                for i, run in enumerate(found)
            ]
            return History(views, min(started, limit), started)

    def status_counts(self) -> dict[str, int]:
        """How many jobs (over all clusters) have each list status right now."""
        counts: dict[str, int] = {}
        for c in self.clusters():
            for j in self.jobs(c.id):
                counts[j.list_status] = counts.get(j.list_status, 0) + 1
        return counts

    # --- mutations --------------------------------------------------------------------------

    def add_cluster(
        self, name: str | None = None, status: str | None = None, jobs: int | None = None
    ) -> ClusterView:
        """Add a generated cluster (``jobs`` generated jobs, default ``settings.jobs``)."""
        if status is not None and not status:
            raise InvalidValue("status must not be empty")
        with self._lock:
            cluster = self._create_cluster(name, status, self._settings.jobs if jobs is None else jobs)
            return self._cluster_view(cluster)

    def remove_cluster(self, cluster_id: str) -> None:
        with self._lock:
            self._get_cluster(cluster_id)
            del self._clusters[cluster_id]

    def set_cluster_status(self, cluster_id: str, status: str) -> None:
        """Set the status code string (any value, so unknown codes can be tested)."""
        if not status:
            raise InvalidValue("status must not be empty")
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            cluster.status = status
            cluster.updated = self.now()

    def add_job(
        self,
        cluster_id: str,
        name: str,
        job_type: str = "NORMAL_JOB",
        *,
        scheduled: bool = False,
        period: float | None = None,
        duration: float | None = None,
        fail_probability: float | None = None,
    ) -> JobView:
        """Add a job with no history. A scheduled one runs every ``period`` simulated seconds
        (default 300); an unscheduled one stays NEW until :meth:`start_run`."""
        if not name:
            raise InvalidValue("job name must not be empty")
        if job_type not in JOB_TYPES:
            raise InvalidValue(f"job_type must be one of {', '.join(JOB_TYPES)}, got {job_type!r}")
        if period is not None and period <= 0:
            raise InvalidValue("period must be > 0")
        if duration is not None and duration <= 0:
            raise InvalidValue("duration must be > 0")
        if fail_probability is not None and not 0 <= fail_probability <= 0.98:
            raise InvalidValue("fail_probability must be within [0, 0.98]")
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            if name in cluster.jobs:
                raise AlreadyExists(f"Job[{name}] already exists.")
            spec = generate.make_added_job(
                self._settings.seed,
                cluster.spec.index,
                cluster.next_serial,
                name,
                job_type=job_type,
                now=self.sim_time(),
                scheduled=scheduled,
                period=period,
                duration=duration,
                fail_probability=fail_probability,
            )
            cluster.next_serial += 1
            job = _Job(spec)
            cluster.jobs[name] = job
            return self._job_view(cluster, job, self.sim_time())

    def delete_job(self, cluster_id: str, name: str) -> None:
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            self._get_job(cluster, name)
            del cluster.jobs[name]

    def start_run(
        self, cluster_id: str, name: str, *, outcome: str | None = None, duration: float | None = None
    ) -> RunView:
        """Start a run now, like StartJob. ``outcome`` forces how it ends (default: drawn, or
        what :meth:`set_run_outcome` with ``which="next"`` asked for); ``duration`` is in
        simulated seconds.  Refused with :class:`JobRunning` while a run is in progress."""
        _check_outcome(outcome)
        if duration is not None and duration <= 0:
            raise InvalidValue("duration must be > 0")
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            job = self._get_job(cluster, name)
            t = self.sim_time()
            if self._current(job, t) is not None:
                raise JobRunning(f"Job {name} is running.")
            if job.pending_outcome is not None:
                slot = job.pending_slot
                profile = job.spec.profile
                slot_started = slot is not None and runs.slot_run(profile, slot, job.overrides).start <= t
                if not slot_started:
                    outcome = outcome or job.pending_outcome
                    if slot is not None:
                        job.overrides.pop(("s", slot), None)
                job.pending_outcome = None
                job.pending_slot = None
            job.manual.append(ManualRun(start=t, duration=duration, outcome=outcome))
            found, started = runs.timeline(job.spec.profile, job.manual, job.overrides, t, 1)
            return self._run_view(cluster, job, found[0], job.spec.sid_base + started - 1, t)

    def set_run_outcome(
        self,
        cluster_id: str,
        name: str,
        outcome: str,
        *,
        which: Literal["current", "next"] = "current",
        end_now: bool = False,
    ) -> None:
        """Force how the current run (or the next one to start) ends: ``SUCCEEDED``, ``FAILED``,
        ``FAILURE_ON_SUBMIT`` or ``STOPPED``. With ``end_now`` the current run ends immediately."""
        _check_outcome(outcome)
        with self._lock:
            cluster = self._get_cluster(cluster_id)
            job = self._get_job(cluster, name)
            t = self.sim_time()
            if which == "current":
                run = self._current(job, t)
                if run is None:
                    raise NoRunInProgress(f"Job {name} is not running.")
                end = t if end_now else run.end
                job.overrides[run.key] = RunOverride(outcome=outcome, end=max(end, run.start))
                return
            if which != "next":
                raise InvalidValue(f"which must be 'current' or 'next', got {which!r}")
            slot = runs.next_slot_after(job.spec.profile, t, job.overrides)
            job.pending_outcome = outcome
            job.pending_slot = slot
            if slot is not None:
                previous = job.overrides.get(("s", slot))
                job.overrides[("s", slot)] = RunOverride(
                    outcome=outcome, end=previous.end if previous else None
                )

    def finish_run(self, cluster_id: str, name: str, outcome: str = runs.SUCCEEDED) -> None:
        """End the current run now with ``outcome``."""
        self.set_run_outcome(cluster_id, name, outcome, which="current", end_now=True)

    # --- internals --------------------------------------------------------------------------

    def _create_cluster(self, name: str | None, status: str | None, n_jobs: int) -> _Cluster:
        index = self._next_cluster_index
        self._next_cluster_index += 1
        seed = self._settings.seed
        sim_now = self.sim_time()
        spec = generate.make_cluster(
            seed, index, self._wall(sim_now), self._settings.region, name=name, status=status
        )
        odd: Sequence[str] = generate.ODD_JOB_NAMES if self._settings.odd_job_names and index == 0 else ()
        jobs: dict[str, _Job] = {}
        for i in range(n_jobs):
            odd_name = odd[i - 3] if 3 <= i < 3 + len(odd) else None
            job_spec = generate.make_job(seed, index, i, sim_now, name=odd_name)
            jobs[job_spec.name] = _Job(job_spec)
        cluster = _Cluster(spec, spec.status, spec.created, jobs, n_jobs + 1)
        self._clusters[spec.id] = cluster
        return cluster

    def _get_cluster(self, cluster_id: str) -> _Cluster:
        try:
            return self._clusters[cluster_id]
        except KeyError:
            raise ClusterNotFound(f"Cluster[{cluster_id}] doesn't exist.") from None

    @staticmethod
    def _get_job(cluster: _Cluster, name: str) -> _Job:
        try:
            return cluster.jobs[name]
        except KeyError:
            raise JobNotFound(f"Job[{name}] doesn't exist.") from None

    @staticmethod
    def _current(job: _Job, t: float) -> runs.Run | None:
        found, _ = runs.timeline(job.spec.profile, job.manual, job.overrides, t, 1)
        if found and found[0].end > t:
            return found[0]
        return None

    def _cluster_view(self, c: _Cluster) -> ClusterView:
        s = c.spec
        return ClusterView(
            id=s.id,
            name=s.name,
            index=s.index,
            status=c.status,
            created=s.created,
            updated=c.updated,
            version=s.version,
            flavor=s.flavor,
            az=s.az,
            public_ip=s.public_ip,
            private_ip=s.private_ip,
            job_count=len(c.jobs),
        )

    def _job_view(self, cluster: _Cluster, job: _Job, t: float) -> JobView:
        found, started = runs.timeline(job.spec.profile, job.manual, job.overrides, t, 1)
        latest = self._run_view(cluster, job, found[0], job.spec.sid_base + started - 1, t) if found else None
        spec = job.spec
        return JobView(
            cluster_id=cluster.spec.id,
            name=spec.name,
            serial=spec.serial,
            job_type=spec.job_type,
            scheduled=spec.scheduled,
            created=self._wall(spec.created),
            updated=self._wall(spec.updated),
            meta=spec.meta,
            latest=latest,
            never_status_empty=spec.never_status_empty,
            key=spec.profile.key,
        )

    def _run_view(self, cluster: _Cluster, job: _Job, run: runs.Run, sid: int, t: float) -> RunView:
        state: RunState = runs.observe(run, sid, t)
        failed = state.status in (runs.FAILED, runs.FAILURE_ON_SUBMIT)
        return RunView(
            submission_id=sid,
            status=state.status,
            progress=state.progress,
            finished=state.finished,
            start=self._wall(run.start),
            last_update=self._wall(state.last_update),
            end=self._wall(run.end) if state.finished else None,
            rows_read=state.rows_read,
            rows_written=state.rows_written,
            rows_skipped=state.rows_skipped,
            bytes_read=state.bytes_read,
            bytes_written=state.bytes_written,
            total_size=run.total_bytes,
            files_read=state.files_read,
            files_written=state.files_written,
            files_skipped=state.files_skipped,
            total_files=run.total_files,
            write_rows=state.write_rows,
            update_rows=state.update_rows,
            delete_rows=state.delete_rows,
            external_id=""
            if run.outcome == runs.FAILURE_ON_SUBMIT
            else f"job_{int(cluster.spec.created * 1000)}_{sid:04d}",
            error_summary=failures.error_summary(run.error_index) if failed else None,
            error_details=failures.error_details(run.error_index) if failed else None,
            manual=run.key[0] == "m",
        )


def _check_outcome(outcome: str | None) -> None:
    if outcome is not None and outcome not in runs.OUTCOMES:
        raise InvalidValue(f"outcome must be one of {', '.join(runs.OUTCOMES)}, got {outcome!r}")
