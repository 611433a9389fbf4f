"""Read the YAML file (or the ``HUAWEICLOUD_SDK_*`` variables) into a validated :class:`Config`.

The loader checks what the model cannot: the YAML itself, types, unknown keys (with a
"did you mean"; these three with :mod:`cdm_exporter.config.strict_yaml`), which auth mode
and secret source was chosen, files and environment variables. Every problem is a
:class:`ConfigError` whose key is the dotted path of what to fix
(``targets[0].auth.aksk.secret_key_file``). Values are never echoed for secret keys, nor in
type errors, so an error message cannot leak a secret put in the wrong place.

A ``null`` value counts as absent: ``clusters:`` with nothing after it means the default.
Relative file paths (secret files, ``ca_bundle``) are relative to the config file's directory,
as in Prometheus' own configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdm_exporter.api.secret import Secret

from .errors import ConfigError
from .model import (
    BUDGET_WARN_ABOVE,
    DEFAULT_ENDPOINT_TEMPLATE,
    GLOBAL_IAM_ENDPOINT,
    AkSkAuthConfig,
    AuthConfig,
    BudgetConfig,
    CollectionConfig,
    Config,
    JobsFilter,
    PasswordAuthConfig,
    ProjectSelection,
    TargetConfig,
    TokenAuthConfig,
    default_endpoint,
    default_iam_endpoint,
    endpoint_problem,
    is_plain_http_to_remote,
    is_region_id,
)
from .secret_sources import read_secret_file, readable_by_others, secret_from_env, secret_from_text
from .strict_yaml import boolean, describe, integer, join, mapping_of, parse_yaml, string, strings, user_key

log = logging.getLogger("cdm_exporter.config")


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# The keys each mapping accepts; anything else is rejected as a likely typo. Where a mapping is
# one dataclass, its keys are the field names, so the two cannot drift apart.
TOP_KEYS = _field_names(Config)
TARGET_KEYS = _field_names(TargetConfig)
JOBS_KEYS = _field_names(JobsFilter)
COLLECTION_KEYS = _field_names(CollectionConfig)
BUDGET_KEYS = _field_names(BudgetConfig)
AUTH_KEYS = ("token", "token_file", "token_env", "password", "aksk")
PASSWORD_KEYS = ("domain", "user", "password", "password_file", "password_env")
# fmt: off
AKSK_KEYS = ("access_key", "access_key_env", "secret_key", "secret_key_file", "secret_key_env",
             "security_token", "security_token_file", "security_token_env")
# fmt: on

# Huawei SDK environment variables (docs/api-notes.md, "Endpoints and hosts").
ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
ENV_REGION = "HUAWEICLOUD_SDK_REGION"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a variable name
ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
_ENV_REQUIRED = (ENV_AK, ENV_SK, ENV_PROJECT_ID, ENV_REGION)


_CDM_ENDPOINT_ENV_PREFIX = "HUAWEICLOUD_SDK_REGION_CDM_"


def cdm_endpoint_env_var(region: str) -> str:
    """The variable the SDK reads to override the CDM endpoint of ``region``."""
    return _CDM_ENDPOINT_ENV_PREFIX + region.replace("-", "_").upper()


# --------------------------------------------------------------------------- entry points


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config file at ``path``; with ``None``, build it from ``env``.

    ``env`` defaults to ``os.environ``; it serves ``*_env`` secrets and endpoint overrides.
    """
    env = os.environ if env is None else env
    if path is None:
        return config_from_env(env)
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError("", f"config file {shown} not found") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {shown}: {exc.strerror or exc}") from None
    except ValueError:  # NUL byte or unencodable character in the path
        raise ConfigError("", f"{shown!r} is not a usable file path") from None
    data = parse_yaml(text, shown)
    context = _Context(env=env, base_dir=os.path.dirname(os.path.abspath(shown)))
    try:
        config = _config(data, context)
    except ConfigError as exc:
        if exc.key:
            raise
        raise ConfigError("", f"{shown}: {exc.message}") from None
    if context.inline_secrets and readable_by_others(info):
        log.warning(
            "config file %s holds inline secrets (%s) and is readable by group or others (mode %04o); "
            "restrict it with chmod 600 or move the secrets to *_file or *_env",
            shown,
            ", ".join(context.inline_secrets),
            stat.S_IMODE(info.st_mode),
            extra={"path": shown},
        )
    return config


