"""The IAM token endpoint: ``POST /v3/auth/tokens`` with the password method.

Only a project-scoped password request is served (CDM needs one): the domain (by name or id),
user name and password must match the settings, and the scope must name the project by id or
by name (= the region).  Success is 201 with the token in ``X-Subject-Token`` and its
metadata in the body; ``?nocatalog=true`` drops the service catalog.  Errors use IAM's
Keystone-style body: 400 for a malformed request or unknown project, 401 for bad credentials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdm_exporter.simulator import errors, rng
from cdm_exporter.simulator.auth import TokenStore, iso_z
from cdm_exporter.simulator.settings import SimulatorSettings
from cdm_exporter.simulator.stats import ANONYMOUS


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


def issue_token(
    settings: SimulatorSettings, tokens: TokenStore, params: Mapping[str, str], body: bytes, base_url: str
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
    project = _get(data, "auth", "scope", "project")
    if not isinstance(project, dict) or not ({"id", "name"} & set(project)):
        return IamResult(
            400, errors.iam_error(400, "A project scope (auth.scope.project) is required."), user
        )
    if "id" in project and project["id"] != settings.project_id:
        return IamResult(400, errors.iam_error(400, f"Project {project['id']} does not exist."), user)
    if "name" in project and project["name"] != settings.region:
        return IamResult(400, errors.iam_error(400, f"Project {project['name']} does not exist."), user)
    token = tokens.issue(settings.iam_user, settings.project_id)
    domain_info = {"id": domain_id(settings), "name": settings.iam_domain}
    token_body: dict[str, Any] = {
        "expires_at": iso_z(token.expires_at),
        "issued_at": iso_z(token.issued_at),
        "methods": ["password"],
        "project": {"id": settings.project_id, "name": settings.region, "domain": domain_info},
        "roles": [{"id": rng.hex_string(32, settings.seed, "role"), "name": "te_admin"}],
        "user": {
            "id": user_id(settings),
            "name": settings.iam_user,
            "domain": domain_info,
            "password_expires_at": "",
        },
    }
    if params.get("nocatalog", "").lower() != "true":
        token_body["catalog"] = [
            {
                "type": "cdm",
                "name": "cdm",
                "id": rng.hex_string(32, settings.seed, "catalog-cdm"),
                "endpoints": [
                    {
                        "id": rng.hex_string(32, settings.seed, "endpoint-cdm"),
                        "interface": "public",
                        "region": settings.region,
                        "region_id": settings.region,
                        "url": f"{base_url}/v1.1/{settings.project_id}",
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
