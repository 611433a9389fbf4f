"""The hint for a refused credential: which settings of which target, or the clock."""

from __future__ import annotations

import pytest

from cdm_exporter.api.errors import AuthError
from cdm_exporter.config import (
    AkSkAuthConfig,
    AuthConfig,
    PasswordAuthConfig,
    Secret,
    TargetConfig,
    TokenAuthConfig,
)
from cdm_exporter.polling.auth_hint import auth_hint

SIGNATURE = AuthError(
    "list_clusters",
    "Incorrect IAM authentication information: verify aksk signature fail",
    status=401,
    code="APIGW.0301",
)


def target(auth: AuthConfig) -> TargetConfig:
    return TargetConfig(
        name="prod",
        region="cn-north-4",
        project_id="0123456789abcdef0123456789abcdef",
        endpoint="https://cdm.cn-north-4.myhuaweicloud.com",
        iam_endpoint="https://iam.cn-north-4.myhuaweicloud.com",
        auth=auth,
    )


@pytest.mark.parametrize(
    ("auth", "hint"),
    [
        (
            AkSkAuthConfig(
                "AK",
                Secret("SK"),
                sources=("targets[2].auth.aksk.access_key", "targets[2].auth.aksk.secret_key_env"),
            ),
            "check the access key and secret key of target prod: targets[2].auth.aksk.access_key and "
            "targets[2].auth.aksk.secret_key_env",
        ),
        (
            AkSkAuthConfig("AK", Secret("SK"), Secret("ST")),  # built in code: the keys it may come from
            "check the access key, secret key and security token of target prod: access_key, "
            "secret_key / secret_key_file / secret_key_env and security_token / _file / _env",
        ),
        (
            PasswordAuthConfig("d", "u", Secret("pw")),
            "check the domain, user and password of target prod: domain, user and "
            "password / password_file / password_env",
        ),
        (
            TokenAuthConfig(Secret("t"), sources=("targets[0].auth.token_file",)),
            "check the token of target prod: targets[0].auth.token_file (an IAM token is valid for 24 hours "
            "and is not renewed)",
        ),
    ],
)
def test_a_refused_credential_names_its_settings(auth: AuthConfig, hint: str) -> None:
    assert auth_hint(target(auth), SIGNATURE) == hint


def test_a_date_complaint_points_at_the_clock_for_aksk_only() -> None:
    skew = AuthError(
        "list_clusters", "verify aksk signature fail: X-Sdk-Date is more than 15 minutes off", status=401
    )
    assert auth_hint(target(AkSkAuthConfig("AK", Secret("SK"))), skew).startswith(
        "the API says the signature's date is off: check this machine's clock"
    )
    assert auth_hint(target(TokenAuthConfig(Secret("t"))), skew).startswith("check the token of target prod")


@pytest.mark.parametrize(
    "error",
    [
        AuthError("list_clusters", "Forbidden", status=403),
        AuthError("list_jobs", "No permission", status=400, code="Cdm.0032"),
    ],
)
def test_a_permission_refusal_points_at_the_iam_policy_first(error: AuthError) -> None:
    hint = auth_hint(
        target(AkSkAuthConfig("AK", Secret("SK"), sources=("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"))),
        error,
    )
    assert hint == (
        "check that the IAM user may read CDM (e.g. the CDM ReadOnlyAccess policy), and the access key and "
        "secret key of target prod: HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"
    )