def parse_config(
    data: object,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> Config:
    """Validate already-parsed YAML data (a mapping); ``base_dir`` anchors relative file paths."""
    base = None if base_dir is None else os.fspath(base_dir)
    return _config(data, _Context(env=os.environ if env is None else env, base_dir=base))


def config_from_env(env: Mapping[str, str]) -> Config:
    """The no-file configuration: one AK/SK target from the variables Huawei's SDKs read."""
    present = {name: env.get(name, "") for name in _ENV_REQUIRED}
    if not any(present[name] for name in (ENV_AK, ENV_SK, ENV_PROJECT_ID)):
        raise ConfigError(
            "",
            "no configuration: give --config.file FILE, or set "
            + ", ".join(_ENV_REQUIRED[:-1])
            + f" and {_ENV_REQUIRED[-1]} for a single AK/SK target",
        )
    missing = [name for name in _ENV_REQUIRED if not present[name]]
    if missing:
        raise ConfigError(missing[0], f"is not set; without a config file, set {', '.join(missing)}")
    access_key = present[ENV_AK]
    if re.search(r"\s", access_key):
        raise ConfigError(ENV_AK, "is not an access key (it contains whitespace)")
    auth = AkSkAuthConfig(
        access_key=access_key,
        secret_key=secret_from_env(env, ENV_SK, ENV_SK),
        security_token=secret_from_env(env, ENV_SECURITY_TOKEN, ENV_SECURITY_TOKEN)
        if env.get(ENV_SECURITY_TOKEN)
        else None,
        sources=(ENV_AK, ENV_SK) + ((ENV_SECURITY_TOKEN,) if env.get(ENV_SECURITY_TOKEN) else ()),
    )
    region, project_id = present[ENV_REGION], present[ENV_PROJECT_ID]
    context = _Context(env=env, base_dir=None)
    with _renamed({"region": ENV_REGION, "project_id": ENV_PROJECT_ID}):
        target = TargetConfig(
            name=project_id,
            region=region,
            project_id=project_id,
            endpoint=_endpoint_default(context, "targets[0]", "endpoint", region),
            iam_endpoint=_endpoint_default(context, "targets[0]", "iam_endpoint", region),
            auth=auth,
        )
    _warn_about(target, "targets[0]")
    return Config(targets=(target,))


# --------------------------------------------------------------------------- durations

_UNITS: dict[str, float] = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = tuple(_UNITS)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|[wdhms])")
_PLAIN_NUMBER = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)")
_DURATION_HELP = "use seconds (30, 2.5) or numbers with units ms s m h d w, largest first (250ms, 5m, 1h30m)"


def parse_duration(value: object, key: str) -> float:
    """Seconds from a number of seconds or a string like ``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"``.

    Units must go from largest to smallest, each at most once (as in Prometheus), so that
    ``"1m1h"`` is caught as the typo it likely is. Negative and non-finite values are rejected.
    """
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got a boolean; {_DURATION_HELP}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ConfigError(key, "is far too large") from None
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip(), key)
    else:
        raise ConfigError(key, f"expected a duration, got {describe(value)}; {_DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ConfigError(key, "must be a finite number of seconds")
    if seconds < 0:
        raise ConfigError(key, f"must not be negative, got {seconds:g}")
    return seconds


def _parse_duration_text(text: str, key: str) -> float:
    if not text:
        raise ConfigError(key, f"is empty; {_DURATION_HELP}")
    if _PLAIN_NUMBER.fullmatch(text):
        return float(text)
    total, position, last_unit = 0.0, 0, -1
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ConfigError(key, f"invalid duration {text!r}; {_DURATION_HELP}")
        unit = _UNIT_ORDER.index(match.group(2))
        if unit <= last_unit:
            raise ConfigError(key, f"invalid duration {text!r}; units go largest first, each once: 1h30m")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position, last_unit = match.end(), unit
    return total


# --------------------------------------------------------------------------- walking the data


@dataclass
class _Context:
    """What the walk needs besides the data: the environment and where relative paths start."""

    env: Mapping[str, str]
    base_dir: str | None
    inline_secrets: list[str] = field(default_factory=list)

    def resolve(self, path: str) -> str:
        # Lexically cleaned, as Prometheus does with Go's filepath.Join, so messages stay readable.
        if self.base_dir is None or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.base_dir, path))


