"""Account-wide discovery: every project a credential may use, polled as if each were configured.

A ``projects`` target (``projects: all``, or a list of regions and project-name globs) lists the
projects of its credential through IAM (KeystoneListAuthProjects) when the list is older than
``collection.discovery_interval`` or the last listing failed. It keeps the enabled projects whose
name names a region (``cn-north-4``, or ``cn-north-4_suffix`` for a sub-project) and that the
selection picks, and polls CDM in each one with its own :class:`TargetPoller`, client and
credential: a project-scoped IAM token per project (password), the project's ``X-Project-Id`` on
every signed request (AK/SK), or the configured token as it is. Each project's CDM endpoint is
the one of its region (``TargetConfig.endpoint_for``). A project that appears is polled from that
listing on; one that vanishes (deleted, disabled, no longer selected) is dropped with its series.

Produces one :class:`TargetView` per project (with its IAM name) and a :class:`DiscoveryView`.

Regions without CDM, and projects the credential may not use: a project whose very first cluster
list fails because its endpoint does not resolve or answers 404 (``not_offered``), or because the
credential is refused there (401/403, ``Cdm.0032``; ``forbidden``), is set aside. That is logged
once; the project reads ``cdm_up 0`` with its reason, and one cluster-list call tries it again every
``collection.unavailable_recheck_interval``. A project that answered once and fails later is an
ordinary failure (it may be an outage worth an alert). Projects are refreshed in parallel, each in
its own single flight, so a slow or failing one never holds up the others.

With a state store, the discovery results (the last listing and the projects it selected, each
with its region and whether it is set aside) are one ``discovery`` record per target, and each
project's poller stores its state like a configured target's (under ``<target>/<project>``): a
restarted process polls the projects it knew without listing them again first, and a follower
replica serves the projects the leader found.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial

from cdm_exporter.api.errors import AuthError, CdmError, NameNotResolved, NotFound, RateLimited
from cdm_exporter.api.models import AuthProject, Cluster, JobPage, Submission, SubmissionPage
from cdm_exporter.api.paging import JOB_PAGE_SIZE
from cdm_exporter.api.transport import Observer
from cdm_exporter.config import CollectionConfig, ConfigError, TargetConfig
from cdm_exporter.config.model import project_region
from cdm_exporter.polling.budget import Budgets, budget_identity
from cdm_exporter.polling.client_factory import ClientFactory, ListerFactory
from cdm_exporter.polling.failure_log import FailureLog
from cdm_exporter.polling.persistence import RecordItem, RecordKey
from cdm_exporter.polling.poller import MIN_REQUEST_SECONDS, ApiClient, Paced, TargetPoller, pace_each
from cdm_exporter.polling.records import MONOTONIC, Clocks, Record, RecordError, from_record, to_record
from cdm_exporter.polling.state import DiscoveryView, TargetView
from cdm_exporter.singleflight import FlightTimeout, SingleFlight

log = logging.getLogger(__name__)

#: the CDM endpoint of the project's region does not resolve or has no CDM API (404)
NOT_OFFERED = "not_offered"
#: the credential is refused in the project (401/403, Cdm.0032)
FORBIDDEN = "forbidden"
#: every reason, each with a cdm_project_unavailable series per discovered project
UNAVAILABLE_REASONS: tuple[str, ...] = (NOT_OFFERED, FORBIDDEN)
#: projects refreshed at the same time (threads are started only as needed)
MAX_PARALLEL_PROJECTS = 64
#: the kind of a state store's record of a ``projects`` target's discovery results
DISCOVERY_KIND = "discovery"
#: the kinds of record a project's poller stores (``TargetPoller.records``)
_POLLER_KINDS = frozenset({"target", "cluster", "job"})


def unavailable_reason(error: CdmError) -> str | None:
    """Why a project that never answered is set aside, or ``None`` for an ordinary failure."""
    if error.endpoint == "iam_token":
        # the project-scoped token was refused; any other IAM failure says nothing of the project
        return FORBIDDEN if isinstance(error, AuthError) else None
    if isinstance(error, NameNotResolved) or (
        isinstance(error, NotFound) and error.endpoint == "list_clusters"
    ):
        return NOT_OFFERED
    if isinstance(error, AuthError):
        return FORBIDDEN
    return None


class _Watched:
    """A project's client, remembering how its cluster-list calls end (first contact or not)."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self.answered = False  # a cluster list worked at least once
        self.last_error: CdmError | None = None  # of the latest cluster list, None after a success

    def list_clusters(self, *, timeout: float | None = None) -> list[Cluster]:
        try:
            clusters = self._client.list_clusters(timeout=timeout)
        except CdmError as error:
            self.last_error = error
            raise
        self.answered, self.last_error = True, None
        return clusters

    def list_jobs_page(
        self,
        cluster_id: str,
        job_type: str,
        page_no: int,
        page_size: int = JOB_PAGE_SIZE,
        *,
        timeout: float | None = None,
    ) -> JobPage:
        return self._client.list_jobs_page(cluster_id, job_type, page_no, page_size, timeout=timeout)

    def job_status(self, cluster_id: str, job_name: str, *, timeout: float | None = None) -> list[Submission]:
        return self._client.job_status(cluster_id, job_name, timeout=timeout)

    def submissions_page(
        self, cluster_id: str, job_name: str, page_no: int = 1, *, timeout: float | None = None
    ) -> SubmissionPage:
        return self._client.submissions_page(cluster_id, job_name, page_no, timeout=timeout)

    def close(self) -> None:
        self._client.close()


