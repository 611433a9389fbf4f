"""The status page at ``/``: :mod:`status_data` rendered as HTML on the server.

It works without JavaScript: the job table is filtered, sorted and paginated here from the
query string (``?status=FAILED&q=orders&sort=-progress&page=2``), ``PAGE_ROWS`` rows a page, so
5,000 jobs never make a 5,000-row page. With JavaScript on, ``static/status.js`` takes over:
it refreshes from ``/api/v1/jobs`` and filters, sorts and paginates in the browser with the
same rules and the same markup (keep the two in step). Every string from the API goes through
:func:`html.escape`; the page has no inline script or style, so the strict
Content-Security-Policy the app sends needs no exception.
"""

from __future__ import annotations

import calendar
import html
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from cdm_exporter.web.status_data import (
    STATUS_GROUPS,
    Cluster,
    Job,
    Problem,
    StatusData,
    Target,
    status_group,
)

PAGE_ROWS = 200
#: seconds between two refreshes of the page by its script
REFRESH_SECONDS = 10
API_PATH = "/api/v1/jobs"
DEFAULT_SORT = "status"
#: longest ``q`` kept from the query string
MAX_QUERY = 200
CURRENT = ' aria-current="true"'
#: what an empty cell shows
EN_DASH = "\u2013"


#: sort key -> (column heading, the value a job is ordered by; None sorts last either way)
SORT_KEYS: dict[str, tuple[str, Callable[[Job], Any]]] = {
    "target": ("Target", lambda j: j["target"].lower()),
    "cluster": ("Cluster", lambda j: j["cluster_name"].lower()),
    "name": ("Job", lambda j: j["name"].lower()),
    "status": ("Status", lambda j: (STATUS_GROUPS.index(j["status_group"]), j["status"])),
    "progress": ("Progress", lambda j: j["progress_percent"]),
    "rows": ("Rows", lambda j: j["rows_written"]),
    "bytes": ("Bytes", lambda j: j["bytes_written"]),
    "last_success": ("Last success", lambda j: j["last_success_at"]),
    "refreshed": ("Refreshed", lambda j: j["refreshed_at"]),
}


@dataclass(frozen=True)
class View:
    """What the query string asks for: status filter, name filter, sort, page."""

    statuses: tuple[str, ...] = ()
    q: str = ""
    sort: str = DEFAULT_SORT  # a SORT_KEYS key, "-" in front for descending
    page: int = 1

    @classmethod
    def parse(cls, query_string: str) -> View:
        """Lenient: an unknown sort or a bad page number falls back to the default."""
        query = parse_qs(query_string)
        statuses = tuple(s for s in query.get("status", []) if s)
        q = (query.get("q") or [""])[0].strip()[:MAX_QUERY]
        sort = (query.get("sort") or [DEFAULT_SORT])[0]
        if sort.removeprefix("-") not in SORT_KEYS:
            sort = DEFAULT_SORT
        try:
            page = max(1, int((query.get("page") or ["1"])[0]))
        except ValueError:
            page = 1
        return cls(statuses, q, sort, page)

    def href(self, **change: Any) -> str:
        """A link to this view with ``change`` (fields of View) applied; defaults are left out."""
        view = replace(self, **change)
        pairs = [("status", s) for s in view.statuses]
        if view.q:
            pairs.append(("q", view.q))
        if view.sort != DEFAULT_SORT:
            pairs.append(("sort", view.sort))
        if view.page != 1:
            pairs.append(("page", str(view.page)))
        return "?" + urlencode(pairs, quote_via=quote) if pairs else "/"


@dataclass(frozen=True)
class Selection:
    rows: list[Job]
    matching: int
    page: int
    pages: int