@contextlib.contextmanager
def _under(path: str) -> Iterator[None]:
    """Prefix the keys of model errors (``region``) with where the object sits (``targets[0]``)."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(join(path, exc.key), exc.message) from None


@contextlib.contextmanager
def _renamed(names: Mapping[str, str]) -> Iterator[None]:
    """Report model errors under other names (the environment variables that supplied them)."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(names.get(exc.key, exc.key), exc.message) from None


def _present(mapping: dict[str, object], key: str) -> bool:
    return mapping.get(key) is not None


def _required(mapping: dict[str, object], path: str, key: str) -> object:
    value = mapping.get(key)
    if value is None:
        raise ConfigError(join(path, key), "is empty" if key in mapping else "is required")
    return value


def _single_line(value: str, key: str) -> str:
    """A name sent to IAM (domain, user): the client refuses blank ones and line breaks."""
    if not value.strip():
        raise ConfigError(key, "must not be blank")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(key, "must be a single line (it contains a line break or NUL)")
    return value


# --------------------------------------------------------------------------- the sections


def _config(data: object, context: _Context) -> Config:
    if data is None:
        raise ConfigError("", "the configuration is empty; it needs a 'targets' list")
    if not isinstance(data, dict):
        raise ConfigError("", f"the top level must be a mapping with a 'targets' key, got {describe(data)}")
    top = mapping_of(data, "", TOP_KEYS)
    targets = _required(top, "", "targets")
    if not isinstance(targets, list):
        raise ConfigError("targets", f"expected a list of targets, got {describe(targets)}")
    return Config(
        targets=tuple(_target(item, f"targets[{index}]", context) for index, item in enumerate(targets)),
        collection=_collection(top.get("collection"), "collection"),
    )


def _target(value: object, path: str, context: _Context) -> TargetConfig:
    target = mapping_of(value, path, TARGET_KEYS)
    if _present(target, "projects"):
        return _projects_target(target, path, context)
    region = string(_required(target, path, "region"), join(path, "region"))
    if "project_id" not in target:
        raise ConfigError(
            join(path, "project_id"),
            "is required (or give projects: all to poll every project the credential may use)",
        )
    project_id = string(_required(target, path, "project_id"), join(path, "project_id"))
    name = string(target["name"], join(path, "name")) if _present(target, "name") else project_id

    endpoints: dict[str, str] = {}
    for key in ("endpoint", "iam_endpoint"):
        if _present(target, key):
            endpoints[key] = _strip_slash(string(target[key], join(path, key)))
        else:
            endpoints[key] = _endpoint_default(context, path, key, region)

    watching = _watching(target, path, context)
    with _under(path):
        config = TargetConfig(
            name=name,
            region=region,
            project_id=project_id,
            endpoint=endpoints["endpoint"],
            iam_endpoint=endpoints["iam_endpoint"],
            **watching,
        )
    _warn_about(config, path)
    return config


def _watching(target: dict[str, object], path: str, context: _Context) -> dict[str, Any]:
    """The settings every kind of target has: credentials and what to watch."""
    clusters = strings(target["clusters"], join(path, "clusters")) if _present(target, "clusters") else ()
    jobs = _jobs(target.get("jobs"), join(path, "jobs"))
    ca_bundle = None
    if _present(target, "ca_bundle"):
        ca_bundle = _ca_bundle(
            context.resolve(string(target["ca_bundle"], join(path, "ca_bundle"))), join(path, "ca_bundle")
        )
    insecure = False
    if _present(target, "tls_insecure_skip_verify"):
        insecure = boolean(target["tls_insecure_skip_verify"], join(path, "tls_insecure_skip_verify"))
    if _present(target, "region_endpoints"):
        raise ConfigError(
            join(path, "region_endpoints"),
            "is only used with projects (one CDM endpoint per discovered region); "
            "a target with a project_id has one endpoint",
        )
    return {
        "auth": _auth(_required(target, path, "auth"), join(path, "auth"), context),
        "clusters": tuple(dict.fromkeys(clusters)),
        "jobs": jobs,
        "ca_bundle": ca_bundle,
        "tls_insecure_skip_verify": insecure,
    }


