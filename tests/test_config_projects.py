"""Configuration of ``projects`` targets (``config/model.py``, ``config/loader.py``): what is derived,
what the SDK's variables override, and which projects a selection picks. The invalid shapes are
fixtures in ``tests/fixtures/config/invalid/projects_*.yaml`` (run by ``test_config.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from cdm_exporter.config import ConfigError, ProjectSelection, parse_config
from cdm_exporter.config.model import GLOBAL_IAM_ENDPOINT, project_region


def target(env: dict[str, str] | None = None, **keys: Any) -> Any:
    data = {"name": "account", "projects": "all", "auth": {"token": "SECRET-x"}, **keys}
    return parse_config({"targets": [data]}, env=env or {}).targets[0]


def test_defaults_are_the_global_iam_endpoint_and_each_regions_cdm_endpoint() -> None:
    account = target()
    assert account.iam_endpoint == GLOBAL_IAM_ENDPOINT == "https://iam.myhuaweicloud.com"
    assert account.project_id == "" and account.region == ""
    assert account.endpoint_for("ap-southeast-1") == "https://cdm.ap-southeast-1.myhuaweicloud.com"


def test_the_sdks_variables_override_the_derived_endpoints_and_the_file_overrides_them() -> None:
    env = {
        "HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.example.com",
        "HUAWEICLOUD_SDK_REGION_CDM_AP_SOUTHEAST_1": "https://cdm-a.example.com/,https://cdm-b.example.com",
        "HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4": "https://cdm-env.example.com",
    }
    account = target(env, region_endpoints={"cn-north-4": "https://cdm-file.example.com"})
    assert account.iam_endpoint == "https://iam.example.com"
    assert account.endpoint_for("ap-southeast-1") == "https://cdm-a.example.com"  # the first, as the SDK
    assert account.endpoint_for("cn-north-4") == "https://cdm-file.example.com"
    assert account.endpoint_for("cn-east-3") == "https://cdm.cn-east-3.myhuaweicloud.com"
    # an explicit template is explicit for every region: the variables no longer apply
    templated = target(
        env, endpoint="https://cdm.{region}.example.org", iam_endpoint="https://iam.example.org"
    )
    assert templated.endpoint_for("ap-southeast-1") == "https://cdm.ap-southeast-1.example.org"
    assert templated.iam_endpoint == "https://iam.example.org"


def test_a_bad_sdk_variable_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        target({"HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4": "ftp://x"})
    assert caught.value.key == "HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4"
    assert "targets[0].region_endpoints" in caught.value.message


@pytest.mark.parametrize(
    ("name", "region"),
    [
        ("cn-north-4", "cn-north-4"),
        ("cn-north-4_analytics", "cn-north-4"),
        ("ap-southeast-1_a_b", "ap-southeast-1"),
        ("eu-de", "eu-de"),
        ("", None),
        ("MOS", None),
        ("_cn-north-4", None),
    ],
)
def test_a_projects_region_is_its_name_up_to_the_first_underscore(name: str, region: str | None) -> None:
    assert project_region(name) == region


def test_a_region_id_selects_the_region_and_its_sub_projects_and_other_entries_are_globs() -> None:
    selection = ProjectSelection(patterns=("cn-north-4", "*_prod", "ap-southeast-1_etl?"))
    picked = [
        name
        for name in (
            "cn-north-4",
            "cn-north-4_dev",
            "cn-east-3",
            "cn-east-3_prod",
            "ap-southeast-1_etl2",
            "AP_prod",
        )
        if selection.selects(name, project_region(name) or "")
    ]
    assert picked == ["cn-north-4", "cn-north-4_dev", "cn-east-3_prod", "ap-southeast-1_etl2", "AP_prod"]
    assert not ProjectSelection(patterns=("*_PROD",)).selects("cn-east-3_prod", "cn-east-3")  # case matters
    assert ProjectSelection(all_projects=True).selects("anything", "cn-east-3")


def test_budget_scope_defaults_to_the_credential() -> None:
    config = parse_config({"targets": [{"name": "a", "projects": "all", "auth": {"token": "x"}}]}, env={})
    assert config.collection.budget_scope == "credential"
    assert config.collection.unavailable_recheck_interval == 3600.0
