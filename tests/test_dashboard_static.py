"""Static checks of grafana/cdm-exporter.json and of the metric names used by the rules.

- The JSON is valid, is what grafana/build_dashboard.py generates, and has the datasource and template
  variables; every panel has a description, a unique id and a gridPos inside the grid, with no overlap;
  every datasource reference is the ${datasource} variable (no hard-coded uid).
- Every metric name that the dashboard, prometheus/alerts.yml and prometheus/recording.yml use is a
  contract metric, a recording rule of prometheus/recording.yml, the documented override series, or a
  standard Prometheus series, and every label matcher names a label that series has.
- The contract list here is the table in README.md ("Metrics"), and every cdm_* series of the golden
  exposition is in that table with exactly its labels.
- Every PromQL expression parses: promtool check rules on a throwaway rules file, with the template
  variables replaced by regex values (All = ".*", a multi-selection = "(a|b)").
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import (
    DASHBOARD_PATH,
    REPO_ROOT,
    RULES_DIR,
    DashboardQuery,
    dashboard_queries,
    label_values_query,
    promtool,
    require_prometheus_tools,
)

GENERATOR_PATH = REPO_ROOT / "grafana" / "build_dashboard.py"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# The metric contract (README.md, "Metrics"): name -> labels the exporter sets (Prometheus adds instance
# and job). test_contract_matches_the_readme keeps this in step with the README.
JOB_IDS = frozenset({"cluster_id", "cluster_name", "job_name"})
JOB_INFO = JOB_IDS | {
    "job_type",
    "external_id",
    "creation_user",
    "last_update_user",
    "incremental",
    "execute_auto",
    "delete_after_run",
    "stopping_increment",
    "from_connector",
    "to_connector",
    "from_link",
    "to_link",
}
JOB_GAUGES = (
    "cdm_job_progress_ratio",
    "cdm_job_submission_id",
    "cdm_job_creation_timestamp_seconds",
    "cdm_job_execute_timestamp_seconds",
    "cdm_job_last_update_timestamp_seconds",
    "cdm_job_read_rows",
    "cdm_job_written_rows",
    "cdm_job_skipped_rows",
    "cdm_job_read_bytes",
    "cdm_job_written_bytes",
    "cdm_job_total_size_bytes",
    "cdm_job_read_files",
    "cdm_job_written_files",
    "cdm_job_skipped_files",
    "cdm_job_total_files",
    "cdm_job_write_rows",
    "cdm_job_update_rows",
    "cdm_job_delete_rows",
    "cdm_job_last_success_timestamp_seconds",
    "cdm_job_refresh_timestamp_seconds",
)
CONTRACT: dict[str, frozenset[str]] = {
    "cdm_job_status": JOB_IDS | {"status"},
    **dict.fromkeys(JOB_GAUGES, JOB_IDS),
    "cdm_job_info": JOB_INFO,
    "cdm_job_error_info": JOB_IDS | {"error_summary"},
    "cdm_cluster_info": frozenset({"cluster_id", "cluster_name", "project_id", "region", "version"}),
    "cdm_cluster_status": frozenset({"cluster_id", "cluster_name", "status"}),
    "cdm_up": frozenset({"project_id", "region"}),
    "cdm_cluster_up": frozenset({"cluster_id", "cluster_name"}),
    "cdm_scrape_duration_seconds": frozenset(),
    "cdm_api_requests_total": frozenset({"endpoint", "code"}),
    "cdm_api_request_duration_seconds_bucket": frozenset({"endpoint", "le"}),
    "cdm_api_request_duration_seconds_sum": frozenset({"endpoint"}),
    "cdm_api_request_duration_seconds_count": frozenset({"endpoint"}),
    "cdm_exporter_build_info": frozenset({"version"}),
    # Added to the first version of the contract, for the dashboard.
    "cdm_api_budget_remaining": frozenset({"project_id", "region", "policy"}),
    # Account-wide discovery (projects targets).
    "cdm_project_info": frozenset({"project_id", "project_name", "region"}),
    "cdm_project_unavailable": frozenset({"project_id", "region", "reason"}),
    "cdm_project_discovery_up": frozenset({"target"}),
    # The state store (file or Redis) and which replica polls.
    "cdm_exporter_storage_up": frozenset(),
    "cdm_exporter_leader": frozenset(),
    # Run history (issue 15).
    "cdm_job_runs_total": JOB_IDS,
    "cdm_job_run_failures_total": JOB_IDS,
    "cdm_job_last_run_duration_seconds": JOB_IDS,
    "cdm_job_last_failure_timestamp_seconds": JOB_IDS,
    "cdm_job_history_timestamp_seconds": JOB_IDS,
}
TARGET_LABELS = frozenset({"instance", "job"})
# Series Prometheus itself writes; None = any label.
STANDARD: dict[str, frozenset[str] | None] = {
    "up": TARGET_LABELS,
    "scrape_duration_seconds": TARGET_LABELS,
    "ALERTS": None,
    "ALERTS_FOR_STATE": None,
}
# Labels of each recording rule's output (a new rule must be declared here).
RECORDED: dict[str, frozenset[str]] = {
    "cluster:cdm_job_status:sum": frozenset({"cluster_id", "cluster_name", "status"}),
    "cluster_job:cdm_job_status:code": JOB_IDS | TARGET_LABELS,
    "cluster_job:cdm_job_written_rows:rate5m": JOB_IDS | TARGET_LABELS,
    "cluster_job:cdm_job_written_bytes:rate5m": JOB_IDS | TARGET_LABELS,
    "cdm:job_success_max_age_seconds:default": frozenset(),
    "cluster_job:cdm_job_success_max_age_seconds": JOB_IDS,
    "cluster_job:cdm_job_runs:increase1d": JOB_IDS | TARGET_LABELS,
    "cluster_job:cdm_job_run_failures:increase1d": JOB_IDS | TARGET_LABELS,
    "cluster_job:cdm_job_run_failures_per_run:ratio1d": JOB_IDS | TARGET_LABELS,
    "cluster_job:cdm_job_run_failures_per_run:ratio7d": JOB_IDS | TARGET_LABELS,
    "cdm:job_failure_ratio_max:default": frozenset(),
    "cluster_job:cdm_job_failure_ratio_max": JOB_IDS,
}
# Optional series users define in a rules file of their own (documented in prometheus/recording.yml).
USER_OVERRIDES: dict[str, frozenset[str]] = {
    "cdm_job:success_max_age_seconds:override": frozenset({"cluster_name", "job_name"}),
    "cdm_job:failure_ratio_max:override": frozenset({"cluster_name", "job_name"}),
}
# Grafana's own interval variables, valid only inside a range selector [...].
INTERVAL_VARIABLES = {"__rate_interval", "__interval", "__range"}
TEMPLATE_VARIABLES = ("project", "region", "cluster", "job")


# --- a small PromQL reader: the vector selectors of an expression ---------------------------------

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<var>\$\{\w+\}|\$\w+)
    |(?P<number>(?:\d|\.\d)[\w.]*)
    |(?P<ident>[A-Za-z_:][\w:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],:@])
    """,
    re.VERBOSE,
)
AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}  # fmt: skip
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)


