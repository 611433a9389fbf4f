"""Tests of cdm_exporter.config: every valid shape, every invalid case, and that secrets stay hidden.

Invalid cases live in ``tests/fixtures/config/invalid/*.yaml``; each file starts with
``# key: <dotted key>`` and ``# message: <fragment>`` lines giving the error it must produce.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdm_exporter.config import (
    JOB_TYPES,
    AkSkAuthConfig,
    BudgetConfig,
    CollectionConfig,
    Config,
    ConfigError,
    JobsFilter,
    PasswordAuthConfig,
    Secret,
    TargetConfig,
    TokenAuthConfig,
    config_from_env,
    load_config,
    loader,
    parse_config,
    parse_duration,
)

FIXTURES = Path(__file__).parent / "fixtures" / "config"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
PID = "0123456789abcdef0123456789abcdef"

#: The environment the fixtures' ``*_env`` keys read. Every secret holds "SECRET" or a
#: recognisable marker so that a leak into an error or a log line can be searched for.
FIXTURE_ENV = {
    "CDM_TOKEN": "SECRET-token-env",
    "CDM_PASSWORD": "SECRET-password-env",
    "CDM_AK": "AKENV0004",
    "CDM_SK": "SECRET-sk-env",
    "CDM_SECURITY_TOKEN": "SECRET-sectoken-env",
    "CDM_EMPTY": "",
}


def load(name: str, env: dict[str, str] | None = None) -> Config:
    return load_config(FIXTURES / "valid" / name, FIXTURE_ENV if env is None else env)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def minimal(auth: str = "{token: SECRET-x}", extra: str = "") -> str:
    return f"targets:\n  - region: cn-north-4\n    project_id: {PID}\n    auth: {auth}\n{extra}"


# --------------------------------------------------------------------------- valid shapes


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_every_valid_fixture_loads_and_hides_its_secrets(path: Path) -> None:
    config = load_config(path, FIXTURE_ENV)
    assert config.targets
    secrets = config.secret_values()
    assert secrets, "every fixture configures at least one secret"
    for text in (repr(config), str(config)):
        for secret in secrets:
            assert secret not in text


def test_minimal_config_gets_every_default_and_derivation() -> None:
    config = load("token_inline.yaml", env={})
    (target,) = config.targets
    assert target == TargetConfig(
        name=PID,
        region="cn-north-4",
        project_id=PID,
        endpoint="https://cdm.cn-north-4.myhuaweicloud.com",
        iam_endpoint="https://iam.cn-north-4.myhuaweicloud.com",
        auth=TokenAuthConfig(Secret("token-inline-0001")),
    )
    assert target.clusters == ()
    assert target.jobs == JobsFilter(
        include=(), exclude=(), types=("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB")
    )
    assert target.ca_bundle is None
    assert target.tls_insecure_skip_verify is False
    assert config.collection == CollectionConfig(
        concurrency=8,
        budget_per_minute=BudgetConfig(job_status=100, common=100),
        discovery_interval=300.0,
        job_list_interval=60.0,
        history_interval=300.0,
        connect_timeout=3.05,
        read_timeout=10.0,
        default_scrape_timeout=10.0,
        scrape_timeout_offset=0.5,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("token_inline.yaml", TokenAuthConfig(Secret("token-inline-0001"))),
        ("token_file.yaml", TokenAuthConfig(Secret("token-from-file-0003"))),
        ("token_env.yaml", TokenAuthConfig(Secret("SECRET-token-env"))),
        (
            "password_inline.yaml",
            PasswordAuthConfig("my-account", "monitoring", Secret("password-inline-0007")),
        ),
        (
            "password_file.yaml",
            PasswordAuthConfig("my-account", "monitoring", Secret("password-from-file-0005")),
        ),
        ("password_env.yaml", PasswordAuthConfig("my-account", "monitoring", Secret("SECRET-password-env"))),
        ("aksk_inline.yaml", AkSkAuthConfig("AKINLINE0001", Secret("sk-inline-0008"))),
        (
            "aksk_file_temporary.yaml",
            # secret_key.txt ends in \r\n: the whole line ending goes
            AkSkAuthConfig("AKFILE0002", Secret("sk-from-file-0004"), Secret("sectoken-from-file-0006")),
        ),
        (
            "aksk_env.yaml",
            AkSkAuthConfig("AKENV0004", Secret("SECRET-sk-env"), Secret("SECRET-sectoken-env")),
        ),
    ],
)
def test_each_auth_mode_and_secret_source(name: str, expected: object) -> None:
    assert load(name).targets[0].auth == expected


def test_full_config_reads_every_key() -> None:
    config = load("full.yaml")
    prod, staging = config.targets
    assert prod.name == "prod-beijing"
    assert prod.endpoint == "https://cdm.example.com:8443"  # trailing "/" dropped
    assert prod.iam_endpoint == "https://iam.example.com"
    assert prod.ca_bundle == str(FIXTURES / "files" / "ca.pem")
    assert prod.clusters == ("cluster-a", "6ec9a7f0-1234-4a5b-9c8d-0123456789ab")  # duplicate dropped
    assert prod.jobs == JobsFilter(
        include=("orders_*", "billing-?"), exclude=("*_tmp",), types=("NORMAL_JOB", "BATCH_JOB")
    )
    assert staging.name == "staging"
    assert staging.endpoint == "https://cdm.la-south-2.myhuaweicloud.com"
    assert staging.auth == AkSkAuthConfig("AKSTAGING0003", Secret("SECRET-sk-env"))
    assert config.collection == CollectionConfig(
        concurrency=16,
        budget_per_minute=BudgetConfig(job_status=90, common=60),
        discovery_interval=5400.0,
        job_list_interval=30.0,
        history_interval=600.0,
        connect_timeout=2.5,
        read_timeout=20.0,
        default_scrape_timeout=15.0,
        scrape_timeout_offset=0.25,
        status_series="current",
    )
    assert config.target("staging") is staging
    assert config.target("nope") is None
    assert config.secret_values() == ("SECRET-token-env", "SECRET-sk-env")


def test_null_values_mean_the_default() -> None:
    assert load("nulls_are_defaults.yaml").targets[0] == load("token_inline.yaml").targets[0]
    assert load("nulls_are_defaults.yaml").collection == CollectionConfig()


def test_one_project_twice_with_distinct_names() -> None:
    config = load("same_project_two_names.yaml")
    assert [(t.name, t.clusters) for t in config.targets] == [("a", ("one",)), ("b", ("two",))]
    assert config.secret_values() == ("SECRET-token-env",)  # deduplicated


def test_uppercase_project_id_is_accepted_as_written() -> None:
    assert load("password_inline.yaml").targets[0].project_id == PID.upper()


def test_relative_secret_paths_start_at_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf", "SECRET-rel\n", "token")
    write(tmp_path / "conf", minimal("{token_file: token}"))
    monkeypatch.chdir(tmp_path)  # the token is not in the working directory
    assert load_config("conf/config.yaml", {}).targets[0].auth == TokenAuthConfig(Secret("SECRET-rel"))


def test_each_credential_records_where_its_settings_came_from(tmp_path: Path) -> None:
    write(tmp_path, "SECRET-sk\n", "sk")
    text = minimal("{token_env: CDM_TOKEN}") + (
        f"  - name: second\n    region: cn-north-4\n    project_id: {PID}\n"
        "    auth: {aksk: {access_key_env: CDM_AK, secret_key_file: sk, security_token: SECRET-st}}\n"
        f"  - name: third\n    region: cn-north-4\n    project_id: {PID}\n"
        "    auth: {password: {domain: d, user: u, password: SECRET-pw}}\n"
    )
    config = load_config(write(tmp_path, text), {"CDM_TOKEN": "SECRET-t", "CDM_AK": "AK1"})
    assert [target.auth.sources for target in config.targets] == [
        ("targets[0].auth.token_env",),
        (
            "targets[1].auth.aksk.access_key_env",
            "targets[1].auth.aksk.secret_key_file",
            "targets[1].auth.aksk.security_token",
        ),
        (
            "targets[2].auth.password.domain",
            "targets[2].auth.password.user",
            "targets[2].auth.password.password",
        ),
    ]
    env_config = config_from_env({**SDK_ENV, "HUAWEICLOUD_SDK_SECURITY_TOKEN": "SECRET-st"})
    assert env_config.targets[0].auth.sources == (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    )
    # where a setting sits is no part of the credential: a reordered file keeps its targets
    assert config.targets[0].auth == TokenAuthConfig(Secret("SECRET-t"))


# --------------------------------------------------------------------------- endpoint environment overrides


def test_sdk_env_overrides_the_derived_endpoints() -> None:
    env = {
        "HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4": "https://cdm.internal:8443/",
        "HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.internal",
        "HUAWEICLOUD_SDK_REGION_CDM_CN_EAST_3": "https://other-region.invalid",
    }
    target = load("token_inline.yaml", env).targets[0]
    assert (target.endpoint, target.iam_endpoint) == ("https://cdm.internal:8443", "https://iam.internal")


def test_sdk_env_endpoint_list_uses_the_first() -> None:
    env = {"HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4": "https://a.internal, https://b.internal"}
    assert load("token_inline.yaml", env).targets[0].endpoint == "https://a.internal"


def test_explicit_endpoints_beat_the_env() -> None:
    env = {
        "HUAWEICLOUD_SDK_REGION_CDM_CN_NORTH_4": "https://env.internal",
        "HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://x.y",
    }
    prod = load("full.yaml", {**FIXTURE_ENV, **env}).targets[0]
    assert (prod.endpoint, prod.iam_endpoint) == ("https://cdm.example.com:8443", "https://iam.example.com")


def test_bad_env_endpoint_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load("token_inline.yaml", {"HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.internal/v3"})
    assert caught.value.key == "HUAWEICLOUD_SDK_IAM_ENDPOINT"
    assert "overrides targets[0].iam_endpoint" in caught.value.message


# --------------------------------------------------------------------------- the no-file path

SDK_ENV = {
    "HUAWEICLOUD_SDK_AK": "AKSDK0009",
    "HUAWEICLOUD_SDK_SK": "SECRET-sdk-sk",
    "HUAWEICLOUD_SDK_PROJECT_ID": PID,
    "HUAWEICLOUD_SDK_REGION": "ap-southeast-3",
}


def test_sdk_variables_give_one_aksk_target() -> None:
    config = load_config(None, SDK_ENV)
    assert config == config_from_env(SDK_ENV)
    assert config.targets == (
        TargetConfig(
            name=PID,
            region="ap-southeast-3",
            project_id=PID,
            endpoint="https://cdm.ap-southeast-3.myhuaweicloud.com",
            iam_endpoint="https://iam.ap-southeast-3.myhuaweicloud.com",
            auth=AkSkAuthConfig("AKSDK0009", Secret("SECRET-sdk-sk")),
        ),
    )
    assert config.collection == CollectionConfig()


def test_sdk_variables_with_security_token_and_endpoint_override() -> None:
    env = {
        **SDK_ENV,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "SECRET-sdk-sectoken",
        "HUAWEICLOUD_SDK_REGION_CDM_AP_SOUTHEAST_3": "https://cdm.ap-southeast-3.myhuaweicloud.cn",
    }
    target = config_from_env(env).targets[0]
    assert target.auth == AkSkAuthConfig("AKSDK0009", Secret("SECRET-sdk-sk"), Secret("SECRET-sdk-sectoken"))
    assert target.endpoint == "https://cdm.ap-southeast-3.myhuaweicloud.cn"


@pytest.mark.parametrize(
    "missing",
    ["HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID", "HUAWEICLOUD_SDK_REGION"],
)
def test_a_missing_sdk_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in SDK_ENV.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        load_config(None, env)
    assert caught.value.key == missing
    assert "SECRET" not in str(caught.value)


def test_no_file_and_no_variables_says_what_to_provide() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"HUAWEICLOUD_SDK_REGION": "cn-north-4", "PATH": "/bin"})
    assert caught.value.key == ""
    for needed in ("--config.file", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID"):
        assert needed in caught.value.message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"HUAWEICLOUD_SDK_PROJECT_ID": "not-a-project"}, "HUAWEICLOUD_SDK_PROJECT_ID"),
        ({"HUAWEICLOUD_SDK_REGION": "north"}, "HUAWEICLOUD_SDK_REGION"),
        ({"HUAWEICLOUD_SDK_AK": "AK WITH SPACE"}, "HUAWEICLOUD_SDK_AK"),
        ({"HUAWEICLOUD_SDK_SK": "SECRET-with\nnewline"}, "HUAWEICLOUD_SDK_SK"),
        (
            {"HUAWEICLOUD_SDK_REGION_CDM_AP_SOUTHEAST_3": "cdm.example.com"},
            "HUAWEICLOUD_SDK_REGION_CDM_AP_SOUTHEAST_3",
        ),
    ],
)
def test_bad_sdk_variables_name_the_variable(change: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_env({**SDK_ENV, **change})
    assert caught.value.key == key
    assert "SECRET" not in str(caught.value)


# --------------------------------------------------------------------------- invalid configurations


def _expectation(path: Path) -> tuple[str, str]:
    match = re.match(r"# key: (.*)\n# message: (.*)\n", path.read_text())
    assert match, f"{path.name} must start with '# key:' and '# message:' lines"
    return match.group(1).strip(), match.group(2).strip()


def test_there_are_invalid_fixtures() -> None:
    assert len(INVALID) >= 70


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_names_the_key(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, fragment = _expectation(path)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        load_config(path, FIXTURE_ENV)
    assert (caught.value.key, fragment in caught.value.message) == (key, True), str(caught.value)
    assert str(caught.value) == (f"{key}: {caught.value.message}" if key else caught.value.message)
    # No secret of the fixture or its environment reaches the error or the log.
    assert "SECRET" not in str(caught.value)
    assert "SECRET" not in caplog.text


def test_file_level_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml", {})
    assert (caught.value.key, caught.value.message) == (
        "",
        f"config file {tmp_path / 'missing.yaml'} not found",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert caught.value.message == f"cannot read config file {tmp_path}: Is a directory"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "- 1\n"), {})
    assert caught.value.message.startswith(f"{tmp_path / 'config.yaml'}: the top level must be a mapping")


def test_invalid_yaml_reports_line_and_column_without_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  - auth: {token: SECRET-a: SECRET-b}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.message.startswith(f"{path}:2:")
    assert "SECRET" not in str(caught.value)


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"targets:\n  - region: \xff\xfe\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, {})


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "targets: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, {})


# --------------------------------------------------------------------------- secret files


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"SECRET-plain", "SECRET-plain"),
        (b"SECRET-lf\n", "SECRET-lf"),
        (b"SECRET-crlf\r\n", "SECRET-crlf"),
        (b"SECRET-blank-lines\n\n", "SECRET-blank-lines"),
        (b"\xef\xbb\xbfSECRET-bom\n", "SECRET-bom"),
        (b" SECRET with spaces \n", " SECRET with spaces "),
    ],
)
def test_secret_file_content(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "token").write_bytes(content)
    (tmp_path / "token").chmod(0o600)
    config = load_config(write(tmp_path, minimal("{token_file: token}")), {})
    assert config.targets[0].auth == TokenAuthConfig(Secret(expected))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\n", "is empty"),
        (b"", "is empty"),
        (b"SECRET-one\nSECRET-two\n", "contains a line break or another control character (value not shown)"),
        (b"SECRET-\x07bell", "control character"),
        (b"SECRET-\xff\xfe", "is not UTF-8 text"),
        (b"S" * ((1 << 20) + 1), "is larger than 1048576 bytes"),
    ],
    ids=["newline-only", "empty", "two-lines", "bell", "not-utf8", "too-large"],
)
def test_bad_secret_file_content(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "token").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, minimal("{token_file: token}")), {})
    assert caught.value.key == "targets[0].auth.token_file"
    assert fragment in caught.value.message
    assert f"secret file {tmp_path / 'token'}" in caught.value.message
    assert "SECRET" not in str(caught.value)


def test_fifo_secret_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "token")
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(write(tmp_path, minimal("{token_file: token}")), {})


def test_nul_byte_in_secret_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, minimal('{token_file: "a\\0b"}')), {})
    assert caught.value.key == "targets[0].auth.token_file"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_secret_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    secret = tmp_path / "sk"
    secret.write_text("SECRET-readable\n")
    secret.chmod(mode)
    caplog.set_level(logging.WARNING, logger="cdm_exporter.config")
    load_config(write(tmp_path, minimal("{aksk: {access_key: AK1, secret_key_file: sk}}")), {})
    (record,) = [r for r in caplog.records if "readable by group or others" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "targets[0].auth.aksk.secret_key_file" in record.getMessage()
    assert str(secret) in record.getMessage()
    assert f"mode {mode:04o}" in record.getMessage()
    assert "SECRET" not in caplog.text


def test_group_bit_needed_to_read_the_file_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kubernetes: the Secret file is root's, mode 0440, and the exporter reads it through fsGroup.
    secret = tmp_path / "sk"
    secret.write_text("SECRET-fsgroup\n")
    secret.chmod(0o440)
    info = secret.stat()
    monkeypatch.setattr(os, "geteuid", lambda: info.st_uid + 1)
    monkeypatch.setattr(os, "getegid", lambda: info.st_gid)
    caplog.set_level(logging.DEBUG, logger="cdm_exporter.config")
    load_config(write(tmp_path, minimal("{aksk: {access_key: AK1, secret_key_file: sk}}")), {})
    assert caplog.records == []
    secret.chmod(0o444)  # others can read it too: that is worth a warning again
    load_config(tmp_path / "config.yaml", {})
    assert "readable by group or others (mode 0444)" in caplog.text


def test_private_secret_file_is_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "sk"
    secret.write_text("SECRET-private\n")
    secret.chmod(0o600)
    caplog.set_level(logging.DEBUG, logger="cdm_exporter.config")
    load_config(write(tmp_path, minimal("{aksk: {access_key: AK1, secret_key_file: sk}}")), {})
    assert caplog.records == []


def test_inline_secrets_in_a_readable_config_file_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, minimal("{token: SECRET-inline}"))
    path.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="cdm_exporter.config")
    load_config(path, {})
    assert "holds inline secrets (targets[0].auth.token)" in caplog.text
    assert "SECRET" not in caplog.text


# --------------------------------------------------------------------------- warnings that do not fail


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        ("    endpoint: http://cdm.example.com\n", "targets[0].endpoint: plain http://"),
        ("    iam_endpoint: http://10.1.2.3:8080\n", "targets[0].iam_endpoint: plain http://"),
        (
            "    tls_insecure_skip_verify: yes\n",
            "targets[0].tls_insecure_skip_verify: TLS certificates are not",
        ),
        (
            "collection: {budget_per_minute: {common: 111}}\n",
            "collection.budget_per_minute.common: 111 requests",
        ),
    ],
)
def test_risky_settings_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, extra: str, warning: str
) -> None:
    caplog.set_level(logging.WARNING, logger="cdm_exporter.config")
    load_config(write(tmp_path, minimal(extra=extra)), {})
    assert warning in caplog.text


def test_loopback_http_and_defaults_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="cdm_exporter.config")
    load("local_simulator.yaml")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# --------------------------------------------------------------------------- secrets never leak

LEAKY = "S3CR3T-leak-marker"


@pytest.mark.parametrize(
    "text",
    [
        minimal(f"{{token: {LEAKY}\n"),  # invalid YAML on the secret's line
        minimal(f"{{tokn: {LEAKY}}}"),  # unknown key next to a secret
        minimal(f"{{token: {LEAKY}, token_env: CDM_TOKEN}}"),  # two sources
        minimal(f"{{token: [{LEAKY}]}}"),  # wrong type
        minimal(f'{{token: "{LEAKY}\\u0007"}}'),  # control character
        minimal(f"{{password: {{domain: d, user: {LEAKY}, password: {LEAKY}, extra: 1}}}}"),
        minimal(f"{{token: {LEAKY}}}", extra=f"    endpoint: https://u:{LEAKY}@cdm.example.com\n"),
        minimal(f"{{token: {LEAKY}}}", extra=f"    token: {LEAKY}\n"),  # duplicate-looking key
        minimal(f"{{token: {LEAKY}}}", extra=f"    auth: {{token: {LEAKY}}}\n"),  # duplicate key
        minimal(f"{{aksk: {{access_key: AK1, secret_key: {LEAKY}, security_token: ''}}}}"),
    ],
    ids=[
        "yaml-error-on-its-line",
        "unknown-key",
        "two-sources",
        "wrong-type",
        "control-char",
        "unknown-password-key",
        "url-credentials",
        "misplaced-token",
        "duplicate-key",
        "empty-neighbour",
    ],
)
def test_secrets_never_appear_in_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert LEAKY not in str(caught.value)
    assert LEAKY not in repr(caught.value)
    assert LEAKY not in caplog.text


def test_secrets_never_appear_in_repr_or_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sk").write_text(f"{LEAKY}-sk\n")
    (tmp_path / "sk").chmod(0o644)
    text = (
        f"targets:\n"
        f"  - {{region: cn-north-4, project_id: {PID}, endpoint: 'http://cdm.example.com',\n"
        f"     tls_insecure_skip_verify: true, auth: {{token: {LEAKY}-token}}}}\n"
        f"  - {{name: b, region: cn-north-4, project_id: {PID},\n"
        f"     auth: {{aksk: {{access_key: AK1, secret_key_file: sk, security_token_env: T}}}}}}\n"
        f"  - {{name: c, region: cn-north-4, project_id: {PID},\n"
        f"     auth: {{password: {{domain: d, user: u, password: {LEAKY}-password}}}}}}\n"
    )
    path = write(tmp_path, text)
    path.chmod(0o644)
    caplog.set_level(logging.DEBUG)
    config = load_config(path, {"T": f"{LEAKY}-sectoken"})
    assert len(caplog.records) >= 4  # http, insecure, readable secret file, inline secrets
    assert sorted(config.secret_values()) == sorted(
        f"{LEAKY}-{s}" for s in ("token", "sk", "sectoken", "password")
    )
    for shown in (repr(config), str(config), caplog.text, *(repr(t.auth) for t in config.targets)):
        assert LEAKY not in shown


# --------------------------------------------------------------------------- the Secret type


def test_secret_hides_its_value_everywhere_but_reveal() -> None:
    secret = Secret("SECRET-value")
    assert secret.reveal() == "SECRET-value"
    percent = "%s" % (secret,)  # noqa: UP031 - logging formats its arguments this way
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", percent, repr([secret])):
        assert shown.endswith("Secret('***')") or shown == "[Secret('***')]"
        assert "SECRET-value" not in shown


def test_secret_equality_hash_and_immutability() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2
    with pytest.raises(AttributeError):
        Secret("a")._value = "b"
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        (0, 0.0),
        ("15", 15.0),
        ("0.5", 0.5),
        (" 10s ", 10.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1m30s500ms", 90.5),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("2w1d", 1296000.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "got a boolean"),
        (None, "got nothing"),
        ([5], "got a list"),
        ("", "is empty"),
        ("5 minutes", "invalid duration"),
        ("5x", "invalid duration"),
        ("m5", "invalid duration"),
        ("1m1h", "largest first"),
        ("5s5s", "largest first"),
        ("-5s", "invalid duration"),
        (-1, "must not be negative"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (10**400, "far too large"),
        ("9" * 400, "finite"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_parse_duration_rejects(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(value, "collection.x")
    assert caught.value.key == "collection.x"
    assert fragment in caught.value.message


# --------------------------------------------------------------------------- model rules and helpers


@pytest.mark.parametrize(
    ("name", "include", "exclude", "matched"),
    [
        ("anything", (), (), True),
        ("orders_daily", ("orders_*",), (), True),
        ("Orders_daily", ("orders_*",), (), False),  # case-sensitive
        ("billing", ("orders_*", "bill*"), (), True),
        ("orders_tmp", ("orders_*",), ("*_tmp",), False),  # exclude wins
        ("x_tmp", (), ("*_tmp",), False),
        ("job1", ("job[0-9]",), (), True),
        ("jobs", ("job?",), ("jobs",), False),
    ],
)
def test_jobs_filter_matches(
    name: str, include: tuple[str, ...], exclude: tuple[str, ...], matched: bool
) -> None:
    assert JobsFilter(include=include, exclude=exclude).matches(name) is matched


def test_cluster_selected_by_id_or_name() -> None:
    base = TargetConfig(PID, "cn-north-4", PID, "https://a.b", "https://c.d", TokenAuthConfig(Secret("t")))
    assert base.cluster_selected("id-1", "one")
    chosen = dataclasses.replace(base, clusters=("id-1", "two"))
    assert chosen.cluster_selected("id-1", "one")
    assert chosen.cluster_selected("id-2", "two")
    assert not chosen.cluster_selected("id-3", "three")


@pytest.mark.parametrize("region", ["cn-north-4", "ap-southeast-1", "eu-de", "eu-ch2", "la-north-2"])
def test_region_ids_of_huawei_and_partner_clouds_are_accepted(region: str) -> None:
    auth = TokenAuthConfig(Secret("t"))
    assert TargetConfig("n", region, PID, "https://a.b", "https://c.d", auth).region == region


@pytest.mark.parametrize(
    "region", ["cn_north_4", "CN-north-4", "cn", "cn-north-4.example.com", "cn-north-4 ", ""]
)
def test_region_ids_that_are_typos_or_hosts_are_refused(region: str) -> None:
    auth = TokenAuthConfig(Secret("t"))
    with pytest.raises(ConfigError) as caught:
        TargetConfig("n", region, PID, "https://a.b", "https://c.d", auth)
    assert caught.value.key == "region"
    assert repr(region) in str(caught.value)


def test_hand_built_objects_are_validated_too() -> None:
    auth = TokenAuthConfig(Secret("t"))
    with pytest.raises(ConfigError) as caught:
        TargetConfig("n", "cn_north_4", PID, "https://a.b", "https://c.d", auth)
    assert caught.value.key == "region"
    with pytest.raises(ConfigError) as caught:
        TargetConfig("n", "cn-north-4", PID, "https://a.b/", "https://c.d", auth)
    assert caught.value.key == "endpoint"
    with pytest.raises(ConfigError) as caught:
        CollectionConfig(concurrency=65)
    assert caught.value.key == "concurrency"
    with pytest.raises(ConfigError) as caught:
        BudgetConfig(common=0)
    assert caught.value.key == "common"
    with pytest.raises(ConfigError) as caught:
        Config(targets=())
    assert caught.value.key == "targets"
    assert set(JOB_TYPES) == {"NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB"}


def test_parse_config_takes_parsed_data() -> None:
    data = yaml.safe_load(minimal("{token_env: CDM_TOKEN}"))
    assert parse_config(data, FIXTURE_ENV).targets[0].auth == TokenAuthConfig(Secret("SECRET-token-env"))


# --------------------------------------------------------------------------- fuzzing

_ALL_KEYS = sorted(
    {
        *loader.TOP_KEYS,
        *loader.TARGET_KEYS,
        *loader.AUTH_KEYS,
        *loader.PASSWORD_KEYS,
        *loader.AKSK_KEYS,
        *loader.JOBS_KEYS,
        *loader.COLLECTION_KEYS,
        *loader.BUDGET_KEYS,
    }
)
_PLAUSIBLE = [
    "cn-north-4",
    PID,
    "5m",
    "1h30m",
    "250ms",
    "https://cdm.example.com",
    "http://10.0.0.1:80",
    "NORMAL_JOB",
    "CDM_TOKEN",
    "token.txt",
    "ca.pem",
    ".",
    "x*",
    "",
    "0",
    "yes",
    "a\x00b",
    "../../etc/passwd",
]
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(_PLAUSIBLE)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
_keys = st.sampled_from(_ALL_KEYS) | st.text(max_size=8) | st.integers(0, 3)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=25,
)


def _mutated(
    base: st.SearchStrategy[dict[str, Any]], keys: tuple[str, ...]
) -> st.SearchStrategy[dict[Any, Any]]:
    """A valid mapping from ``base`` with a few keys dropped, replaced or added with arbitrary values.

    Starting from valid data lets the fuzzing reach the deep checks (auth, secrets, ranges)
    instead of stopping at the first "expected a mapping".
    """

    @st.composite
    def build(draw: st.DrawFn) -> dict[Any, Any]:
        result: dict[Any, Any] = dict(draw(base))
        known = st.sampled_from(keys)
        for key in draw(st.lists(st.one_of(known, known, known, _keys), max_size=2)):
            if key in result and draw(st.booleans()):
                del result[key]
            else:
                result[key] = draw(_values)
        return result

    return build()


_password = _mutated(
    st.just({"domain": "d", "user": "u", "password_file": "token.txt"}), loader.PASSWORD_KEYS
)
_aksk = _mutated(st.just({"access_key": "AK1", "secret_key_env": "CDM_TOKEN"}), loader.AKSK_KEYS)
_auth = _mutated(
    st.sampled_from([{"token": "SECRET-fuzz"}, {"token_file": "token.txt"}, {"token_env": "CDM_TOKEN"}])
    | st.builds(lambda p: {"password": p}, _password)
    | st.builds(lambda a: {"aksk": a}, _aksk),
    loader.AUTH_KEYS,
)
_jobs = _mutated(st.just({"include": ["a*"], "types": ["NORMAL_JOB"]}), loader.JOBS_KEYS)
_target = _mutated(
    st.fixed_dictionaries(
        {"region": st.just("cn-north-4"), "project_id": st.just(PID), "auth": _auth, "jobs": _jobs}
    ),
    loader.TARGET_KEYS,
)
_collection = _mutated(
    st.just({"concurrency": 4, "budget_per_minute": {"common": 50}, "discovery_interval": "5m"}),
    loader.COLLECTION_KEYS,
)
_document = _mutated(
    st.fixed_dictionaries({"targets": st.lists(_target, max_size=3), "collection": _collection}),
    loader.TOP_KEYS,
)


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        base = Path(name)
        (base / "token.txt").write_text("SECRET-fuzz\n")
        (base / "token.txt").chmod(stat.S_IRUSR | stat.S_IWUSR)
        (base / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        yield base


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(_document, _document, _document, _values))
def test_any_yaml_data_gives_a_config_or_a_config_error(fuzz_dir: Path, document: object) -> None:
    path = fuzz_dir / "config.yaml"
    path.write_text(yaml.safe_dump(document if isinstance(document, dict) else {"targets": document}))
    try:
        config = load_config(path, {"CDM_TOKEN": "SECRET-fuzz-env"})
    except ConfigError as exc:
        assert "SECRET-fuzz" not in str(exc)
    else:
        assert isinstance(config, Config)
        assert "SECRET-fuzz" not in repr(config)
