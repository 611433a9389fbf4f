"""Builds the API client and credential of one configured target, and the IAM project lister of a
``projects`` target."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from cdm_exporter.api.auth import AkSkAuth, CdmAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.client import CdmClient
from cdm_exporter.api.iam_projects import IamProjectsClient
from cdm_exporter.api.models import AuthProject
from cdm_exporter.api.transport import Observer
from cdm_exporter.config import (
    AkSkAuthConfig,
    AuthConfig,
    CollectionConfig,
    PasswordAuthConfig,
    TargetConfig,
    TokenAuthConfig,
)
from cdm_exporter.polling.poller import ApiClient

log = logging.getLogger(__name__)

#: (target, collection settings, request observer) -> (client, credential identity)
ClientFactory = Callable[[TargetConfig, CollectionConfig, Observer], tuple[ApiClient, str]]


class ProjectLister(Protocol):
    """What discovery needs from IAM (``cdm_exporter.api.iam_projects.IamProjectsClient``)."""

    def list_auth_projects(self, *, timeout: float | None = None) -> list[AuthProject]: ...

    def close(self) -> None: ...


#: (``projects`` target, collection settings, request observer) -> its IAM project lister
ListerFactory = Callable[[TargetConfig, CollectionConfig, Observer], ProjectLister]


def build_auth(target: TargetConfig, auth: AuthConfig) -> CdmAuth:
    if isinstance(auth, TokenAuthConfig):
        return TokenAuth(auth.token.reveal())
    if isinstance(auth, PasswordAuthConfig):
        return PasswordAuth(
            target.iam_endpoint, auth.domain, auth.user, auth.password.reveal(), target.project_id
        )
    if isinstance(auth, AkSkAuthConfig):
        return AkSkAuth(
            auth.access_key,
            auth.secret_key.reveal(),
            target.project_id,
            auth.security_token.reveal() if auth.security_token is not None else None,
        )
    raise TypeError(f"unknown auth configuration {type(auth).__name__}")


def _verify(target: TargetConfig) -> bool | str:
    if target.tls_insecure_skip_verify:
        return False
    return target.ca_bundle or True


def build_lister_auth(target: TargetConfig) -> CdmAuth:
    """The credential that lists a ``projects`` target's projects: scoped to no project (a
    domain-scoped token for a password, no ``X-Project-Id`` for AK/SK); a fixed token as it is."""
    auth = target.auth
    if isinstance(auth, PasswordAuthConfig):
        return PasswordAuth(target.iam_endpoint, auth.domain, auth.user, auth.password.reveal(), None)
    if isinstance(auth, AkSkAuthConfig):
        return AkSkAuth(
            auth.access_key,
            auth.secret_key.reveal(),
            None,
            auth.security_token.reveal() if auth.security_token is not None else None,
        )
    return build_auth(target, auth)


def build_project_lister(
    target: TargetConfig, collection: CollectionConfig, observer: Observer
) -> ProjectLister:
    auth = build_lister_auth(target)
    return IamProjectsClient(
        iam_endpoint=target.iam_endpoint,
        auth=auth,
        connect_timeout=collection.connect_timeout,
        read_timeout=collection.read_timeout,
        verify=_verify(target),
        observer=observer,
    )


def build_client(
    target: TargetConfig, collection: CollectionConfig, observer: Observer
) -> tuple[ApiClient, str]:
    verify = _verify(target)
    auth = build_auth(target, target.auth)
    client = CdmClient(
        endpoint=target.endpoint,
        project_id=target.project_id,
        auth=auth,
        connect_timeout=collection.connect_timeout,
        read_timeout=collection.read_timeout,
        verify=verify,
        pool_size=collection.concurrency,
        observer=observer,
    )
    return client, auth.identity
