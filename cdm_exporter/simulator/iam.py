"""The IAM endpoints: ``POST /v3/auth/tokens`` (password method) and ``GET /v3/auth/projects``.

Tokens: the domain (by name or id), user name and password must match the settings, and the
scope must name a project (by id or by name) or the domain.  A project-scoped token is what CDM
needs; a domain-scoped one can list projects but CDM refuses it.  Success is 201 with the token
in ``X-Subject-Token`` and its metadata in the body; ``?nocatalog=true`` drops the service
catalog.  Errors use IAM's Keystone-style body: 400 for a malformed request or unknown project,
401 for bad credentials or a disabled project.

Projects (KeystoneListAuthProjects): every project of the account, enabled or not, as
``{"projects": [{"id", "name", "enabled", "parent_id", "domain_id", "is_domain", "description",
"links"}], "links": {...}}``, plus one project with an empty name, as in the documented example
(docs/api-notes.md, "IAM projects").  The caller is authenticated by the gateway beforehand.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdm_exporter.simulator import errors, rng
from cdm_exporter.simulator.auth import TokenStore, iso_z
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import ANONYMOUS

if TYPE_CHECKING:
    from cdm_exporter.simulator.projects import Projects


@dataclass(frozen=True)
class IamResult:
    status: int
    body: dict[str, Any]
    user: str
    headers: dict[str, str] = field(default_factory=dict)


def domain_id(settings: SimulatorSettings) -> str:
    return rng.hex_string(32, settings.seed, "domain-id")


def user_id(settings: SimulatorSettings) -> str:
    return rng.hex_string(32, settings.seed, "user-id")


def claimed_user(body: bytes) -> str:
    """The user name a token request claims (for request accounting), if readable."""
    try:
        data = json.loads(body)
        name = data["auth"]["identity"]["password"]["user"]["name"]
    except (ValueError, KeyError, TypeError):
        return ANONYMOUS
    return name if isinstance(name, str) and name else ANONYMOUS


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def list_projects(settings: SimulatorSettings, projects: Projects, base_url: str) -> dict[str, Any]:
    """The body of ``GET /v3/auth/projects``."""

    def entry(project_id: str, name: str, parent_id: str, enabled: bool) -> dict[str, Any]:
        return {
            "domain_id": domain_id(settings),
            "is_domain": False,
            "parent_id": parent_id,
            "name": name,
            "description": "",
            "links": {"self": f"{base_url}/v3/projects/{project_id}"},
            "id": project_id,
            "enabled": enabled,
        }

    listed = [entry(p.id, p.name, p.parent_id, p.enabled) for p in projects.views()]
    listed.append(entry(rng.hex_string(32, settings.seed, "nameless-project"), "", domain_id(settings), True))
    return {
        "projects": listed,
        "links": {"self": f"{base_url}/v3/auth/projects", "previous": None, "next": None},
    }


def issue_token(
    settings: SimulatorSettings,
    tokens: TokenStore,
    params: Mapping[str, str],
    body: bytes,
    base_url: str,
    projects: Projects,
    region_url: Callable[[str], str],
) -> IamResult:
    user = claimed_user(body)
    try:
        data = json.loads(body)
    except ValueError:
        return IamResult(400, errors.iam_error(400, "The request body is not valid JSON."), user)
    methods = _get(data, "auth", "identity", "methods")
    if not isinstance(methods, list) or "password" not in methods:
        return IamResult(400, errors.iam_error(400, "auth.identity.methods must contain 'password'."), user)
    user_obj = _get(data, "auth", "identity", "password", "user")
    if not isinstance(user_obj, dict) or not isinstance(user_obj.get("domain"), dict):
        return IamResult(
            400, errors.iam_error(400, "auth.identity.password.user with a domain is required."), user
        )
    domain = user_obj["domain"]
    domain_ok = domain.get("name") == settings.iam_domain or domain.get("id") == domain_id(settings)
    if not (
        domain_ok
        and user_obj.get("name") == settings.iam_user
        and user_obj.get("password") == settings.iam_password
    ):
        return IamResult(401, errors.iam_error(401, "The username or password is wrong."), user)
    domain_info = {"id": domain_id(settings), "name": settings.iam_domain}
    scope = _get(data, "auth", "scope")
    project = _get(data, "auth", "scope", "project")
    domain_scope = _get(data, "auth", "scope", "domain")
    if isinstance(domain_scope, dict) and not isinstance(project, dict):
        if domain_scope.get("name") != settings.iam_domain and domain_scope.get("id") != domain_id(settings):
            return IamResult(401, errors.iam_error(401, "The request scope is not valid."), user)
        token = tokens.issue(settings.iam_user, "")
        scoped: dict[str, Any] = {"domain": domain_info}
    else:
        if not isinstance(project, dict) or not ({"id", "name"} & set(project)):
            what = (
                "a project or domain scope (auth.scope)"
                if scope is None
                else "auth.scope.project with an id or name"
            )
            return IamResult(400, errors.iam_error(400, f"The request needs {what}."), user)
        found = (
            projects.get(str(project["id"]))
            if "id" in project
            else projects.by_name(str(project.get("name")))
        )
        if found is None or ("name" in project and project["name"] != found.name):
            shown = project.get("id", project.get("name"))
            return IamResult(400, errors.iam_error(400, f"Project {shown} does not exist."), user)
        if not found.enabled:
            return IamResult(401, errors.iam_error(401, f"Project {found.id} is disabled."), user)
        token = tokens.issue(settings.iam_user, found.id)
        scoped = {"project": {"id": found.id, "name": found.name, "domain": domain_info}}
    token_body: dict[str, Any] = {
        "expires_at": iso_z(token.expires_at),
        "issued_at": iso_z(token.issued_at),
        "methods": ["password"],
        **scoped,
        "roles": [{"id": rng.hex_string(32, settings.seed, "role"), "name": "te_admin"}],
        "user": {
            "id": user_id(settings),
            "name": settings.iam_user,
            "domain": domain_info,
            "password_expires_at": "",
        },
    }
    if "project" in scoped and params.get("nocatalog", "").lower() != "true":
        region = scoped["project"]["name"].split("_", 1)[0]
        token_body["catalog"] = [
            {
                "type": "cdm",
                "name": "cdm",
                "id": rng.hex_string(32, settings.seed, "catalog-cdm"),
                "endpoints": [
                    {
                        "id": rng.hex_string(32, settings.seed, "endpoint-cdm"),
                        "interface": "public",
                        "region": region,
                        "region_id": region,
                        "url": f"{region_url(region)}/v1.1/{token.project_id}",
                    }
                ],
            },
            {
                "type": "identity",
                "name": "iam",
                "id": rng.hex_string(32, settings.seed, "catalog-iam"),
                "endpoints": [
                    {
                        "id": rng.hex_string(32, settings.seed, "endpoint-iam"),
                        "interface": "public",
                        "region": "*",
                        "region_id": "*",
                        "url": f"{base_url}/v3",
                    }
                ],
            },
        ]
    return IamResult(201, {"token": token_body}, settings.iam_user, {"X-Subject-Token": token.value})