def _projects_target(target: dict[str, object], path: str, context: _Context) -> TargetConfig:
    """A target that discovers its projects through IAM (``projects: all`` or a selection)."""
    for key in ("project_id", "region"):
        if key in target:
            hint = (
                "give either project_id or projects, not both"
                if key == "project_id"
                else "each discovered project is polled in its own region (iam_endpoint chooses the "
                "IAM endpoint); remove it"
            )
            raise ConfigError(join(path, key), f"is not used with projects: {hint}")
    selection = _projects(target["projects"], join(path, "projects"))
    if "name" not in target:
        raise ConfigError(
            join(path, "name"), "is required with projects (/probe?target=NAME selects the target)"
        )
    name = string(_required(target, path, "name"), join(path, "name"))

    # Like one project's endpoint: what the file says, else the SDK's variables, else derived.
    explicit: dict[str, str] = {}
    if _present(target, "region_endpoints"):
        explicit = _region_endpoints(target["region_endpoints"], join(path, "region_endpoints"))
    if _present(target, "endpoint"):
        template = _strip_slash(string(target["endpoint"], join(path, "endpoint")))
        from_env: dict[str, str] = {}
    else:
        template = DEFAULT_ENDPOINT_TEMPLATE
        from_env = _env_region_endpoints(context, path)
    if _present(target, "iam_endpoint"):
        iam_endpoint = _strip_slash(string(target["iam_endpoint"], join(path, "iam_endpoint")))
    else:
        iam_endpoint = (
            _env_endpoint(context, ENV_IAM_ENDPOINT, join(path, "iam_endpoint")) or GLOBAL_IAM_ENDPOINT
        )

    watching = _watching({k: v for k, v in target.items() if k != "region_endpoints"}, path, context)
    with _under(path):
        config = TargetConfig(
            name=name,
            region="",
            project_id="",
            endpoint=template,
            iam_endpoint=iam_endpoint,
            projects=selection,
            region_endpoints=tuple(sorted({**from_env, **explicit}.items())),
            **watching,
        )
    _warn_about(config, path)
    return config


def _projects(value: object, key: str) -> ProjectSelection:
    if value == "all":
        return ProjectSelection(all_projects=True)
    if isinstance(value, str):
        raise ConfigError(
            key,
            f"expected all or a list of region IDs and project-name globs, got the string {value!r}; "
            "write a list: [...]",
        )
    if not isinstance(value, list) or not value:
        got = "an empty list" if isinstance(value, list) else describe(value)
        raise ConfigError(key, f"expected all or a list of region IDs and project-name globs, got {got}")
    patterns = tuple(dict.fromkeys(string(item, f"{key}[{index}]") for index, item in enumerate(value)))
    with _under(key):
        return ProjectSelection(patterns=patterns)


