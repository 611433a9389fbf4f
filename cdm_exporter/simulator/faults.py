"""Injected failures: what can go wrong between a client and CDM, on demand.

A :class:`Fault` targets one endpoint (``iam_token``, ``iam_projects``, ``list_clusters``, ``cluster_detail``,
``list_jobs``, ``job_status``, ``submissions``, or ``*`` for all), optionally only one cluster
id and/or job name, and replaces the normal response with one of these kinds:

========== ==========================================================================
status     HTTP ``status`` with ``body`` (default: the error body a real failure with
           that status would carry, e.g. 400 ``Cdm.0001``, 401 ``APIGW.0301``, 429
           ``APIGW.0308``, 500 ``Cdm.0000``, 503 ``APIGW.0203``; ``error_code`` picks one)
delay      the normal response after ``delay`` seconds
hang       no response until the simulator stops
malformed  truncated JSON with a JSON content type
html       an HTML error page (``status`` default 200)
wrong_shape valid JSON of the wrong shape for the endpoint
huge       a valid JSON body of ``size`` bytes (default 20 MB)
trickle    the normal response, ``size`` bytes (default 1) every ``interval`` seconds
reset      headers and part of the body (``size`` bytes, default half), then a TCP RST
close      the connection closed without any response
========== ==========================================================================

``job_name`` matches ShowJobStatus, a single-job ShowJobs (``cdm/job/{name}``) and
ShowSubmissions (``jname``); never a job listing.  ``project_id`` limits a fault to the CDM
requests of one project (a region's, to make that region fail).  Any kind may also wait ``delay`` seconds
first.  ``count`` applies the fault N times, then it is removed.  The command-line grammar is
documented in :data:`SPEC_HELP`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args
from urllib.parse import unquote

FaultKind = Literal[
    "status", "delay", "hang", "malformed", "html", "wrong_shape", "huge", "trickle", "reset", "close"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ENDPOINTS = (
    "iam_token",
    "iam_projects",
    "list_clusters",
    "cluster_detail",
    "list_jobs",
    "job_status",
    "submissions",
)
ANY_ENDPOINT = "*"
DEFAULT_HUGE_SIZE = 20 * 1024 * 1024

SPEC_HELP = """\
Fault spec: TARGET:ACTION[,KEY=VALUE...]

  TARGET  ENDPOINT[@CLUSTER_ID][/JOB_NAME]
          ENDPOINT: iam_token, iam_projects, list_clusters, cluster_detail, list_jobs,
          job_status, submissions, or * for all. JOB_NAME is percent-decoded (write / as %2F,
          : as %3A, , as %2C, % as %25).
  ACTION  an HTTP status (e.g. 500), or a kind with an optional value:
          delay=SECONDS, hang, malformed, html, wrong_shape, huge[=BYTES],
          trickle[=SECONDS between chunks], reset[=BYTES sent first], close
  KEYS    count=N (apply N times, then clear), delay=SECONDS (wait first),
          project=PROJECT_ID (only that project's CDM requests),
          status=CODE, code=ERRCODE (e.g. Cdm.0100), size=BYTES, interval=SECONDS,
          body=TEXT (percent-decoded), content_type=TYPE

Examples: job_status:500   list_jobs:hang   'job_status@<cluster_id>:malformed'
          'job_status@<cluster_id>/my%20job:400,code=Cdm.0100,count=3'
          list_clusters:delay=2.5   '*:503,count=1'   submissions:huge=30000000"""


class FaultSpecError(ValueError):
    """A fault spec or fault field that makes no sense; the message says which part."""


@dataclass(frozen=True)
class Fault:
    """One injected failure (see the module docstring for the kinds)."""

    endpoint: str
    status: int | None = None
    kind: FaultKind | None = None
    cluster_id: str | None = None
    job_name: str | None = None
    error_code: str | None = None
    body: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    count: int | None = None
    size: int | None = None
    interval: float = 0.25
    project_id: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint != ANY_ENDPOINT and self.endpoint not in ENDPOINTS:
            raise FaultSpecError(
                f"unknown endpoint {self.endpoint!r}; use one of {', '.join(ENDPOINTS)} or *"
            )
        kind = self.kind
        if kind is None:
            if self.status is not None:
                kind = "status"
            elif self.delay > 0:
                kind = "delay"
            else:
                raise FaultSpecError("a fault needs a status, a kind, or a delay")
        if kind not in FAULT_KINDS:
            raise FaultSpecError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        object.__setattr__(self, "kind", kind)
        if kind == "status" and self.status is None:
            raise FaultSpecError("a status fault needs a status")
        if self.status is not None and not 100 <= self.status <= 599:
            raise FaultSpecError(f"status must be within 100..599, got {self.status}")
        if self.delay < 0:
            raise FaultSpecError(f"delay must be >= 0, got {self.delay}")
        if self.count is not None and self.count < 1:
            raise FaultSpecError(f"count must be >= 1, got {self.count}")
        if self.size is not None and self.size < 0:
            raise FaultSpecError(f"size must be >= 0, got {self.size}")
        if not self.interval > 0:
            raise FaultSpecError(f"interval must be > 0, got {self.interval}")

    @property
    def effective_kind(self) -> FaultKind:
        assert self.kind is not None  # resolved in __post_init__
        return self.kind

    def matches(
        self, endpoint: str, cluster_id: str | None, job_name: str | None, project_id: str | None = None
    ) -> bool:
        return (
            (self.endpoint in (ANY_ENDPOINT, endpoint))
            and (self.cluster_id is None or self.cluster_id == cluster_id)
            and (self.job_name is None or self.job_name == job_name)
            and (self.project_id is None or self.project_id == project_id)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build from JSON-like data (the admin API); unknown keys are an error."""
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise FaultSpecError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        if "endpoint" not in data:
            raise FaultSpecError("a fault needs an endpoint")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise FaultSpecError(str(exc)) from None

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Parse the command-line form (see :data:`SPEC_HELP`)."""
        target, sep, action_part = spec.partition(":")
        if not sep or not action_part:
            raise FaultSpecError(f"fault spec {spec!r} needs TARGET:ACTION, e.g. job_status:500")
        left, slash, job = target.partition("/")
        endpoint, at, cluster = left.partition("@")
        if at and not cluster:
            raise FaultSpecError(f"fault spec {spec!r}: empty cluster id after @")
        if slash and not job:
            raise FaultSpecError(f"fault spec {spec!r}: empty job name after /")
        action, *options = action_part.split(",")
        values: dict[str, Any] = {
            "endpoint": endpoint,
            "cluster_id": cluster or None,
            "job_name": unquote(job, errors="strict") if slash else None,
        }
        kind_name, eq, kind_value = action.partition("=")
        if kind_name.isdigit():
            if eq:
                raise FaultSpecError(f"fault spec {spec!r}: a status takes no value")
            values["status"] = int(kind_name)
        elif kind_name in FAULT_KINDS and kind_name != "status":
            values["kind"] = kind_name
            if eq:
                main = {
                    "delay": "delay",
                    "huge": "size",
                    "reset": "size",
                    "trickle": "interval",
                    "html": "status",
                }
                if kind_name not in main:
                    raise FaultSpecError(f"fault spec {spec!r}: {kind_name} takes no value")
                values[main[kind_name]] = _number(main[kind_name], kind_value, spec)
        else:
            raise FaultSpecError(
                f"fault spec {spec!r}: unknown action {action!r}; use an HTTP status or one of "
                + ", ".join(k for k in FAULT_KINDS if k != "status")
            )
        keys = {"count", "delay", "status", "code", "size", "interval", "body", "content_type", "project"}
        for option in options:
            key, eq, value = option.partition("=")
            if not eq or key not in keys:
                raise FaultSpecError(
                    f"fault spec {spec!r}: bad option {option!r}; "
                    f"use KEY=VALUE with KEY in {', '.join(sorted(keys))}"
                )
            if key == "code":
                values["error_code"] = unquote(value)
            elif key == "project":
                values["project_id"] = value
            elif key in ("body", "content_type"):
                values[key] = unquote(value)
            else:
                values[key] = _number(key, value, spec)
        return cls.from_dict(values)


def _number(key: str, value: str, spec: str) -> int | float:
    try:
        if key in ("delay", "interval"):
            return float(value)
        return int(value)
    except ValueError:
        raise FaultSpecError(f"fault spec {spec!r}: {key} must be a number, got {value!r}") from None


@dataclass(frozen=True)
class ActiveFault:
    id: int
    fault: Fault
    remaining: int | None


class FaultSet:
    """The faults in force, first match wins. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._faults: dict[int, tuple[Fault, int | None]] = {}

    def add(self, fault: Fault) -> int:
        with self._lock:
            fault_id = next(self._ids)
            self._faults[fault_id] = (fault, fault.count)
            return fault_id

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[ActiveFault]:
        with self._lock:
            return [ActiveFault(i, f, n) for i, (f, n) in self._faults.items()]

    def take(
        self, endpoint: str, cluster_id: str | None, job_name: str | None, project_id: str | None = None
    ) -> Fault | None:
        """The first fault matching the request, counting one use of it."""
        with self._lock:
            for fault_id, (fault, remaining) in self._faults.items():
                if not fault.matches(endpoint, cluster_id, job_name, project_id):
                    continue
                if remaining is not None:
                    if remaining <= 1:
                        del self._faults[fault_id]
                    else:
                        self._faults[fault_id] = (fault, remaining - 1)
                return fault
            return None