def select(jobs: Sequence[Job], view: View) -> Selection:
    """The jobs of ``view``'s page: filtered, sorted, cut to ``PAGE_ROWS``."""
    needle = view.q.lower()
    chosen = [
        j
        for j in jobs
        if (not view.statuses or j["status"] in view.statuses)
        and (
            not needle
            or needle in j["name"].lower()
            or needle in j["cluster_name"].lower()
            or needle in j["target"].lower()
        )
    ]
    key = SORT_KEYS[view.sort.removeprefix("-")][1]
    # stable sorts: ties keep the data's order (target, cluster, name); empty values stay last
    present = [j for j in chosen if key(j) is not None]
    present.sort(key=key, reverse=view.sort.startswith("-"))
    ordered = present + [j for j in chosen if key(j) is None]
    pages = max(1, math.ceil(len(ordered) / PAGE_ROWS))
    page = min(view.page, pages)
    return Selection(ordered[(page - 1) * PAGE_ROWS : page * PAGE_ROWS], len(ordered), page, pages)


# --- formatting (static/status.js has the same rules) ------------------------------------------

e = html.escape


def _epoch(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _exact(stamp: str) -> str:
    return stamp.replace("T", " ").replace("Z", " UTC")


def _time(stamp: str | None, now: str, missing: str, missing_title: str) -> str:
    if stamp is None:
        return f'<span class="muted" title="{e(missing_title)}">{e(missing)}</span>'
    text = ago(_epoch(now) - _epoch(stamp))
    return f'<time datetime="{e(stamp)}" title="{e(_exact(stamp))}">{e(text)}</time>'


def _count(value: int | None) -> str:
    return EN_DASH if value is None else f"{value:,}"


def _bytes(value: int | None) -> str:
    if value is None:
        return EN_DASH
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{value} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


def _status(status: str, group: str) -> str:
    return f'<span class="status s-{e(group)}">{e(status)}</span>'


def _progress(job: Job) -> str:
    if job["status_group"] != "active":
        return ""
    percent = job["progress_percent"]
    if percent is None:
        return '<span class="muted" title="CDM reports no progress for this run">running</span>'
    whole = max(0, min(100, math.floor(percent)))
    return (
        f'<span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-valuenow="{whole}"><span class="fill w{whole}"></span></span> '
        f'<span class="pct">{whole}%</span>'
    )


def _error(job: Job) -> str:
    summary = job["error_summary"]
    if summary is None:
        return ""
    shown = f'<span class="error-text clamp">{e(summary or "(no summary)")}</span>'
    details = job["error_details"]
    if not details:
        return shown
    return f'<details><summary title="error details">{shown}</summary><pre>{e(details)}</pre></details>'


def _job_row(job: Job, now: str) -> str:
    rows_title = f"read {_count(job['rows_read'])}, written {_count(job['rows_written'])}"
    bytes_title = f"read {_count(job['bytes_read'])} bytes, written {_count(job['bytes_written'])} bytes"
    refreshed = _time(job["refreshed_at"], now, "not yet", "the status so far comes from the job list only")
    return (
        f'<tr class="job g-{e(job["status_group"])}">'
        f'<td class="target">{e(job["target"])}</td>'
        f'<td class="cluster" title="{e(job["cluster_id"])}">{e(job["cluster_name"])}</td>'
        f'<td class="name">{e(job["name"])}</td>'
        f"<td>{_status(job['status'], job['status_group'])}</td>"
        f'<td class="progress">{_progress(job)}</td>'
        f'<td class="num" title="{e(rows_title)}">{_count(job["rows_written"])}</td>'
        f'<td class="num" title="{e(bytes_title)}">{_bytes(job["bytes_written"])}</td>'
        f"<td>{_time(job['last_success_at'], now, 'none seen', 'no successful run known')}</td>"
        f"<td>{refreshed}</td>"
        f'<td class="error">{_error(job)}</td>'
        "</tr>"
    )


def _problem(problem: Problem) -> str:
    detail = f'<br><span class="detail">{e(problem["detail"])}</span>' if problem["detail"] else ""
    return f'<li class="problem p-{e(problem["severity"])}">{e(problem["message"])}{detail}</li>'


def _state(value: bool | None, up: str, down: str, unknown: str) -> str:
    word, css = {True: (up, "ok"), False: (down, "bad"), None: (unknown, "unknown")}[value]
    return f'<span class="state {css}">{e(word)}</span>'


def _cluster_row(cluster: Cluster) -> str:
    status = cluster["status"] or "?"
    css = "ok" if status == "normal" else "bad"
    return (
        '<tr class="cluster">'
        f'<td class="indent">{e(cluster["name"])} <small>{e(cluster["id"])}</small></td>'
        f'<td><span class="state {css}">{e(status)}</span></td>'
        f"<td>{_state(cluster['job_list_up'], 'works', 'FAILING', 'not read yet')}</td>"
        f'<td class="num">{cluster["jobs"]:,}</td>'
        f'<td class="detail">{e(cluster["job_list_error"] or "")}</td>'
        "</tr>"
    )


def _target_rows(target: Target) -> str:
    probe = "/probe?target=" + quote(target["name"], safe="")
    budget = ", ".join(f"{policy} {left}" for policy, left in target["budget_remaining"].items())
    head = (
        '<tr class="target">'
        f'<th scope="row"><a href="{e(probe)}">{e(target["name"])}</a> '
        f"<small>{e(target['region'])} · {e(target['project_id'])}</small></th>"
        f"<td>{_state(target['up'], 'up', 'DOWN', 'not read yet')}</td>"
        "<td></td>"
        f'<td class="num">{sum(c["jobs"] for c in target["clusters"]):,}</td>'
        f'<td class="detail">{e(target["error"] or "")}'
        f'{" " if target["error"] else ""}<span class="muted">API budget left: {e(budget)}</span></td>'
        "</tr>"
    )
    return "<tbody>" + head + "".join(_cluster_row(c) for c in target["clusters"]) + "</tbody>"


def _counts(data: StatusData, view: View) -> str:
    """Links that filter by status: all jobs first, then each status (the data's order)."""
    entries: list[tuple[str, str, tuple[str, ...], int, bool]] = [
        ("all", "all", (), sum(data["counts"].values()), not view.statuses)
    ]
    entries += [
        (status_group(status), status, (status,), count, view.statuses == (status,))
        for status, count in data["counts"].items()
    ]
    return "".join(
        f'<li><a class="count s-{e(group)}" href="{e(view.href(statuses=statuses, page=1))}"'
        f"{CURRENT if current else ''}>{e(label)} <b>{count:,}</b></a></li>"
        for group, label, statuses, count, current in entries
    )


def _heading(key: str, view: View) -> str:
    label = SORT_KEYS[key][0]
    current = view.sort.removeprefix("-") == key
    descending = view.sort.startswith("-")
    target = f"-{key}" if current and not descending else key
    mark = (" ▼" if descending else " ▲") if current else ""
    sort_state = ("descending" if descending else "ascending") if current else "none"
    return (
        f'<th aria-sort="{sort_state}"><a class="sort" data-sort="{e(key)}" '
        f'href="{e(view.href(sort=target, page=1))}">{e(label)}{mark}</a></th>'
    )


def _options(values: Sequence[tuple[str, str]], selected: str) -> str:
    return "".join(
        f'<option value="{e(value)}"{" selected" if value == selected else ""}>{e(label)}</option>'
        for value, label in values
    )


def _pager(selection: Selection, view: View) -> str:
    def link(page: int, rel: str, text: str) -> str:
        return f'<a rel="{rel}" data-page="{page}" href="{e(view.href(page=page))}">{text}</a>'

    parts = [f"<span>page {selection.page} of {selection.pages}</span>"]
    if selection.page > 1:
        parts.insert(0, link(selection.page - 1, "prev", "« previous"))
    if selection.page < selection.pages:
        parts.append(link(selection.page + 1, "next", "next »"))
    return " ".join(parts)


def shown_line(selection: Selection, total: int) -> str:
    if selection.matching == 0:
        return f"No job matches (of {total:,})." if total else "No jobs known yet."
    first = (selection.page - 1) * PAGE_ROWS + 1
    last = first + len(selection.rows) - 1
    of = f"{selection.matching:,} matching of {total:,}" if selection.matching != total else f"{total:,}"
    return f"Jobs {first:,}{EN_DASH}{last:,} of {of}."


def _links(data: StatusData, telemetry_path: str) -> str:
    links = [(telemetry_path, "Metrics")]
    links += [("/probe?target=" + quote(t["name"], safe=""), f"probe {t['name']}") for t in data["targets"]]
    links += [(API_PATH, "JSON"), ("/-/healthy", "Health"), ("/-/ready", "Readiness")]
    return " · ".join(f'<a href="{e(href)}">{e(text)}</a>' for href, text in links)


def _filter_form(data: StatusData, view: View) -> str:
    statuses = [("", "all statuses"), *((s, s) for s in data["counts"])]
    statuses += [(s, s) for s in view.statuses if s not in data["counts"]]  # filtered, none right now
    sorts = [
        (f"{prefix}{key}", f"{label} {'▼' if prefix else '▲'}")
        for key, (label, _) in SORT_KEYS.items()
        for prefix in ("", "-")
    ]
    query = (
        f'<input type="search" name="q" value="{e(view.q)}" maxlength="{MAX_QUERY}" '
        'placeholder="job, cluster or target">'
    )
    return (
        '<form id="filter" method="get" action="/">'
        f'<label>Status <select name="status">'
        f"{_options(statuses, view.statuses[0] if view.statuses else '')}</select></label> "
        f"<label>Name {query}</label> "
        f'<label>Sort <select name="sort">{_options(sorts, view.sort)}</select></label> '
        '<button type="submit">Apply</button></form>'
    )


def _clusters_table(data: StatusData) -> str:
    headings = ("Target / cluster", "Status", "Job list", "Jobs", "Details")
    head = "".join(f'<th scope="col">{h}</th>' for h in headings)
    body = "".join(_target_rows(t) for t in data["targets"])
    return f'<table id="targets" class="clusters"><thead><tr>{head}</tr></thead>{body}</table>'


def _jobs_table(rows: Sequence[Job], view: View, now: str) -> str:
    head = "".join(_heading(key, view) for key in SORT_KEYS) + '<th scope="col">Error</th>'
    body = "".join(_job_row(j, now) for j in rows)
    return f'<table id="jobs" class="jobs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_page(data: StatusData, view: View, *, telemetry_path: str, assets: Mapping[str, str]) -> str:
    """The whole page; ``assets`` maps ``"css"`` and ``"js"`` to their URLs."""
    now = data["generated_at"]
    selection = select(data["jobs"], view)
    total = len(data["jobs"])
    failed = sum(1 for j in data["jobs"] if j["status_group"] == "failed")
    title = f"cdm-exporter: {total:,} jobs, {failed:,} failed"
    freshness = (
        f'Data as of <time datetime="{e(now)}">{e(_exact(now))}</time>. '
        '<span id="live">Reload the page for newer data.</span>'
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{e(title)}</title>
<link rel="stylesheet" href="{e(assets["css"])}">
<script src="{e(assets["js"])}" defer></script>
</head>
<body data-api="{e(API_PATH)}" data-refresh="{REFRESH_SECONDS}" data-page-rows="{PAGE_ROWS}">
<header>
<h1>cdm-exporter <small>{e(data["exporter_version"])}</small></h1>
<nav class="links">{_links(data, telemetry_path)}</nav>
<p id="freshness">{freshness}</p>
</header>
<main>
<ul id="problems" class="problems" aria-live="polite">{"".join(_problem(p) for p in data["problems"])}</ul>
<ul id="counts" class="counts">{_counts(data, view)}</ul>
<section>
<h2>Targets and clusters</h2>
{_clusters_table(data)}
</section>
<section>
<h2>Jobs</h2>
{_filter_form(data, view)}
<p id="shown">{e(shown_line(selection, total))}</p>
<div class="scroll">{_jobs_table(selection.rows, view, now)}</div>
<nav id="pager" class="pager">{_pager(selection, view)}</nav>
</section>
</main>
</body>
</html>
"""
