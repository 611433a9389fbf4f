"""Builds the API client and credential of one configured target."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cdm_exporter.api.auth import AkSkAuth, CdmAuth, PasswordAuth, TokenAuth
from cdm_exporter.api.client import CdmClient
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


def build_client(
    target: TargetConfig, collection: CollectionConfig, observer: Observer
) -> tuple[ApiClient, str]:
    verify: bool | str = target.ca_bundle or True
    if target.tls_insecure_skip_verify:
        verify = False
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
