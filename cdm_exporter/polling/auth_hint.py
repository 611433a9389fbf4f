"""What to check when the API refuses a target's credentials: its settings by name, or the clock.

A bare ``HTTP 401 APIGW.0301`` says that something is wrong, not where. The hint names the
settings of that target (``targets[0].auth.aksk.secret_key_file``, or ``HUAWEICLOUD_SDK_SK`` for
a configuration from the environment), or the machine's clock when the API complains about the
date of an AK/SK signature.
"""

from __future__ import annotations

import re

from cdm_exporter.api.errors import AuthError
from cdm_exporter.config import AkSkAuthConfig, PasswordAuthConfig, TargetConfig, TokenAuthConfig

#: an API complaint about the date of a signature (X-Sdk-Date must be within 15 minutes of its clock)
_DATE_COMPLAINT = re.compile(r"x-sdk-date|\bdate\b|clock|timestamp|skew", re.IGNORECASE)
#: CDM's "no permission": the credential was accepted, the IAM user may not do this
_NO_PERMISSION = frozenset({"CDM.0032"})


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _settings(target: TargetConfig) -> tuple[str, list[str]]:
    """What the credential is made of, and where each part was set."""
    auth = target.auth
    if isinstance(auth, AkSkAuthConfig):
        parts = ["access key", "secret key"] + (["security token"] if auth.security_token else [])
        fallback = ["access_key", "secret_key / secret_key_file / secret_key_env"]
        fallback += ["security_token / _file / _env"] if auth.security_token else []
    elif isinstance(auth, PasswordAuthConfig):
        parts = ["domain", "user", "password"]
        fallback = ["domain", "user", "password / password_file / password_env"]
    else:
        parts, fallback = ["token"], ["token / token_file / token_env"]
    return _listed(parts), list(auth.sources) or fallback


def auth_hint(target: TargetConfig, error: AuthError) -> str:
    """One sentence telling the operator what to check about ``error`` on ``target``."""
    auth = target.auth
    if isinstance(auth, AkSkAuthConfig) and _DATE_COMPLAINT.search(error.message):
        return (
            "the API says the signature's date is off: check this machine's clock "
            "(it must be within 15 minutes of the API's; keep it synchronised with NTP)"
        )
    what, where = _settings(target)
    check = f"the {what} of target {target.name}: {_listed(where)}"
    if error.status == 403 or (error.code or "").upper() in _NO_PERMISSION:
        return f"check that the IAM user may read CDM (e.g. the CDM ReadOnlyAccess policy), and {check}"
    if isinstance(auth, TokenAuthConfig):
        return f"check {check} (an IAM token is valid for 24 hours and is not renewed)"
    return f"check {check}"
