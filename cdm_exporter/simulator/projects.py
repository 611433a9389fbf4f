"""The simulated account's IAM projects and the regions the simulator serves.

Huawei Cloud names a region's default project by the region ID (``cn-north-4``) and a
sub-project ``<region>_<suffix>`` (``cn-north-4_analytics``); each project has its own CDM
clusters and jobs (docs/api-notes.md, "IAM projects").  The primary project is
``settings.project_id`` in ``settings.region`` with ``settings.world``'s clusters; every other
project gets a world of its own, generated from a seed derived from the project name, so that
cluster ids never collide between projects.

Each served region has its own CDM endpoint (its own port, see ``Simulator.region_url``).  A
region in ``settings.regions_without_cdm`` is served too, but its gateway has no CDM API: every
CDM path answers 404 ``APIGW.0101``.  The set of served regions is fixed when the simulator is
made; projects can be added, disabled and removed at run time in those regions.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from dataclasses import dataclass

from cdm_exporter.simulator import handlers, iam, rng
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.world import InvalidValue, World, WorldError

# IAM's rule for project names: letters, digits, "-" and "_", at most 64 characters.
_PROJECT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ProjectNotFound(WorldError):
    err_code = "Cdm.0001"
    http_status = 404


class ProjectConflict(WorldError):
    err_code = "Cdm.0014"
    http_status = 409


def region_of(name: str) -> str:
    """The region of a project name: all of it, or what comes before the first ``_``."""
    return name.split("_", 1)[0]


@dataclass(frozen=True)
class ProjectView:
    id: str
    name: str
    region: str
    enabled: bool
    parent_id: str
    cluster_count: int
    cdm: bool  # whether the project's region offers CDM


@dataclass
class Project:
    """One project: its IAM record, its world and the CDM API over that world."""

    id: str
    name: str
    region: str
    enabled: bool
    parent_id: str
    world: World
    cdm: handlers.CdmApi


class Projects:
    """The account's projects. Thread-safe."""

    def __init__(self, settings: SimulatorSettings, primary_world: World) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._without_cdm = frozenset(settings.regions_without_cdm)
        regions = [settings.region]
        for name in (*settings.extra_projects, *settings.regions_without_cdm):
            if region_of(name) not in regions:
                regions.append(region_of(name))
        self.regions: tuple[str, ...] = tuple(regions)
        self.primary = Project(
            settings.project_id,
            settings.region,
            settings.region,
            True,
            iam.domain_id(settings),
            primary_world,
            handlers.CdmApi(primary_world, settings),
        )
        self._projects: dict[str, Project] = {self.primary.id: self.primary}
        for name in settings.extra_projects:
            self.add(name)
        for region in settings.regions_without_cdm:  # every region has its default project
            if self.by_name(region) is None:
                self.add(region)

    def offers_cdm(self, region: str) -> bool:
        return region in self.regions and region not in self._without_cdm

    def add(
        self, name: str, *, clusters: int | None = None, jobs: int | None = None, enabled: bool = True
    ) -> ProjectView:
        """Add a project named ``name`` in a served region, with generated clusters and jobs."""
        if not _PROJECT_NAME.fullmatch(name):
            raise InvalidValue(f"project name {name!r}: use up to 64 letters, digits, '-' and '_'")
        region = region_of(name)
        if region not in self.regions:
            raise InvalidValue(
                f"region {region!r} is not served by this simulator (served: {', '.join(self.regions)})"
            )
        settings = self._settings
        derived = dataclasses.replace(
            settings,
            project_id=rng.hex_string(32, settings.seed, "project", name),
            region=region,
            seed=rng.randint(0, 2**31 - 1, settings.seed, "project-seed", name),
            clusters=settings.clusters if clusters is None else clusters,
            jobs=settings.jobs if jobs is None else jobs,
            odd_job_names=False,
            extra_projects=(),
            regions_without_cdm=(),
        )
        with self._lock:
            if any(p.name == name for p in self._projects.values()):
                raise ProjectConflict(f"project {name} already exists")
            parent = next((p for p in self._projects.values() if p.name == region), None)
            world = World(derived)
            project = Project(
                derived.project_id,
                name,
                region,
                enabled,
                parent.id if parent is not None and name != region else iam.domain_id(settings),
                world,
                handlers.CdmApi(world, derived),
            )
            self._projects[project.id] = project
            return self._view(project)

    def remove(self, project_id: str) -> None:
        with self._lock:
            project = self._get(project_id)
            if project is self.primary:
                raise InvalidValue("the primary project cannot be removed (disable it instead)")
            del self._projects[project_id]

    def set_enabled(self, project_id: str, enabled: bool) -> ProjectView:
        with self._lock:
            project = self._get(project_id)
            project.enabled = enabled
            return self._view(project)

    def get(self, project_id: str) -> Project | None:
        with self._lock:
            return self._projects.get(project_id)

    def by_name(self, name: str) -> Project | None:
        with self._lock:
            return next((p for p in self._projects.values() if p.name == name), None)

    def world(self, project_id: str) -> World:
        with self._lock:
            return self._get(project_id).world

    def views(self) -> list[ProjectView]:
        with self._lock:
            return [self._view(p) for p in self._projects.values()]

    def _get(self, project_id: str) -> Project:
        try:
            return self._projects[project_id]
        except KeyError:
            raise ProjectNotFound(f"Project[{project_id}] doesn't exist.") from None

    def _view(self, p: Project) -> ProjectView:
        return ProjectView(
            p.id, p.name, p.region, p.enabled, p.parent_id, len(p.world.clusters()), self.offers_cdm(p.region)
        )