def _region_endpoints(value: object, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping of region ID to CDM endpoint, got {describe(value)}")
    endpoints: dict[str, str] = {}
    for region, url in value.items():
        where = user_key(path, region)
        if not isinstance(region, str) or not is_region_id(region):
            raise ConfigError(
                where, "is not a region ID; expected lower-case words joined by '-', like cn-north-4"
            )
        endpoints[region] = _strip_slash(string(url, where))
    return endpoints


def _env_region_endpoints(context: _Context, path: str) -> dict[str, str]:
    """``HUAWEICLOUD_SDK_REGION_CDM_<REGION>`` variables: the CDM endpoints they override."""
    endpoints: dict[str, str] = {}
    for variable in sorted(context.env):
        if not variable.startswith(_CDM_ENDPOINT_ENV_PREFIX):
            continue
        region = variable[len(_CDM_ENDPOINT_ENV_PREFIX) :].lower().replace("_", "-")
        if not is_region_id(region):
            raise ConfigError(variable, f"names no region (expected {cdm_endpoint_env_var('cn-north-4')})")
        url = _env_endpoint(context, variable, join(path, "region_endpoints"))
        if url is not None:
            endpoints[region] = url
    return endpoints


def _strip_slash(url: str) -> str:
    # "https://host/" is fine to write; the client appends "/v1.1/..." to what is stored.
    return url[:-1] if url.endswith("/") and not url.endswith("//") else url


def _endpoint_default(context: _Context, path: str, key: str, region: str) -> str:
    """The derived endpoint, unless the SDK's environment variable overrides it."""
    if key == "endpoint":
        variable, derived = cdm_endpoint_env_var(region), default_endpoint(region)
    else:
        variable, derived = ENV_IAM_ENDPOINT, default_iam_endpoint(region)
    return _env_endpoint(context, variable, join(path, key)) or derived


def _env_endpoint(context: _Context, variable: str, overrides: str) -> str | None:
    """The endpoint an SDK variable sets, checked, or ``None`` when it is unset or blank."""
    override = context.env.get(variable, "").strip()
    if not override:
        return None
    # The SDK accepts a comma-separated list for fail-over; one session per target uses the first.
    url = _strip_slash(override.split(",")[0].strip())
    problem = endpoint_problem(url)
    if problem:
        raise ConfigError(variable, f"(overrides {overrides}) {problem}")
    return url


def _ca_bundle(path: str, key: str) -> str:
    """Check the CA bundle is a readable PEM file now, rather than at the first TLS handshake."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 22)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(key, f"cannot read CA bundle {path}: {reason}") from None
    except ValueError:
        raise ConfigError(key, f"{path!r} is not a usable file path") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise ConfigError(key, f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return path


def _jobs(value: object, path: str) -> JobsFilter:
    if value is None:
        return JobsFilter()
    jobs = mapping_of(value, path, JOBS_KEYS)
    changes: dict[str, Any] = {}
    for key in JOBS_KEYS:
        if _present(jobs, key):
            items = strings(jobs[key], join(path, key))
            changes[key] = tuple(dict.fromkeys(items)) if key == "types" else items
    with _under(path):
        return dataclasses.replace(JobsFilter(), **changes)


def _auth(value: object, path: str, context: _Context) -> AuthConfig:
    auth = mapping_of(value, path, AUTH_KEYS)
    given = [key for key in AUTH_KEYS if _present(auth, key)]
    if not given:
        empty = [key for key in AUTH_KEYS if key in auth]
        if empty:
            raise ConfigError(join(path, empty[0]), "is empty")
        raise ConfigError(path, "needs one auth mode: token (or token_file, token_env), password, or aksk")
    modes = sorted({"token" if key.startswith("token") else key for key in given})
    if len(modes) > 1:
        raise ConfigError(path, f"give exactly one auth mode, not {' and '.join(modes)}")
    if modes[0] == "token":
        token, token_key = _secret(auth, path, "token", context)
        return TokenAuthConfig(token=token, sources=(token_key,))
    if modes[0] == "password":
        sub = join(path, "password")
        password = mapping_of(auth["password"], sub, PASSWORD_KEYS)
        domain_key, user_key = join(sub, "domain"), join(sub, "user")
        domain = _single_line(string(_required(password, sub, "domain"), domain_key), domain_key)
        user = _single_line(string(_required(password, sub, "user"), user_key), user_key)
        secret, password_key = _secret(password, sub, "password", context)
        return PasswordAuthConfig(
            domain=domain, user=user, password=secret, sources=(domain_key, user_key, password_key)
        )
    sub = join(path, "aksk")
    aksk = mapping_of(auth["aksk"], sub, AKSK_KEYS)
    access_key, access_key_key = _access_key(aksk, sub, context)
    secret_key, secret_key_key = _secret(aksk, sub, "secret_key", context)
    security_token = _optional_secret(aksk, sub, "security_token", context)
    return AkSkAuthConfig(
        access_key=access_key,
        secret_key=secret_key,
        security_token=security_token[0] if security_token else None,
        sources=(access_key_key, secret_key_key) + ((security_token[1],) if security_token else ()),
    )


def _chosen(mapping: dict[str, object], path: str, alternatives: tuple[str, ...]) -> str | None:
    """Which one of ``alternatives`` (``x``, ``x_file``, ``x_env``) is given; more than one is an error."""
    given = [key for key in alternatives if _present(mapping, key)]
    if len(given) > 1:
        raise ConfigError(path, f"{' and '.join(given)} are alternatives; give only one")
    return given[0] if given else None


def _missing(mapping: dict[str, object], path: str, alternatives: tuple[str, ...]) -> ConfigError:
    empty = next((key for key in alternatives if key in mapping), None)
    state = "is empty" if empty else "is required"
    others = " or ".join(alternatives[1:])
    return ConfigError(join(path, empty or alternatives[0]), f"{state} (or give {others})")


def _secret(mapping: dict[str, object], path: str, base: str, context: _Context) -> tuple[Secret, str]:
    """The secret under ``base``, ``base_file`` or ``base_env``, and the key it was read from."""
    alternatives = (base, f"{base}_file", f"{base}_env")
    chosen = _chosen(mapping, path, alternatives)
    if chosen is None:
        raise _missing(mapping, path, alternatives)
    return _read_secret(mapping, path, chosen, context), join(path, chosen)


def _optional_secret(
    mapping: dict[str, object], path: str, base: str, context: _Context
) -> tuple[Secret, str] | None:
    chosen = _chosen(mapping, path, (base, f"{base}_file", f"{base}_env"))
    return None if chosen is None else (_read_secret(mapping, path, chosen, context), join(path, chosen))


def _read_secret(mapping: dict[str, object], path: str, chosen: str, context: _Context) -> Secret:
    """The secret under ``chosen``: inline, from the file it names, or from the variable it names."""
    key = join(path, chosen)
    text = string(mapping[chosen], key)
    if chosen.endswith("_file"):
        return read_secret_file(context.resolve(text), key)
    if chosen.endswith("_env"):
        return secret_from_env(context.env, text, key)
    context.inline_secrets.append(key)
    return secret_from_text(text, key, "the value")


def _access_key(aksk: dict[str, object], path: str, context: _Context) -> tuple[str, str]:
    """The access key and the key it was read from."""
    alternatives = ("access_key", "access_key_env")
    chosen = _chosen(aksk, path, alternatives)
    if chosen is None:
        raise _missing(aksk, path, alternatives)
    key = join(path, chosen)
    text = string(aksk[chosen], key)
    value = secret_from_env(context.env, text, key).reveal() if chosen.endswith("_env") else text
    if re.search(r"\s", value):
        raise ConfigError(key, "is not an access key (it contains whitespace)")
    return value, key


def _collection(value: object, path: str) -> CollectionConfig:
    if value is None:
        return CollectionConfig()
    collection = mapping_of(value, path, COLLECTION_KEYS)
    changes: dict[str, Any] = {}
    for key in COLLECTION_KEYS:
        if not _present(collection, key):
            continue
        where = join(path, key)
        if key == "concurrency":
            changes[key] = integer(collection[key], where)
        elif key == "budget_per_minute":
            changes[key] = _budget(collection[key], where)
        elif key in ("budget_scope", "status_series"):
            changes[key] = string(collection[key], where)
        else:  # every other collection setting is a duration in seconds
            changes[key] = parse_duration(collection[key], where)
    with _under(path):
        return dataclasses.replace(CollectionConfig(), **changes)


def _budget(value: object, path: str) -> BudgetConfig:
    budget = mapping_of(value, path, BUDGET_KEYS)
    changes = {key: integer(budget[key], join(path, key)) for key in BUDGET_KEYS if _present(budget, key)}
    with _under(path):
        config = dataclasses.replace(BudgetConfig(), **changes)
    for key in BUDGET_KEYS:
        if getattr(config, key) > BUDGET_WARN_ABOVE:
            log.warning(
                "%s: %d requests per minute leaves little of the API's 120/min per user for anything else",
                join(path, key),
                getattr(config, key),
                extra={"key": join(path, key)},
            )
    return config


def _warn_about(target: TargetConfig, path: str) -> None:
    """Warnings for settings that work but weaken security."""
    urls = [(key, getattr(target, key)) for key in ("endpoint", "iam_endpoint")]
    urls += [(f"region_endpoints.{region}", url) for region, url in target.region_endpoints]
    for key, url in urls:
        if is_plain_http_to_remote(url):
            log.warning(
                "%s: plain http:// to a non-loopback host sends credentials and tokens unencrypted",
                join(path, key),
                extra={"key": join(path, key), "target": target.name, "endpoint": url},
            )
    if target.tls_insecure_skip_verify:
        log.warning(
            "%s: TLS certificates are not verified; anyone on the path can read this target's credentials",
            join(path, "tls_insecure_skip_verify"),
            extra={"target": target.name},
        )
