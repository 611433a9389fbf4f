"""``api/iam_projects.py`` over real HTTP against the simulator's IAM: KeystoneListAuthProjects with
each kind of credential, the parsing of its answer, and its failures."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from cdm_exporter.api.auth import AkSkAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.errors import AuthError, MalformedResponse, ServerError
from cdm_exporter.api.iam_projects import IAM_PROJECTS, IamProjectsClient
from cdm_exporter.api.models import AuthProject, parse_auth_projects
from cdm_exporter.simulator import Fault, Simulator, SimulatorSettings


@pytest.fixture
def account() -> Iterator[Simulator]:
    settings = SimulatorSettings(
        clusters=1,
        jobs=1,
        extra_projects=("cn-north-4_dev", "ap-southeast-1"),
        regions_without_cdm=("ap-southeast-3",),
    )
    with Simulator(settings) as sim:
        yield sim


def lister(
    sim: Simulator, auth: TokenAuth | PasswordAuth | AkSkAuth, calls: list[tuple[str, str]]
) -> IamProjectsClient:
    return IamProjectsClient(
        iam_endpoint=sim.url, auth=auth, observer=lambda endpoint, code, _: calls.append((endpoint, code))
    )


def credentials(sim: Simulator) -> dict[str, TokenAuth | PasswordAuth | AkSkAuth]:
    s = sim.settings
    return {
        "token": TokenAuth(s.token),
        # a domain-scoped token: no project
        "password": PasswordAuth(sim.url, s.iam_domain, s.iam_user, s.iam_password, None),
        # signed without X-Project-Id, as the SDK signs its own IAM lookups
        "aksk": AkSkAuth(s.access_key, s.secret_key, None),
    }


@pytest.mark.parametrize("mode", ["token", "password", "aksk"])
def test_every_credential_lists_every_project(account: Simulator, mode: str) -> None:
    calls: list[tuple[str, str]] = []
    with lister(account, credentials(account)[mode], calls) as client:
        projects = client.list_auth_projects(timeout=10)
    names = {p.name for p in projects}
    assert {"cn-north-4", "cn-north-4_dev", "ap-southeast-1", "ap-southeast-3"} <= names
    assert "" in names  # the nameless project of the documented example is passed on, not dropped
    by_name = {p.name: p for p in projects}
    assert by_name["cn-north-4"].id == account.settings.project_id
    assert by_name["cn-north-4_dev"].parent_id == account.settings.project_id  # a sub-project's parent
    assert all(p.enabled for p in projects)
    assert (IAM_PROJECTS, "200") in calls
    if mode == "password":
        assert ("iam_token", "201") in calls


def test_a_domain_scoped_token_is_asked_for_without_a_project(account: Simulator) -> None:
    s = account.settings
    auth = PasswordAuth(account.url, s.iam_domain, s.iam_user, s.iam_password, None)
    token = auth.token()
    issued = account.tokens.lookup(token)
    assert issued is not None and issued.project_id == ""  # domain scope
    # it lists projects, but CDM refuses it
    with lister(account, TokenAuth(token), []) as client:
        assert client.list_auth_projects(timeout=10)
    cdm = requests.get(
        f"{account.url}/v1.1/{s.project_id}/clusters", headers={"X-Auth-Token": token}, timeout=10
    )
    assert cdm.status_code == 403


def test_a_disabled_project_is_listed_as_disabled(account: Simulator) -> None:
    dev = account.projects.by_name("cn-north-4_dev")
    assert dev is not None
    account.projects.set_enabled(dev.id, False)
    with lister(account, credentials(account)["token"], []) as client:
        projects = {p.name: p for p in client.list_auth_projects(timeout=10)}
    assert projects["cn-north-4_dev"].enabled is False


def test_a_wrong_credential_is_an_auth_error(account: Simulator) -> None:
    s = account.settings
    for auth in (TokenAuth("not-a-token"), AkSkAuth(s.access_key, "wrong-secret", None)):
        with lister(account, auth, []) as client, pytest.raises(AuthError) as caught:
            client.list_auth_projects(timeout=10)
        assert caught.value.status == 401 and caught.value.endpoint == IAM_PROJECTS
        assert "wrong-secret" not in str(caught.value)


def test_a_password_token_revoked_meanwhile_is_renewed_once(account: Simulator) -> None:
    s = account.settings
    calls: list[tuple[str, str]] = []
    auth = PasswordAuth(account.url, s.iam_domain, s.iam_user, s.iam_password, None)
    with lister(account, auth, calls) as client:
        client.list_auth_projects(timeout=10)
        account.revoke_tokens()
        assert client.list_auth_projects(timeout=10)
    assert calls.count((IAM_PROJECTS, "401")) == 1
    assert calls.count(("iam_token", "201")) == 2


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault("iam_projects", status=503), ServerError),
        (Fault("iam_projects", kind="malformed"), MalformedResponse),
        (Fault("iam_projects", kind="wrong_shape"), MalformedResponse),
    ],
)
def test_a_broken_answer_is_a_typed_error(account: Simulator, fault: Fault, error: type[Exception]) -> None:
    account.add_fault(fault)
    with lister(account, credentials(account)["token"], []) as client, pytest.raises(error):
        client.list_auth_projects(timeout=10)


def test_parsing_is_tolerant_entry_by_entry() -> None:
    payload = json.loads(
        """{"projects": [
            {"id": "a", "name": "cn-north-4", "enabled": true, "parent_id": "d", "domain_id": "d"},
            {"id": "b", "name": "cn-north-4_x", "enabled": "false"},
            {"id": "c", "name": "ap-southeast-1"},
            {"name": "no-id"},
            {"id": "e"},
            "not an object"
        ], "links": {"self": "x", "next": null}}"""
    )
    assert parse_auth_projects(payload) == [
        AuthProject("a", "cn-north-4", True, "d", "d"),
        AuthProject("b", "cn-north-4_x", False),
        AuthProject("c", "ap-southeast-1", True),  # enabled is always sent; when not, poll rather than hide
    ]
