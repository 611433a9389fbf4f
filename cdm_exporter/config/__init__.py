"""Typed, validated configuration of cdm-exporter, from a YAML file or ``HUAWEICLOUD_SDK_*`` variables.

Use :func:`load_config`; every problem raises :class:`ConfigError` naming the dotted key to fix.
"""

from cdm_exporter.api.secret import Secret

from .errors import ConfigError
from .loader import config_from_env, load_config, parse_config, parse_duration
from .model import (
    JOB_TYPES,
    STATUS_SERIES,
    AkSkAuthConfig,
    AuthConfig,
    BudgetConfig,
    CollectionConfig,
    Config,
    JobsFilter,
    PasswordAuthConfig,
    ProjectSelection,
    StatusSeries,
    TargetConfig,
    TokenAuthConfig,
)

__all__ = [
    "JOB_TYPES",
    "STATUS_SERIES",
    "AkSkAuthConfig",
    "AuthConfig",
    "BudgetConfig",
    "CollectionConfig",
    "Config",
    "ConfigError",
    "JobsFilter",
    "PasswordAuthConfig",
    "ProjectSelection",
    "Secret",
    "StatusSeries",
    "TargetConfig",
    "TokenAuthConfig",
    "config_from_env",
    "load_config",
    "parse_config",
    "parse_duration",
]
