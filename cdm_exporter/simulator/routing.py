"""From a raw request target to an endpoint, like the API gateway's router.

Job names travel as ONE percent-encoded path segment.  The raw path is split on ``/`` first and
each segment is decoded exactly once, so ``a%2Fb`` is the job ``a/b`` and ``100%2525`` is the
job ``100%25``.  Literal ``.``/``..`` segments are resolved as path navigation before routing
(RFC 3986), as real servers do, so only ``%2E%2E`` can name a job called ``..``.  Characters
that must be encoded in a path (space, quotes, ``#``, non-ASCII, ...) and malformed escapes are
rejected with 400: a client that forgets to encode is told so instead of being served by luck.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

# RFC 3986 pchar without pct-encoded: unreserved / sub-delims / ":" / "@"
_PCHAR = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadRequestTarget(ValueError):
    """The request target is not a valid, properly encoded URL path/query."""


@dataclass(frozen=True)
class Route:
    """Where a request goes. ``endpoint`` is ``unknown`` when nothing matched."""

    endpoint: str
    project_id: str | None = None
    cluster_id: str | None = None
    job_name: str | None = None


UNKNOWN = Route("unknown")


def split_target(target: str) -> tuple[str, str]:
    """Raw path and raw query of a request target (a fragment, never sent by clients, is dropped)."""
    target = target.split("#", 1)[0]
    path, _, query = target.partition("?")
    return path, query


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 on the raw (still encoded) path."""
    output: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                output.append("")
        elif seg == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(seg)
    return "/".join(output)


def decode_segment(segment: str) -> str:
    if not _PCHAR.match(segment):
        raise BadRequestTarget(f"path segment {segment!r} has characters that must be percent-encoded")
    if _BAD_ESCAPE.search(segment):
        raise BadRequestTarget(f"path segment {segment!r} has a malformed percent-escape")
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestTarget(f"path segment {segment!r} is not UTF-8 once decoded") from None


def decode_query(raw_query: str) -> dict[str, str]:
    """Query parameters (first value wins); ``+`` is a space."""
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequestTarget("query is not UTF-8 once decoded") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return params


def match(method: str, raw_path: str) -> Route:
    """Route a raw path. Raises :class:`BadRequestTarget` for a badly encoded path."""
    if not raw_path.startswith("/"):
        raise BadRequestTarget("the request target must be an absolute path")
    segs = [decode_segment(s) for s in remove_dot_segments(raw_path).split("/")[1:]]
    if any(s == "" for s in segs):
        return UNKNOWN
    if segs == ["v3", "auth", "tokens"]:
        return Route("iam_token") if method == "POST" else UNKNOWN
    if segs == ["v3", "auth", "projects"]:
        return Route("iam_projects") if method == "GET" else UNKNOWN
    if method != "GET" or len(segs) < 3 or segs[0] != "v1.1" or segs[2] != "clusters":
        return UNKNOWN
    project = segs[1]
    rest = segs[3:]
    if not rest:
        return Route("list_clusters", project)
    cluster = rest[0]
    rest = rest[1:]
    if not rest:
        return Route("cluster_detail", project, cluster)
    if rest == ["cdm", "submissions"]:
        return Route("submissions", project, cluster)
    if len(rest) == 3 and rest[:2] == ["cdm", "job"]:
        name = rest[2]
        return Route("list_jobs", project, cluster, None if name == "all" else name)
    if len(rest) == 4 and rest[:2] == ["cdm", "job"] and rest[3] == "status":
        return Route("job_status", project, cluster, rest[2])
    return UNKNOWN
