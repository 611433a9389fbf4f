"""The request pipeline of the simulated API gateway in front of CDM and IAM, for one region.

Each served region has its own port and its own ``SimulatorApp`` (IAM, being global, answers on
all of them).  For every request, in this order (as the real gateway would):

1. ``/_sim/...`` goes to the admin API and skips everything below;
2. route the raw target (bad encoding: 400 ``APIGW.0201``; unknown API, or a CDM path in a
   region without CDM: 404 ``APIGW.0101``);
3. IAM token requests: injected fault, else the IAM endpoint (never throttled);
4. authenticate (401 ``APIGW.0301``; IAM's project list answers its own 401), check the project:
   it must exist in this region, be enabled, and be the one the credential is scoped to (a
   token's project; the ``X-Project-Id`` an AK/SK request signs, else the region's default
   project), else 403 ``APIGW.0302``;
5. rate-limit per user and policy, across all regions (429 ``APIGW.0308``);
6. an injected fault for this endpoint/cluster/job, else the CDM API of that project.

``latency_ms`` is added to every answer.  Every answer carries ``X-Request-Id``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from cdm_exporter.simulator import errors, handlers, iam, rng, routing
from cdm_exporter.simulator.admin import AdminApi
from cdm_exporter.simulator.auth import iso_z, verify_aksk
from cdm_exporter.simulator.components import Components
from cdm_exporter.simulator.exchange import Plan, Request, json_plan
from cdm_exporter.simulator.injection import fault_plan
from cdm_exporter.simulator.ratelimit import POLICY_OF_ENDPOINT
from cdm_exporter.simulator.routing import BadRequestTarget, Route
from cdm_exporter.simulator.stats import ANONYMOUS, RequestRecord


class SimulatorApp:
    def __init__(
        self,
        parts: Components,
        base_url: Callable[[], str],
        region: str | None = None,
        region_url: Callable[[str], str] | None = None,
    ) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.base_url = base_url
        self.region = region or parts.settings.region
        self.region_url = region_url or (lambda region: base_url())
        self.admin = AdminApi(
            parts, lambda: {region: self.region_url(region) for region in parts.projects.regions}
        )
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()

    def _request_id(self) -> str:
        with self._ids_lock:
            n = next(self._ids)
        return rng.hex_string(32, self.settings.seed, "request-id", n)

    def handle(self, req: Request) -> Plan:
        request_id = self._request_id()
        raw_path, raw_query = routing.split_target(req.target)
        if raw_path == "/_sim" or raw_path.startswith("/_sim/"):
            plan = self.admin.handle(req.method, raw_path, req.body)
        else:
            plan = self._api(req, raw_path, raw_query, request_id)
            plan.delay += self.settings.latency_ms / 1000.0
        plan.headers["X-Request-Id"] = request_id
        return plan

    def _record(self, req: Request, raw_path: str, raw_query: str, endpoint: str, user: str) -> None:
        self.parts.stats.record_request(
            RequestRecord(req.method, raw_path, raw_query, endpoint, user, self.settings.clock())
        )

    def _answer(self, endpoint: str, plan: Plan) -> Plan:
        self.parts.stats.record_response(endpoint, plan.status)
        return plan

    def _api(self, req: Request, raw_path: str, raw_query: str, request_id: str) -> Plan:
        try:
            route = routing.match(req.method, raw_path)
            params = routing.decode_query(raw_query)
        except BadRequestTarget as exc:
            self._record(req, raw_path, raw_query, "invalid", ANONYMOUS)
            body = errors.gateway_error("APIGW.0201", f"Request error: {exc}", request_id)
            return self._answer("invalid", json_plan(400, body))
        endpoint = route.endpoint
        if endpoint == "unknown":
            self._record(req, raw_path, raw_query, endpoint, ANONYMOUS)
            return self._answer(endpoint, json_plan(404, errors.not_found(request_id)))
        if endpoint == "iam_token":
            return self._iam(req, raw_path, raw_query, params, request_id)
        if endpoint == "iam_projects":
            return self._iam_projects(req, raw_path, raw_query, request_id)
        if not self.parts.projects.offers_cdm(self.region):
            self._record(req, raw_path, raw_query, endpoint, ANONYMOUS)
            return self._answer(endpoint, json_plan(404, errors.not_found(request_id)))

        user, failure, scope = self._authenticate(req, raw_path, raw_query)
        self._record(req, raw_path, raw_query, endpoint, user)
        if failure is not None:
            return self._answer(endpoint, json_plan(401, errors.auth_failure(failure, request_id)))
        project = self.parts.projects.get(route.project_id or "")
        if scope is None:
            # AK/SK without X-Project-Id: the gateway takes the region's default project
            # (docs/api-notes.md, "IAM projects"), so a sub-project needs the header
            default = self.parts.projects.by_name(self.region)
            scope = default.id if default is not None else ""
        if (
            project is None
            or project.region != self.region
            or not project.enabled
            or (scope is not None and scope != project.id)
        ):
            body = errors.gateway_error(
                errors.FORBIDDEN,
                "The IAM user is not authorized to access the API: project mismatch",
                request_id,
            )
            return self._answer(endpoint, json_plan(403, body))
        policy = POLICY_OF_ENDPOINT[endpoint]
        now = self.settings.clock()
        self.parts.stats.record_policy_request(policy, user, now)
        if not self.parts.limiter.admit(policy, user, now):
            self.parts.stats.record_throttled()
            return self._answer(
                endpoint, json_plan(429, errors.throttled(self.settings.rate_limit, request_id))
            )

        job_name = params.get("jname") if endpoint == "submissions" else route.job_name
        fault = self.parts.faults.take(endpoint, route.cluster_id, job_name, route.project_id)
        cdm = project.cdm
        if fault is not None:
            plan = fault_plan(fault, endpoint, request_id, lambda: self._cdm(cdm, route, params))
            return self._answer(endpoint, plan)
        return self._answer(endpoint, self._cdm(cdm, route, params))

    @staticmethod
    def _cdm(cdm: handlers.CdmApi, route: Route, params: dict[str, str]) -> Plan:
        cluster = route.cluster_id or ""
        if route.endpoint == "list_clusters":
            status, body = cdm.list_clusters()
        elif route.endpoint == "cluster_detail":
            status, body = cdm.cluster_detail(cluster)
        elif route.endpoint == "list_jobs":
            status, body = cdm.list_jobs(cluster, params, route.job_name)
        elif route.endpoint == "job_status":
            status, body = cdm.job_status(cluster, route.job_name or "")
        else:
            status, body = cdm.submissions(cluster, params)
        return json_plan(status, body)

    def _iam_projects(self, req: Request, raw_path: str, raw_query: str, request_id: str) -> Plan:
        user, failure, _ = self._authenticate(req, raw_path, raw_query)
        self._record(req, raw_path, raw_query, "iam_projects", user)

        def normal() -> Plan:
            if failure is not None:
                message = "The request you have made requires authentication."
                return json_plan(401, errors.iam_error(401, message))
            return json_plan(200, iam.list_projects(self.settings, self.parts.projects, self.base_url()))

        fault = self.parts.faults.take("iam_projects", None, None)
        plan = normal() if fault is None else fault_plan(fault, "iam_projects", request_id, normal)
        return self._answer("iam_projects", plan)

    def _iam(
        self, req: Request, raw_path: str, raw_query: str, params: dict[str, str], request_id: str
    ) -> Plan:
        self._record(req, raw_path, raw_query, "iam_token", iam.claimed_user(req.body))

        def normal() -> Plan:
            result = iam.issue_token(
                self.parts.settings,
                self.parts.tokens,
                params,
                req.body,
                self.base_url(),
                self.parts.projects,
                self.region_url,
            )
            return json_plan(result.status, result.body, result.headers)

        fault = self.parts.faults.take("iam_token", None, None)
        plan = normal() if fault is None else fault_plan(fault, "iam_token", request_id, normal)
        return self._answer("iam_token", plan)

    def _authenticate(
        self, req: Request, raw_path: str, raw_query: str
    ) -> tuple[str, str | None, str | None]:
        """``(user, None, scope)`` when authenticated, else ``(user or anonymous, APIGW.0301
        sub-message, None)``. ``scope`` is the project the credential is limited to: a token's
        project (``""`` for a domain-scoped one), the ``X-Project-Id`` of an AK/SK request, or
        ``None`` for AK/SK without ``X-Project-Id``."""
        s = self.settings
        authorization = req.headers.get("authorization", "")
        if authorization.startswith("SDK-"):
            verdict = verify_aksk(
                req.method,
                raw_path,
                raw_query,
                req.headers,
                req.body,
                secret_for=lambda ak: s.secret_key if ak == s.access_key else None,
                # The gateway checks X-Sdk-Date against the real wall clock, not simulated time.
                now=time.time(),
                max_skew_seconds=s.signature_max_skew_seconds,
            )
            if verdict.ok:
                return verdict.access_key, None, req.headers.get("x-project-id")
            return ANONYMOUS, verdict.reason, None
        token = req.headers.get("x-auth-token")
        if token is None:
            if authorization:
                return ANONYMOUS, "verify aksk signature fail: unsupported Authorization scheme", None
            return ANONYMOUS, "x-auth-token not found", None
        if token == s.token:
            return s.iam_user, None, s.project_id  # a token scoped to the primary project
        issued = self.parts.tokens.lookup(token)
        if issued is None:
            return ANONYMOUS, "decrypt token fail", None
        if s.clock() >= issued.expires_at:
            return ANONYMOUS, f"token expires, expires_at: {iso_z(issued.expires_at)}", None
        return issued.user, None, issued.project_id