class PromQLError(ValueError):
    pass


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if match is None:
            raise PromQLError(f"unexpected {expr[pos : pos + 10]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        pos = match.end()
    return tokens


def unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def selectors(expr: str) -> list[Selector]:
    """Vector selectors of ``expr``. Raises PromQLError on a template variable outside a label matcher
    value, or on an interval variable outside a range."""
    tokens = tokenize(expr)
    found: list[Selector] = []

    def text(i: int) -> str:
        return tokens[i][1] if i < len(tokens) else ""

    def skip_until(i: int, closing: str) -> int:
        while i < len(tokens) and tokens[i][1] != closing:
            kind, value = tokens[i]
            if kind == "var" and (closing != "]" or value.strip("${}") not in INTERVAL_VARIABLES):
                raise PromQLError(f"variable {value} outside a label matcher value in {expr!r}")
            i += 1
        return i + 1

    def matchers(i: int) -> tuple[tuple[tuple[str, str, str], ...], int]:
        assert text(i) == "{"
        i += 1
        result = []
        while text(i) != "}":
            label, op, value = tokens[i : i + 3]
            if label[0] != "ident" or op[0] != "op" or value[0] != "string":
                raise PromQLError(f"cannot read the label matchers of {expr!r}")
            result.append((label[1], op[1], unquote(value[1])))
            i += 3
            if text(i) == ",":
                i += 1
        return tuple(result), i + 1

    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "var":
            raise PromQLError(f"variable {value} outside a label matcher value in {expr!r}")
        if value == "[":
            i = skip_until(i + 1, "]")
        elif value == "{":
            ms, i = matchers(i)
            names = [v for label, op, v in ms if label == "__name__" and op == "="]
            found.append(Selector(names[0] if names else "", ms))
        elif kind == "ident":
            lower = value.lower()
            if lower in GROUPING and text(i + 1) == "(":
                i = skip_until(i + 2, ")")
            elif lower in KEYWORDS or value in AGGREGATORS or text(i + 1) == "(" or lower in GROUPING:
                i += 1
            elif text(i + 1) == "{":
                ms, i = matchers(i + 1)
                found.append(Selector(value, ms))
            else:
                found.append(Selector(value, ()))
                i += 1
        else:
            i += 1
    return found


def test_selector_reader() -> None:
    assert selectors('sum by (status) (cluster:cdm_job_status:sum{cluster_name=~"$cluster"})') == [
        Selector("cluster:cdm_job_status:sum", (("cluster_name", "=~", "$cluster"),))
    ]
    expr = (
        "histogram_quantile(0.9, sum by (le, endpoint) "
        "(rate(cdm_api_request_duration_seconds_bucket[$__rate_interval])))"
    )
    assert selectors(expr) == [Selector("cdm_api_request_duration_seconds_bucket", ())]
    expr = (
        'a and on (instance) group_left () (b{x="1", y!~"a\\"b"} == bool 1) or vector(0) offset 5m * 2 + Inf'
    )
    assert selectors(expr) == [Selector("a", ()), Selector("b", (("x", "=", "1"), ("y", "!~", 'a"b')))]
    assert selectors('{__name__="up", job="x"}')[0].name == "up"
    assert selectors('label_replace(up, "dst", "$1", "src", "(.*)")') == [Selector("up", ())]
    assert selectors("quantile by (c) (0.5, time() - m)") == [Selector("m", ())]
    with pytest.raises(PromQLError, match="outside a label matcher"):
        selectors("topk($n, up)")
    with pytest.raises(PromQLError, match="outside a label matcher"):
        selectors("rate(up[$cluster])")


# --- the dashboard --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_PATH.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every dict entry in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def expressions(dashboard: dict[str, Any]) -> list[DashboardQuery]:
    return dashboard_queries(dashboard)


def test_dashboard_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.render()
    assert DASHBOARD_PATH.read_text() == text, (
        "grafana/cdm-exporter.json is stale: run grafana/build_dashboard.py"
    )
    assert text.startswith('{\n  "annotations"'), "2-space indented JSON"


def test_dashboard_basics(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "cdm-exporter"
    assert dashboard["title"]
    assert 39 <= dashboard["schemaVersion"] < 42
    assert dashboard["id"] is None


def test_datasource_variable_is_used_everywhere(dashboard: dict[str, Any]) -> None:
    (ds,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    references = [(path, value) for path, key, value in walk(dashboard) if key == "datasource"]
    assert len(references) > 40
    bad = [(path, value) for path, value in references if value != DATASOURCE]
    assert bad == [], "every datasource must be the ${datasource} variable"
    uids = [(path, value) for path, key, value in walk(dashboard) if key == "uid" and path]
    assert {value for _, value in uids} == {"${datasource}"}, f"hard-coded uid: {uids}"
    for p in panels(dashboard):
        if p["type"] != "row":
            assert p["targets"], f"panel {p['id']} has no query"
            assert all(t["datasource"] == DATASOURCE for t in p["targets"])


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["datasource", *TEMPLATE_VARIABLES]
    for name in TEMPLATE_VARIABLES:
        v = variables[name]
        assert v["type"] == "query"
        assert v["datasource"] == DATASOURCE
        assert v["multi"] is True and v["includeAll"] is True and v["allValue"] == ".*"
        assert v["query"]["query"] == v["definition"]
        selector, label = label_values_query(v["definition"])
        (sel,) = selectors(selector)
        assert sel.name in CONTRACT, f"${name} must list values of a contract metric: {sel.name}"
        assert label in CONTRACT[sel.name], f"${name}: {sel.name} has no label {label}"
    # Each variable narrows the next one.
    assert "$project" in variables["region"]["definition"]
    assert (
        "$project" in variables["cluster"]["definition"] and "$region" in variables["cluster"]["definition"]
    )
    assert "$cluster" in variables["job"]["definition"]


def test_panels_have_description_unique_id_and_grid_position(dashboard: dict[str, Any]) -> None:
    all_panels = list(panels(dashboard))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    occupied: dict[tuple[int, int], int] = {}
    for p in all_panels:
        assert p.get("title"), p["id"]
        assert len(p.get("description", "")) >= 20, f"panel {p['id']} {p['title']!r} needs a description"
        grid = p["gridPos"]
        assert set(grid) == {"x", "y", "w", "h"} and all(isinstance(grid[k], int) for k in grid), p["id"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= GRID_WIDTH, f"panel {p['id']} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = occupied.setdefault((x, y), p["id"])
                assert other == p["id"], f"panels {other} and {p['id']} overlap at {(x, y)}"
    rows_used = {y for _, y in occupied}
    assert rows_used == set(range(max(rows_used) + 1)), "empty grid rows between panels"
    kinds = {p["type"] for p in all_panels}
    assert {"row", "stat", "bargauge", "table", "timeseries", "state-timeline"} <= kinds


def test_panels_carry_units(dashboard: dict[str, Any]) -> None:
    for p in panels(dashboard):
        if p["type"] in {"stat", "bargauge", "timeseries", "state-timeline"}:
            assert p["fieldConfig"]["defaults"].get("unit"), f"panel {p['id']} {p['title']!r} has no unit"
    by_title = {p["title"]: p for p in panels(dashboard)}
    assert by_title["Progress of running jobs"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert by_title["Bytes written per second"]["fieldConfig"]["defaults"]["unit"] == "Bps"
    assert by_title["Status refresh age"]["fieldConfig"]["defaults"]["unit"] == "s"
    assert by_title["Failure ratio per job"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert by_title["Last run duration per job"]["fieldConfig"]["defaults"]["unit"] == "s"
    table = override_properties(by_title["Jobs"])
    assert table["Progress"]["unit"] == "percentunit"
    assert table["Progress"]["custom.cellOptions"]["type"] == "gauge"
    assert table["Bytes written"]["unit"] == "bytes"
    assert table["Since last success"]["unit"] == "s"
    assert table["Last run started"]["unit"] == "dateTimeFromNow"


def override_properties(panel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        o["matcher"]["options"]: {prop["id"]: prop["value"] for prop in o["properties"]}
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byName"
    }


def status_colors(mapping: dict[str, Any]) -> dict[str, str]:
    return {m["text"]: m["color"] for m in mapping["options"].values()}


def test_status_colors(dashboard: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in panels(dashboard)}
    expected = {"FAILED": "red", "RUNNING": "blue", "SUCCEEDED": "green"}
    (table_mapping,) = override_properties(by_title["Jobs"])["Status"]["mappings"]
    (timeline_mapping,) = by_title["Job status timeline"]["fieldConfig"]["defaults"]["mappings"]
    bar_colors = {
        name: props["color"]["fixedColor"]
        for name, props in override_properties(by_title["Jobs by status"]).items()
    }
    for colors in (status_colors(table_mapping), status_colors(timeline_mapping), bar_colors):
        assert {k: colors[k] for k in expected} == expected


def test_status_timeline_codes_match_the_recording_rule(dashboard: dict[str, Any]) -> None:
    (rule,) = [r for r in recording_rules() if r["record"] == "cluster_job:cdm_job_status:code"]
    recorded = {
        int(code): status for status, code in re.findall(r'status="(\w+)"\}\s*\*\s*(\d+)', rule["expr"])
    }
    assert len(recorded) == 7
    (timeline,) = [p for p in panels(dashboard) if p["title"] == "Job status timeline"]
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    shown = {int(code): m["text"] for code, m in mapping["options"].items()}
    assert shown == {0: "OTHER", **recorded}


def test_table_transformations_are_wired(dashboard: dict[str, Any]) -> None:
    """Every query's value column is hidden or renamed, and every override names a column that exists."""
    tables = [p for p in panels(dashboard) if p["type"] == "table"]
    assert len(tables) == 3  # jobs, clusters, projects
    for p in tables:
        kinds = [t["id"] for t in p["transformations"]]
        assert kinds == ["merge", "organize"], p["title"]
        assert all(t["format"] == "table" and t["instant"] for t in p["targets"])
        organize = p["transformations"][1]["options"]
        refs = {t["refId"] for t in p["targets"]}
        value_columns = {f"Value #{ref}" for ref in refs}
        handled = set(organize["excludeByName"]) | set(organize["renameByName"])
        assert value_columns <= handled, f"{p['title']}: unnamed value columns {value_columns - handled}"
        named = {k for k in organize["indexByName"] | organize["renameByName"] if k.startswith("Value #")}
        assert named <= value_columns, (
            f"{p['title']}: columns of queries that do not exist: {named - value_columns}"
        )
        columns = set(organize["renameByName"].values())
        for name in override_properties(p):
            assert name in columns, f"{p['title']}: override for missing column {name!r}"
        # The merge joins on the identity labels: every query keeps cluster_id and cluster_name
        # (project_id and region in the projects table).
        identity = {"project_id", "region"} if p["title"] == "Projects" else {"cluster_id", "cluster_name"}
        for t in p["targets"]:
            by = re.match(r"(?:time\(\) - )?(?:max|sum) by \(([^)]*)\)", t["expr"])
            assert by, t["expr"]
            assert identity <= {s.strip() for s in by.group(1).split(",")}, t["expr"]


def test_required_panels_and_queries(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(e.expr for e in expressions(dashboard))
    for needle in (
        "cluster:cdm_job_status:sum",
        "cdm_up{",
        "cdm_cluster_up{",
        "time() - max by (cluster_id, cluster_name, job_name) (cdm_job_last_success_timestamp_seconds",
        "cdm_job_error_info",
        "rate(cdm_api_requests_total[$__rate_interval])",
        "histogram_quantile(0.99,",
        "time() - cdm_job_refresh_timestamp_seconds",
        "cdm_scrape_duration_seconds",
        "cdm_api_budget_remaining",
        "cluster_job:cdm_job_status:code",
        "cluster_job:cdm_job_written_rows:rate5m",
        "cluster_job:cdm_job_written_bytes:rate5m",
        "cluster_job:cdm_job_runs:increase1d",
        "cluster_job:cdm_job_run_failures:increase1d",
        "cluster_job:cdm_job_run_failures_per_run:ratio1d",
        "cluster_job:cdm_job_run_failures_per_run:ratio7d",
        "cdm_job_last_run_duration_seconds",
    ):
        assert needle in exprs, needle
    kinds = {p["title"]: p["type"] for p in panels(dashboard)}
    assert kinds["Job status timeline"] == "state-timeline"
    assert kinds["Jobs"] == "table"


# --- metric names and labels of the dashboard and the rules ----------------------------------------


def rule_groups(path: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups(RULES_DIR / "recording.yml") for r in g["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in rule_groups(RULES_DIR / "alerts.yml") for r in g["rules"]]


def known_series() -> dict[str, frozenset[str] | None]:
    """Every series name the dashboard and rules may use -> its labels (None = not checked)."""
    known: dict[str, frozenset[str] | None] = {
        name: labels | TARGET_LABELS for name, labels in CONTRACT.items()
    }
    known.update(STANDARD)
    known.update(RECORDED)
    known.update(USER_OVERRIDES)
    return known


def test_recording_rules_are_declared_and_used(dashboard: dict[str, Any]) -> None:
    names = [r["record"] for r in recording_rules()]
    assert sorted(names) == sorted(RECORDED), "declare the labels of a new recording rule in RECORDED"
    assert all(1 <= name.count(":") <= 2 for name in names), "level:metric[:operations]"
    used = {s.name for e in expressions(dashboard) for s in selectors(e.expr)}
    used |= {s.name for r in alert_rules() + recording_rules() for s in selectors(r["expr"])}
    assert set(names) <= used, f"unused recording rules: {set(names) - used}"
    dashboard_used = {s.name for e in expressions(dashboard) for s in selectors(e.expr)}
    assert {"cluster:cdm_job_status:sum", "cluster_job:cdm_job_status:code"} <= dashboard_used


@pytest.mark.parametrize("source", ["dashboard", "alerts.yml", "recording.yml"])
def test_only_known_metrics_and_labels(dashboard: dict[str, Any], source: str) -> None:
    if source == "dashboard":
        exprs = [(e.where, e.expr) for e in expressions(dashboard)]
    elif source == "alerts.yml":
        exprs = [(r["alert"], r["expr"]) for r in alert_rules()]
    else:
        exprs = [(r["record"], r["expr"]) for r in recording_rules()]
    assert exprs
    known = known_series()
    problems = []
    for where, expr in exprs:
        for sel in selectors(expr):
            if sel.name not in known:
                problems.append(f"{where}: {sel.name or '{...}'} is not a contract metric or recording rule")
                continue
            labels = known[sel.name]
            for label, _, _ in sel.matchers:
                if labels is not None and label not in labels and label != "__name__":
                    problems.append(f"{where}: {sel.name} has no label {label!r}")
    assert problems == []


def test_template_variables_only_in_regex_matchers(dashboard: dict[str, Any]) -> None:
    """Multi-value variables expand to (a|b): only =~ and !~ matchers can take them."""
    used: set[str] = set()
    for e in expressions(dashboard):
        for sel in selectors(e.expr):  # raises on a variable anywhere else
            for label, op, value in sel.matchers:
                names = set(re.findall(r"\$\{?(\w+)\}?", value))
                if names:
                    assert op in {"=~", "!~"}, f"{e.where}: ${names} in {label}{op}"
                    assert names <= set(TEMPLATE_VARIABLES), f"{e.where}: unknown variable {names}"
                    used |= names
    assert used == set(TEMPLATE_VARIABLES)


@pytest.mark.prometheus
def test_every_expression_parses(dashboard: dict[str, Any], tmp_path: Path) -> None:
    require_prometheus_tools()
    rules = []
    for e in expressions(dashboard):
        for mode, value in (("all", ".*"), ("some", "(cdm-c018|cdm-prod)")):
            expr = e.substituted(value)
            assert "$" not in expr, expr
            rules.append({"record": f"dashboard:{e.where}:{mode}", "expr": expr})
    assert len(rules) > 60
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_the_parse_check_catches_a_broken_expression(tmp_path: Path) -> None:
    require_prometheus_tools()
    path = tmp_path / "broken.yml"
    broken = {"groups": [{"name": "x", "rules": [{"record": "x:y:z", "expr": 'sum(up{job=~".*"}'}]}]}
    path.write_text(yaml.safe_dump(broken))
    result = promtool("check", "rules", str(path))
    assert result.returncode != 0
    assert "x:y:z" in result.stdout + result.stderr


# --- the contract list against the README and the exporter ------------------------------------------

README = REPO_ROOT / "README.md"
GOLDEN_EXPOSITION = REPO_ROOT / "tests" / "fixtures" / "golden" / "seed7.prom"


def contract_from_readme(text: str) -> dict[str, frozenset[str]]:
    """Metric name -> labels, read from the table of the README's "Metrics" section.

    A name without labels on a ``cdm_job_`` row has the job identity labels; ``…`` in a label list
    stands for them too. A histogram stands for its ``_bucket``, ``_sum`` and ``_count`` series.
    """
    section = text.split("\n## Metrics\n", 1)[1].split("\n#", 1)[0]
    contract: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        kind = cells[2]
        for entry in re.findall(r"`([^`]+)`", cells[1]):
            match = re.fullmatch(r"(\w+)(?:\{(.*)\})?", entry)
            assert match, f"README metric table: cannot read {entry!r}"
            name, label_list = match.groups()
            labels: set[str] = set()
            for label in (part.strip() for part in (label_list or "").split(",")):
                if label == "…":
                    labels |= JOB_IDS
                elif label:
                    labels.add(label)
            if label_list is None and name.startswith("cdm_job_"):
                labels = set(JOB_IDS)
            if kind == "histogram":
                contract[f"{name}_bucket"] = frozenset(labels | {"le"})
                contract[f"{name}_sum"] = contract[f"{name}_count"] = frozenset(labels)
            else:
                contract[name] = frozenset(labels)
    return contract


def test_contract_matches_the_readme() -> None:
    """The names and labels the dashboard and rules are checked against are the README's table."""
    documented = contract_from_readme(README.read_text())
    assert len(documented) > 30
    assert documented == CONTRACT


def test_the_exporter_exposes_only_documented_series() -> None:
    """Every cdm_* series of the golden exposition (tests/test_golden.py) is in the README's table,
    with exactly the labels the table gives it."""
    documented = contract_from_readme(README.read_text())
    seen: set[str] = set()
    for family in text_string_to_metric_families(GOLDEN_EXPOSITION.read_text()):
        for sample in family.samples:
            if not sample.name.startswith("cdm_"):
                continue
            assert sample.name in documented, f"{sample.name} is exposed but not in README.md"
            assert set(sample.labels) == documented[sample.name], sample.name
            seen.add(sample.name)
    assert len(seen) > 25  # the golden file holds nearly the whole contract