@dataclasses.dataclass(frozen=True, slots=True)
class StoredProject:
    """A discovered project as a state store keeps it."""

    info: AuthProject
    region: str
    answered: bool = False  # a cluster list worked at least once (a later failure is no set-aside)
    unavailable: str | None = None
    recheck_at: float = dataclasses.field(default=0.0, metadata=MONOTONIC)


@dataclasses.dataclass(frozen=True, slots=True)
class DiscoveryState:
    """The discovery results of a ``projects`` target as a state store keeps them."""

    listed_at: float | None = dataclasses.field(default=None, metadata=MONOTONIC)
    refused_at: float | None = dataclasses.field(default=None, metadata=MONOTONIC)
    listing_ok: bool | None = None
    error: str | None = None
    listed: int = 0
    projects: tuple[StoredProject, ...] = ()


@dataclasses.dataclass
class _Project:
    """One discovered project being polled."""

    info: AuthProject
    region: str
    identity: str  # whose budget it spends (budget_identity)
    client: _Watched
    poller: TargetPoller
    flight: SingleFlight[None]
    unavailable: str | None = None
    recheck_at: float = 0.0
    dropped: bool = False  # no longer listed: its poller is closed


class ProjectDiscovery:
    """A ``projects`` target: its credential's projects, found through IAM and polled each."""

    def __init__(
        self,
        target: TargetConfig,
        collection: CollectionConfig,
        *,
        client_factory: ClientFactory,
        lister_factory: ListerFactory,
        budgets: Budgets,
        observer: Observer,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        one_shot: bool = False,
        read_history: bool | None = None,
        paced: bool = False,
    ) -> None:
        """``one_shot``: for ``check`` (see ``TargetPoller``); failures are then logged at debug
        level, since the report shows them. ``paced``: each project's poller is paced between
        scrapes (:meth:`pace`)."""
        if target.projects is None:
            raise ValueError(f"target {target.name!r} has no projects selection")
        self.target = target
        self.collection = collection
        self._selection = target.projects
        self._client_factory = client_factory
        self._budgets = budgets
        self._observer = observer
        self._wall = wall
        self._mono = mono
        self._clocks = Clocks(wall, mono)
        self._one_shot = one_shot
        self._read_history = read_history
        self._paced = paced
        self._lister = lister_factory(target, collection, observer)
        self._lock = threading.Lock()
        self._projects: dict[str, _Project] = {}
        self._listed_at: float | None = None  # monotonic time of the last listing that worked
        self._refused_at: float | None = None  # ... of the last listing IAM refused the credential for
        self._listing_ok: bool | None = None
        self._error: str | None = None
        self._listed = 0
        self._unusable: set[str] = set()  # ids of projects that cannot be polled, logged once
        self._closed = False  # replaced by a reload or stopped: start nothing more
        self._pool = ThreadPoolExecutor(
            max_workers=MAX_PARALLEL_PROJECTS, thread_name_prefix=f"cdm-{target.name[:10]}-projects"
        )
        self.failures = FailureLog(log, target.name)

    # --- public ------------------------------------------------------------------------------

    def refresh(self, deadline: float) -> None:
        """List the projects when due, then refresh every project in parallel until ``deadline``."""
        if self._closed:
            return
        self._discover_if_due(deadline)
        with self._lock:
            projects = list(self._projects.values())
        now = self._mono()
        futures: list[Future[None]] = []
        for project in projects:
            if project.unavailable is None or now >= project.recheck_at:
                try:
                    futures.append(self._pool.submit(self._refresh_project, project, deadline))
                except RuntimeError:  # shut down by close() meanwhile (a reload replaced this target)
                    return
        if futures:
            wait(futures, timeout=max(0.0, deadline - self._mono()))

    def pace(self) -> Paced:
        """Between scrapes: each polled project's :meth:`TargetPoller.pace`."""
        with self._lock:
            pollers = [p.poller for p in self._projects.values() if p.unavailable is None and not p.dropped]
        return pace_each(poller.pace for poller in pollers)

    def views(self) -> tuple[TargetView, ...]:
        """One view per project, by project name."""
        with self._lock:
            projects = sorted(self._projects.values(), key=lambda p: (p.info.name, p.info.id))
        return tuple(
            dataclasses.replace(p.poller.view(), project_name=p.info.name, unavailable=p.unavailable)
            for p in projects
        )

    def discovery(self) -> DiscoveryView:
        with self._lock:
            return DiscoveryView(
                self.target.name, self._listing_ok, self._error, self._listed, len(self._projects)
            )

    @property
    def authenticated(self) -> bool | None:
        """True when the last listing or a project's last call authenticated."""
        with self._lock:
            listing = self._listing_ok
            pollers = [p.poller.authenticated for p in self._projects.values() if p.unavailable is None]
        if listing or any(pollers):
            return True
        if listing is None and all(state is None for state in pollers):
            return None
        return False

    def adopt(self, old: ProjectDiscovery) -> None:
        """Take over what ``old`` knows (same target, other collection settings: a reload): its
        last listing, and each project, whose new poller adopts the old one's state."""
        with old._lock:
            listing = (old._listed_at, old._refused_at, old._listing_ok, old._error, old._listed)
            projects = [p for p in old._projects.values() if not p.dropped]
            unusable = set(old._unusable)
        adopted: dict[str, _Project] = {}
        for project in projects:
            built = self._build(project.info, project.region)
            if built is None:
                continue
            built.poller.adopt(project.poller)
            built.client.answered, built.client.last_error = (
                project.client.answered,
                project.client.last_error,
            )
            built.unavailable, built.recheck_at = project.unavailable, project.recheck_at
            adopted[project.info.id] = built
        with self._lock:
            self._projects = adopted
            self._listed_at, self._refused_at, self._listing_ok, self._error, self._listed = listing
            self._unusable = unusable
        self.failures = old.failures

    # --- stored state (cdm_exporter.polling.persistence) ---------------------------------------

    def records(self) -> list[RecordItem]:
        """What a state store keeps of this target: the discovery results, and each project's
        poller's records."""
        with self._lock:
            projects = sorted(self._projects.values(), key=lambda p: p.info.id)
            state = DiscoveryState(
                self._listed_at,
                self._refused_at,
                self._listing_ok,
                self._error,
                self._listed,
                tuple(
                    StoredProject(p.info, p.region, p.client.answered, p.unavailable, p.recheck_at)
                    for p in projects
                ),
            )
        key = (DISCOVERY_KIND, self.target.name)
        items: list[RecordItem] = [(key, state, partial(to_record, state, self._clocks))]
        for project in projects:
            items += project.poller.records()
        return items

    def restore(self, records: Mapping[RecordKey, Record | None], *, complete: bool) -> int:
        """Take over stored records of this target: the discovery results (the projects they
        name get their pollers, those they no longer name are dropped), then each project's
        poller's records. Returns how many records could not be read."""
        unreadable = 0
        stored: DiscoveryState | None = None
        if (record := records.get((DISCOVERY_KIND, self.target.name))) is not None:
            try:
                stored = from_record(DiscoveryState, record, self._clocks)
            except RecordError:
                unreadable += 1
        if stored is not None:
            self._restore_projects(stored)
        with self._lock:
            pollers = {p.poller.target.name: p.poller for p in self._projects.values()}
        mine: dict[str, dict[RecordKey, Record | None]] = {}
        for key, held in records.items():
            if key[0] in _POLLER_KINDS and len(key) >= 2 and key[1] in pollers:
                mine.setdefault(key[1], {})[key] = held
        for name, poller in pollers.items():
            if name in mine or complete:
                unreadable += poller.restore(mine.get(name, {}), complete=complete)
        return unreadable

    def _restore_projects(self, stored: DiscoveryState) -> None:
        with self._lock:
            known = dict(self._projects)
        current: dict[str, _Project] = {}
        for entry in stored.projects:
            project = known.get(entry.info.id)
            if project is not None and project.region == entry.region:
                project.info = entry.info
            else:
                project = self._build(entry.info, entry.region)
                if project is None:
                    continue
            project.client.answered = project.client.answered or entry.answered
            project.unavailable, project.recheck_at = entry.unavailable, entry.recheck_at
            current[entry.info.id] = project
        with self._lock:
            closed = self._closed
            if not closed:
                self._projects = current
                self._listed_at, self._refused_at = stored.listed_at, stored.refused_at
                self._listing_ok, self._error, self._listed = stored.listing_ok, stored.error, stored.listed
        for project_id, project in (current if closed else known).items():
            if closed and known.get(project_id) is not project:
                project.poller.close()  # built for a target closed meanwhile
            elif not closed and current.get(project_id) is not project:
                project.dropped = True
                project.poller.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._closed = True
            projects = list(self._projects.values())
            self._projects = {}
        for project in projects:
            project.poller.close()
        self._lister.close()

    # --- discovery ---------------------------------------------------------------------------

    def _discover_if_due(self, deadline: float) -> None:
        """List the projects when the last listing is older than ``discovery_interval``, or failed.

        A failed listing is retried at every collection, except when IAM refused the credential:
        like a refused cluster list, it is not sent again before ``discovery_interval`` (an access
        key is locked for 5 minutes after 5 failed signatures, and a retry cannot fix a wrong key).
        """
        now = self._mono()
        interval = self.collection.discovery_interval
        if self._listing_ok and self._listed_at is not None and now - self._listed_at < interval:
            return
        if self._refused_at is not None and now - self._refused_at < interval:
            return
        left = deadline - now
        if left < MIN_REQUEST_SECONDS:
            return
        try:
            listed = self._lister.list_auth_projects(timeout=min(self.collection.read_timeout, left))
        except CdmError as error:
            # known projects keep being polled
            self.failures.failed(
                "iam_projects", error, level=logging.DEBUG if self._one_shot else logging.WARNING
            )
            with self._lock:
                self._listing_ok, self._error = False, str(error)
                self._refused_at = now if isinstance(error, AuthError) else None
            return
        self.failures.recovered("iam_projects")
        wanted: dict[str, tuple[AuthProject, str]] = {}
        for project in listed:
            region = project_region(project.name)
            if region is not None and project.enabled and self._selection.selects(project.name, region):
                wanted[project.id] = (project, region)
        self._apply(wanted)
        with self._lock:
            self._listed_at, self._listing_ok, self._error, self._refused_at = now, True, None, None
            self._listed = len(listed)

    def _apply(self, wanted: dict[str, tuple[AuthProject, str]]) -> None:
        with self._lock:
            known = dict(self._projects)
        gone = [project for project_id, project in known.items() if project_id not in wanted]
        current: dict[str, _Project] = {}
        for project_id, (info, region) in wanted.items():
            kept = known.get(project_id)
            if kept is not None and kept.region == region:
                kept.info = info  # a renamed sub-project keeps its state
                current[project_id] = kept
                continue
            if kept is not None:
                gone.append(kept)
            built = self._build(info, region)
            if built is not None:
                current[project_id] = built
        with self._lock:
            closed = self._closed
            if not closed:
                self._projects = current
        if closed:  # close() ran meanwhile: the pollers built for this listing are not used
            for project_id, project in current.items():
                if known.get(project_id) is not project:
                    project.poller.close()
            return
        for project in gone:
            project.dropped = True
            log.info(
                "project no longer listed; its series are dropped",
                extra={
                    "target": self.target.name,
                    "project": project.info.name,
                    "project_id": project.info.id,
                },
            )
            project.poller.close()
        added = [p.info.name for i, p in current.items() if i not in known]
        if added:
            log.info("projects discovered", extra={"target": self.target.name, "projects": sorted(added)})

    def _build(self, info: AuthProject, region: str) -> _Project | None:
        """A poller for one project, with the configured target's settings for its project and region."""
        combined = f"{self.target.name}/{info.name}"
        try:
            config = dataclasses.replace(
                self.target,
                name=combined if len(combined) <= 128 else self.target.name,
                region=region,
                project_id=info.id,
                endpoint=self.target.endpoint_for(region),
                projects=None,
                region_endpoints=(),
            )
        except ConfigError as error:
            if info.id not in self._unusable:
                self._unusable.add(info.id)
                log.warning(
                    "project cannot be polled",
                    extra={"target": self.target.name, "project": info.name, "error": str(error)},
                )
            return None
        client, identity = self._client_factory(config, self.collection, self._observer)
        watched = _Watched(client)
        identity = budget_identity(identity, region, self.collection.budget_scope)
        poller = TargetPoller(
            config,
            self.collection,
            watched,
            self._budgets,
            identity,
            wall=self._wall,
            mono=self._mono,
            one_shot=self._one_shot,
            read_history=self._read_history,
            paced=self._paced,
        )
        return _Project(info, region, identity, watched, poller, SingleFlight())

    # --- projects ----------------------------------------------------------------------------

    def _refresh_project(self, project: _Project, deadline: float) -> None:
        try:
            project.flight.do(lambda: self._poll(project, deadline), deadline - self._mono())
        except FlightTimeout:
            pass  # an earlier collection's refresh of it outlives our deadline: serve what is known
        except Exception:  # a bug in one project must not end the others' collection
            if project.dropped:  # its poller was closed under it: nothing is lost
                log.debug("dropped project's last refresh ended", exc_info=True)
                return
            log.exception(
                "collection failed", extra={"target": self.target.name, "project": project.info.name}
            )

    def _poll(self, project: _Project, deadline: float) -> None:
        if project.unavailable is not None:
            self._recheck(project, deadline)
            if project.unavailable is not None:
                return
        project.poller.refresh(deadline)
        error = project.client.last_error
        if error is None or project.client.answered:
            return  # it works, or it worked before: an ordinary failure
        reason = unavailable_reason(error)
        if reason is not None:
            self._set_aside(project, reason, error)

    def _set_aside(self, project: _Project, reason: str, error: CdmError) -> None:
        project.unavailable = reason
        project.recheck_at = self._mono() + self.collection.unavailable_recheck_interval
        log.log(
            logging.DEBUG if self._one_shot else logging.WARNING,
            "project set aside: CDM is not offered in its region"
            if reason == NOT_OFFERED
            else "project set aside: the credential may not use CDM there",
            extra={
                "target": self.target.name,
                "project": project.info.name,
                "project_id": project.info.id,
                "region": project.region,
                "reason": reason,
                "error": str(error),
                "recheck_after_seconds": self.collection.unavailable_recheck_interval,
            },
        )

    def _recheck(self, project: _Project, deadline: float) -> None:
        """One cluster-list call to see whether a set-aside project can be polled now."""
        left = deadline - self._mono()
        bucket = self._budgets.bucket(project.identity, "common")
        if left < MIN_REQUEST_SECONDS or not bucket.try_acquire():
            return  # still due: tried at the next collection
        try:
            project.client.list_clusters(timeout=min(self.collection.read_timeout, left))
        except CdmError as error:
            if isinstance(error, RateLimited) and error.endpoint == "list_clusters":
                bucket.throttled()
                return
            project.unavailable = unavailable_reason(error) or project.unavailable
            project.recheck_at = self._mono() + self.collection.unavailable_recheck_interval
            return
        log.info(
            "set-aside project answers now; polling it",
            extra={"target": self.target.name, "project": project.info.name, "region": project.region},
        )
        project.unavailable = None
