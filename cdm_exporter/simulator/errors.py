"""Error bodies in the three shapes a CDM client meets.

* CDM service errors: ``{"errCode": "Cdm.0100", "externalMessage": "..."}``, almost always
  with HTTP 400 (docs/api-notes.md, "Errors");
* API gateway errors (before CDM is reached): ``{"error_code": "APIGW.0301", "error_msg":
  "...", "request_id": "..."}`` for 401/429/404 and friends;
* IAM errors (Keystone style): ``{"error": {"code": 401, "title": "...", "message": "..."}}``.
"""

from __future__ import annotations

from typing import Any

CDM_MESSAGES = {
    "Cdm.0000": "System error.",
    "Cdm.0001": "The resource does not exist or is invalid.",
    "Cdm.0004": "Invalid parameter type.",
    "Cdm.0009": "{} is not an integer or is beyond the value range [0, 2147483647].",
    "Cdm.0014": "Invalid parameter.",
    "Cdm.0021": "Failed to connect to server {}.",
    "Cdm.0024": "[{}] must be within the range of [{}].",
    "Cdm.0032": "You do not have required permissions. Check your permissions on IAM.",
    "Cdm.0036": "Internal error.",
    "Cdm.0052": "Job {} is running.",
    "Cdm.0053": "Job {} is not running.",
    "Cdm.0054": "Job {} does not exist.",
    "Cdm.0100": "Job[{}] doesn't exist.",
}

AUTH_FAILED = "APIGW.0301"
FORBIDDEN = "APIGW.0302"
THROTTLED = "APIGW.0308"
NOT_FOUND = "APIGW.0101"
BACKEND_UNAVAILABLE = "APIGW.0203"


def cdm_error(code: str, *args: str) -> dict[str, Any]:
    template = CDM_MESSAGES.get(code, "Error {}." if args else "Error.")
    return {"errCode": code, "externalMessage": template.format(*args) if "{}" in template else template}


def gateway_error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error_code": code, "error_msg": message, "request_id": request_id}


def auth_failure(sub_message: str, request_id: str) -> dict[str, Any]:
    return gateway_error(AUTH_FAILED, f"Incorrect IAM authentication information: {sub_message}", request_id)


def throttled(limit: int, request_id: str) -> dict[str, Any]:
    return gateway_error(
        THROTTLED,
        f"The throttling threshold has been reached: policy user over ratelimit,limit:{limit},time:1 minute",
        request_id,
    )


def not_found(request_id: str) -> dict[str, Any]:
    return gateway_error(
        NOT_FOUND, "The API does not exist or has not been published in the environment", request_id
    )


def iam_error(status: int, message: str) -> dict[str, Any]:
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        429: "Too Many Requests",
    }
    return {
        "error": {"code": status, "title": titles.get(status, "Internal Server Error"), "message": message}
    }


def default_fault_body(status: int, endpoint: str, error_code: str | None, request_id: str) -> dict[str, Any]:
    """The body a status fault sends when the fault gives none: the shape a real failure with
    that status would most plausibly have on that endpoint."""
    if endpoint in ("iam_token", "iam_projects"):
        return iam_error(status, f"Simulated IAM failure (HTTP {status}).")
    if error_code is not None:
        if error_code.startswith("Cdm."):
            return cdm_error(error_code, "simulated")
        return gateway_error(error_code, f"Simulated gateway error {error_code}.", request_id)
    if status == 401:
        return auth_failure("x-auth-token not found", request_id)
    if status == 403:
        return cdm_error("Cdm.0032")
    if status == 404:
        return not_found(request_id)
    if status == 429:
        return throttled(120, request_id)
    if status == 500:
        return cdm_error("Cdm.0000")
    if status in (502, 503, 504):
        return gateway_error(BACKEND_UNAVAILABLE, "Backend unavailable", request_id)
    return cdm_error("Cdm.0001")
