#!/usr/bin/env python3
"""Generate grafana/cdm-exporter.json, the Grafana (10+) dashboard for cdm-exporter.

    python grafana/build_dashboard.py           # write grafana/cdm-exporter.json
    python grafana/build_dashboard.py --check   # exit 1 when the committed JSON is out of date

The committed JSON is this script's output; edit this file, not the JSON. Panel ids and the grid layout
are fixed here so that diffs of the JSON stay small. Metric names are the contract listed in README.md
("Metrics") and the recording rules of prometheus/recording.yml; tests/test_dashboard_static.py checks
both, and that every expression parses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Json = dict[str, Any]

OUTPUT = Path(__file__).resolve().with_name("cdm-exporter.json")
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}

# Label filters of the template variables.
PROJECT = 'project_id=~"$project", region=~"$region"'
# Discovered projects set aside (no CDM in their region, or forbidden) read cdm_up 0 by design.
NOT_SET_ASIDE = "unless on (project_id, region) cdm_project_unavailable == 1"
CLUSTER = 'cluster_name=~"$cluster"'
JOB = 'cluster_name=~"$cluster", job_name=~"$job"'
JOB_KEY = "cluster_id, cluster_name, job_name"
EXPORTER_UP = 'up{job=~".*cdm.*"}'  # scrape job name assumption shared with prometheus/alerts.yml

GREY = "#8e8e8e"
# Job status -> color. FAILED red, RUNNING blue, SUCCEEDED green.
STATUS_COLORS: dict[str, str] = {
    "NEVER_EXECUTED": GREY,
    "BOOTING": "light-blue",
    "RUNNING": "blue",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "FAILURE_ON_SUBMIT": "dark-red",
    "UNKNOWN": "orange",
    "PENDING": "purple",
    "NEW": GREY,
    "STOPPED": "yellow",
}
# Values of the recording rule cluster_job:cdm_job_status:code (prometheus/recording.yml).
STATUS_CODES: dict[int, str] = {
    0: "OTHER",
    1: "NEVER_EXECUTED",
    2: "BOOTING",
    3: "RUNNING",
    4: "SUCCEEDED",
    5: "FAILED",
    6: "FAILURE_ON_SUBMIT",
    7: "UNKNOWN",
}
CLUSTER_STATUS_COLORS: dict[str, str] = {
    "normal": "green",
    "creating": "light-blue",
    "starting": "light-blue",
    "restarting": "orange",
    "stopping": "orange",
    "stopped": GREY,
    "frozen": "purple",
    "failed": "red",
    "create_failed": "red",
}
UP_MAPPING: Json = {
    "type": "value",
    "options": {
        "0": {"text": "DOWN", "color": "red", "index": 0},
        "1": {"text": "UP", "color": "green", "index": 1},
    },
}


# building blocks -------------------------------------------------------------------------------


def text_mapping(colors: dict[str, str]) -> Json:
    return {
        "type": "value",
        "options": {k: {"text": k, "color": c, "index": i} for i, (k, c) in enumerate(colors.items())},
    }


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN_ONLY = thresholds((None, "green"))


def target(
    ref: str, expr: str, legend: str = "__auto", *, instant: bool = False, table: bool = False
) -> Json:
    t: Json = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }
    if table:
        t["format"] = "table"
    return t


def panel(
    pid: int,
    kind: str,
    title: str,
    description: str,
    grid: tuple[int, int, int, int],
    *,
    targets: list[Json],
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    options: Json | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    x, y, w, h = grid
    p: Json = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": defaults or {}, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    return p


def row(pid: int, title: str, description: str, y: int) -> Json:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "description": description,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def reduce_last() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat_options(color_mode: str = "background", text_mode: str = "auto") -> Json:
    return {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "horizontal",
        "reduceOptions": reduce_last(),
        "textMode": text_mode,
    }


def timeseries_defaults(unit: str, *, min_zero: bool = True, stacked: bool = False, **custom: Any) -> Json:
    d: Json = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
            **custom,
        },
        "thresholds": GREEN_ONLY,
        "unit": unit,
    }
    if min_zero:
        d["min"] = 0
    return d


def timeseries_options(legend: str = "list") -> Json:
    return {
        "legend": {"calcs": [], "displayMode": legend, "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def threshold_line(value: float, color: str = "red") -> Json:
    """Defaults fragment that draws a dashed line at ``value`` on a time series panel."""
    return {"thresholds": thresholds((None, "transparent"), (value, color))}


def state_timeline_options() -> Json:
    return {
        "alignValue": "left",
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "never",
        "tooltip": {"mode": "single", "sort": "none"},
    }


def by_name(name: str, *properties: tuple[str, Any]) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": k, "value": v} for k, v in properties],
    }


def cell(kind: str, **extra: Any) -> tuple[str, Any]:
    return ("custom.cellOptions", {"type": kind, **extra})


def organize(exclude: list[str], order: list[str], rename: dict[str, str]) -> Json:
    return {
        "id": "organize",
        "options": {
            "excludeByName": dict.fromkeys(exclude, True),
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": rename,
        },
    }


# panels ----------------------------------------------------------------------------------------


def overview(y: int) -> list[Json]:
    status_overrides = [
        by_name(s, ("color", {"mode": "fixed", "fixedColor": c})) for s, c in STATUS_COLORS.items()
    ]
    jobs_by_status = panel(
        2,
        "bargauge",
        "Jobs by status",
        "Number of jobs per current status (status of each job's latest run), summed over the selected "
        "clusters. From the recording rule cluster:cdm_job_status:sum, so the job filter does not apply.",
        (0, y, 8, 6),
        targets=[
            target(
                "A", f"sum by (status) (cluster:cdm_job_status:sum{{{CLUSTER}}})", "{{status}}", instant=True
            )
        ],
        defaults={
            "color": {"mode": "fixed", "fixedColor": GREY},
            "min": 0,
            "thresholds": GREEN_ONLY,
            "unit": "short",
        },
        overrides=status_overrides,
        options={
            "displayMode": "basic",
            "minVizHeight": 10,
            "minVizWidth": 0,
            "orientation": "horizontal",
            "reduceOptions": reduce_last(),
            "showUnfilled": True,
            "valueMode": "color",
        },
    )
    running = panel(
        3,
        "stat",
        "Running now",
        "Jobs whose latest run is RUNNING or BOOTING in the selected clusters.",
        (8, y, 3, 6),
        targets=[
            target(
                "A",
                f'sum(cluster:cdm_job_status:sum{{{CLUSTER}, status=~"BOOTING|RUNNING"}}) or vector(0)',
                "Running",
                instant=True,
            )
        ],
        defaults={
            "color": {"mode": "fixed", "fixedColor": "blue"},
            "thresholds": GREEN_ONLY,
            "unit": "short",
        },
        options=stat_options(),
    )
    failed = panel(
        4,
        "stat",
        "Failed now",
        "Jobs whose latest run FAILED or was rejected on submit (FAILURE_ON_SUBMIT) in the selected "
        "clusters. The job table below shows which and why.",
        (11, y, 3, 6),
        targets=[
            target(
                "A",
                f'sum(cluster:cdm_job_status:sum{{{CLUSTER}, status=~"FAILED|FAILURE_ON_SUBMIT"}}) '
                "or vector(0)",
                "Failed",
                instant=True,
            )
        ],
        defaults={
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (1, "red")),
            "unit": "short",
        },
        options=stat_options(),
    )
    clusters = panel(
        5,
        "stat",
        "Clusters not normal",
        "Selected CDM clusters whose status is anything but normal "
        "(creating, restarting, stopped, failed, ...).",
        (14, y, 3, 6),
        targets=[
            target(
                "A",
                f'count(max by (cluster_id) (cdm_cluster_status{{{CLUSTER}, status!="normal"}} == 1)) '
                "or vector(0)",
                "Not normal",
                instant=True,
            )
        ],
        defaults={
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (1, "orange")),
            "unit": "short",
        },
        options=stat_options(),
    )
    alerts = panel(
        6,
        "stat",
        "Firing CDM alerts",
        "Alerts of prometheus/alerts.yml (alert names starting with Cdm) that are firing now. Needs the "
        "alert rules loaded in this Prometheus.",
        (17, y, 3, 6),
        targets=[
            target(
                "A",
                'count(ALERTS{alertname=~"Cdm.*", alertstate="firing"}) or vector(0)',
                "Firing",
                instant=True,
            )
        ],
        defaults={
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (1, "red")),
            "unit": "short",
        },
        options=stat_options(),
    )
    health = panel(
        7,
        "stat",
        "Exporter health",
        "Scrape: Prometheus can scrape the exporter (up). CDM API: authentication and the cluster list "
        "worked at the last collection for every selected project (cdm_up), discovered projects set aside "
        "excepted. Job lists: the job list of every selected cluster worked (cdm_cluster_up). DOWN when any "
        "of them is down.",
        (20, y, 4, 6),
        targets=[
            target("A", f"min({EXPORTER_UP})", "Scrape", instant=True),
            target("B", f"min(cdm_up{{{PROJECT}}} {NOT_SET_ASIDE})", "CDM API", instant=True),
            target("C", f"min(cdm_cluster_up{{{CLUSTER}}})", "Job lists", instant=True),
        ],
        defaults={
            "color": {"mode": "thresholds"},
            "mappings": [UP_MAPPING],
            "thresholds": thresholds((None, "red"), (1, "green")),
            "unit": "none",
        },
        options=stat_options(text_mode="value_and_name"),
    )
    return [
        row(1, "Overview", "Job counts by status, failures and the health of the monitoring itself.", y - 1),
        jobs_by_status,
        running,
        failed,
        clusters,
        alerts,
        health,
    ]


def job_table(y: int) -> Json:
    queries = [
        ("A", f"max by ({JOB_KEY}, status) (cdm_job_status{{{JOB}}} == 1)"),
        ("B", f"max by ({JOB_KEY}) (cdm_job_progress_ratio{{{JOB}}})"),
        ("C", f"max by ({JOB_KEY}) (cdm_job_read_rows{{{JOB}}})"),
        ("D", f"max by ({JOB_KEY}) (cdm_job_written_rows{{{JOB}}})"),
        ("E", f"max by ({JOB_KEY}) (cdm_job_written_bytes{{{JOB}}})"),
        ("F", f"max by ({JOB_KEY}) (cdm_job_execute_timestamp_seconds{{{JOB}}}) * 1000"),
        ("G", f"time() - max by ({JOB_KEY}) (cdm_job_last_success_timestamp_seconds{{{JOB}}})"),
        ("H", f"max by ({JOB_KEY}, error_summary) (cdm_job_error_info{{{JOB}}})"),
        ("I", f"max by ({JOB_KEY}, job_type, execute_auto) (cdm_job_info{{{JOB}}})"),
        ("J", f"max by ({JOB_KEY}) (cluster_job:cdm_job_runs:increase1d{{{JOB}}})"),
        ("K", f"max by ({JOB_KEY}) (cluster_job:cdm_job_run_failures:increase1d{{{JOB}}})"),
    ]
    rename = {
        "cluster_name": "Cluster",
        "job_name": "Job",
        "job_type": "Type",
        "execute_auto": "Scheduled",
        "status": "Status",
        "Value #B": "Progress",
        "Value #C": "Rows read",
        "Value #D": "Rows written",
        "Value #E": "Bytes written",
        "Value #F": "Last run started",
        "Value #G": "Since last success",
        "Value #J": "Runs (1 d)",
        "Value #K": "Failed (1 d)",
        "error_summary": "Last error",
    }
    return panel(
        11,
        "table",
        "Jobs",
        "One row per job: status and progress of the latest run, its rows and bytes (counters of the latest "
        "run, absent while the API does not report them), when it started, the time since the job last "
        "succeeded, its runs and failed runs over the last day (each run counted once, whether the exporter "
        "saw it end or found it in the run history) and the error summary of a FAILED run (cdm-exporter "
        "check shows the full error). The "
        "queries are joined on cluster_id, cluster_name and job_name by the Merge transformation.",
        (0, y, 24, 10),
        targets=[target(ref, expr, instant=True, table=True) for ref, expr in queries],
        defaults={
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True, "inspect": False}
        },
        overrides=[
            by_name("Status", cell("color-background"), ("mappings", [text_mapping(STATUS_COLORS)])),
            by_name(
                "Progress",
                ("unit", "percentunit"),
                ("min", 0),
                ("max", 1),
                ("decimals", 0),
                ("color", {"mode": "fixed", "fixedColor": "blue"}),
                cell("gauge", mode="basic", valueDisplayMode="text"),
            ),
            by_name("Rows read", ("unit", "short")),
            by_name("Rows written", ("unit", "short")),
            by_name("Bytes written", ("unit", "bytes")),
            by_name("Last run started", ("unit", "dateTimeFromNow")),
            by_name(
                "Since last success",
                ("unit", "s"),
                ("decimals", 0),
                ("color", {"mode": "thresholds"}),
                ("thresholds", thresholds((None, "green"), (93600, "orange"), (172800, "red"))),
                cell("color-text"),
            ),
            by_name("Runs (1 d)", ("unit", "short"), ("decimals", 0)),
            by_name(
                "Failed (1 d)",
                ("unit", "short"),
                ("decimals", 0),
                ("color", {"mode": "thresholds"}),
                ("thresholds", thresholds((None, "green"), (0.5, "red"))),
                cell("color-text"),
            ),
            by_name("Last error", ("custom.inspect", True), ("custom.minWidth", 300)),
            by_name("Job", ("custom.minWidth", 160)),
        ],
        options={
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
            "sortBy": [{"desc": False, "displayName": "Status"}],
        },
        transformations=[
            {"id": "merge", "options": {}},
            organize(
                exclude=["Time", "cluster_id", "Value #A", "Value #H", "Value #I"],
                order=[
                    "cluster_name",
                    "job_name",
                    "job_type",
                    "execute_auto",
                    "status",
                    "Value #B",
                    "Value #C",
                    "Value #D",
                    "Value #E",
                    "Value #F",
                    "Value #G",
                    "Value #J",
                    "Value #K",
                    "error_summary",
                ],
                rename=rename,
            ),
        ],
    )


def jobs(y: int) -> list[Json]:
    progress = panel(
        12,
        "timeseries",
        "Progress of running jobs",
        "Progress (0-100 %) of the latest run while it is BOOTING or RUNNING; the line ends when the run "
        "ends. A flat line for a long time is what CdmJobStuck alerts on.",
        (0, y + 11, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) (cdm_job_progress_ratio{{{JOB}}} "
                "and on (instance, cluster_id, job_name) "
                f'(cdm_job_status{{{JOB}, status=~"BOOTING|RUNNING"}} == 1))',
                "{{cluster_name}} / {{job_name}}",
            )
        ],
        defaults={**timeseries_defaults("percentunit"), "max": 1},
        options=timeseries_options(),
    )
    rows = panel(
        13,
        "timeseries",
        "Rows written per second",
        "Rows written per second by each job's latest run (5-minute rate of cdm_job_written_rows, from the "
        "recording rule cluster_job:cdm_job_written_rows:rate5m). The counter restarts with every run; "
        "rate() counts the new run from 0. Only jobs that are writing are shown.",
        (8, y + 11, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) (cluster_job:cdm_job_written_rows:rate5m{{{JOB}}}) > 0",
                "{{cluster_name}} / {{job_name}}",
            )
        ],
        defaults=timeseries_defaults("short", axisLabel="rows/s"),
        options=timeseries_options(),
    )
    written_bytes = panel(
        14,
        "timeseries",
        "Bytes written per second",
        "Bytes written per second by each job's latest run (5-minute rate of cdm_job_written_bytes, from the "
        "recording rule cluster_job:cdm_job_written_bytes:rate5m); the counter restarts with every run.",
        (16, y + 11, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) (cluster_job:cdm_job_written_bytes:rate5m{{{JOB}}}) > 0",
                "{{cluster_name}} / {{job_name}}",
            )
        ],
        defaults=timeseries_defaults("Bps"),
        options=timeseries_options(),
    )
    code_mapping: Json = {
        "type": "value",
        "options": {
            str(code): {"text": status, "color": STATUS_COLORS.get(status, GREY), "index": code}
            for code, status in STATUS_CODES.items()
        },
    }
    timeline = panel(
        15,
        "state-timeline",
        "Job status timeline",
        "Status of each job's latest run over time (recording rule cluster_job:cdm_job_status:code): "
        "failures (red) and re-runs (blue, then green) show at a glance. OTHER is a status outside the "
        "documented seven (PENDING, NEW, STOPPED, ...). Select clusters or jobs when there are many.",
        (0, y + 19, 24, 10),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) (cluster_job:cdm_job_status:code{{{JOB}}})",
                "{{cluster_name}} / {{job_name}}",
            )
        ],
        defaults={
            "color": {"mode": "thresholds"},
            "custom": {"fillOpacity": 80, "lineWidth": 0},
            "mappings": [code_mapping],
            "thresholds": thresholds((None, GREY)),
            "unit": "none",
        },
        options=state_timeline_options(),
    )
    return [
        row(10, "Jobs", "Per-job status, progress, throughput and history.", y),
        job_table(y + 1),
        progress,
        rows,
        written_bytes,
        timeline,
    ]


def run_history(y: int) -> list[Json]:
    """Runs, failures, failure ratios and run durations from the run counters (cdm_job_runs_total,
    cdm_job_run_failures_total) and cdm_job_last_run_duration_seconds, per job and per cluster."""
    per_job = "{{cluster_name}} / {{job_name}}"

    def by_job(metric: str) -> str:
        # one value per job, however many exporter replicas export it
        return f"max by ({JOB_KEY}) ({metric}{{{JOB}}})"

    runs_per_cluster = panel(
        41,
        "timeseries",
        "Runs and failures per day, per cluster",
        "Runs that ended over the last 24 hours in each selected cluster, and how many of them failed "
        "(FAILED or FAILURE_ON_SUBMIT). From the exporter's run counters, in which every run counts once, "
        "whether the exporter saw it end or found it in the run history afterwards (recording rules "
        "cluster_job:cdm_job_runs:increase1d and cluster_job:cdm_job_run_failures:increase1d).",
        (0, y + 1, 8, 8),
        targets=[
            target(
                "A",
                f"sum by (cluster_name) ({by_job('cluster_job:cdm_job_runs:increase1d')})",
                "runs {{cluster_name}}",
            ),
            target(
                "B",
                f"sum by (cluster_name) ({by_job('cluster_job:cdm_job_run_failures:increase1d')})",
                "failed {{cluster_name}}",
            ),
        ],
        defaults=timeseries_defaults("short", axisLabel="runs per day"),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": "failed .*"},
                "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}],
            }
        ],
        options=timeseries_options(),
    )
    runs_per_job = panel(
        42,
        "timeseries",
        "Runs per day, per job",
        "Runs of each selected job that ended over the last 24 hours (recording rule "
        "cluster_job:cdm_job_runs:increase1d). A scheduled job's line drops when a run did not happen.",
        (8, y + 1, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) ({by_job('cluster_job:cdm_job_runs:increase1d')})",
                per_job,
            )
        ],
        defaults=timeseries_defaults("short", axisLabel="runs per day"),
        options=timeseries_options(),
    )
    failures_per_job = panel(
        43,
        "timeseries",
        "Failed runs per day, per job",
        "Runs of each selected job that ended FAILED or FAILURE_ON_SUBMIT over the last 24 hours "
        "(recording rule cluster_job:cdm_job_run_failures:increase1d).",
        (16, y + 1, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) ({by_job('cluster_job:cdm_job_run_failures:increase1d')})",
                per_job,
            )
        ],
        defaults=timeseries_defaults("short", axisLabel="failed runs per day"),
        options=timeseries_options(),
    )
    ratio_per_job = panel(
        44,
        "timeseries",
        "Failure ratio per job",
        "Share of each selected job's runs that failed, over the last day (1d) and the last 7 days (7d); "
        "no line while no run of the job ended in the window. Above the job's threshold (0.25 by default, "
        "the dashed line) with at least 3 runs in the day, CdmJobFailureRatioHigh fires.",
        (0, y + 9, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) "
                f"({by_job('cluster_job:cdm_job_run_failures_per_run:ratio1d')})",
                "1d {{cluster_name}} / {{job_name}}",
            ),
            target(
                "B",
                f"max by (cluster_name, job_name) "
                f"({by_job('cluster_job:cdm_job_run_failures_per_run:ratio7d')})",
                "7d {{cluster_name}} / {{job_name}}",
            ),
        ],
        defaults={
            **timeseries_defaults("percentunit", thresholdsStyle={"mode": "dashed"}),
            **threshold_line(0.25),
            "max": 1,
        },
        options=timeseries_options(),
    )
    ratio_per_cluster = panel(
        45,
        "timeseries",
        "Failure ratio per cluster",
        "Share of the runs of the selected jobs of each cluster that failed over the last day: failed "
        "runs over runs, summed over the cluster's jobs; no line while none ended.",
        (8, y + 9, 8, 8),
        targets=[
            target(
                "A",
                f"sum by (cluster_name) ({by_job('cluster_job:cdm_job_run_failures:increase1d')}) "
                f"/ (sum by (cluster_name) ({by_job('cluster_job:cdm_job_runs:increase1d')}) > 0)",
                "{{cluster_name}}",
            )
        ],
        defaults={**timeseries_defaults("percentunit"), "max": 1},
        options=timeseries_options(),
    )
    duration_per_cluster = panel(
        46,
        "timeseries",
        "Last run duration per cluster",
        "Duration (start to end) of the latest ended run of each selected job, the longest and the median "
        "per cluster (cdm_job_last_run_duration_seconds).",
        (16, y + 9, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name) ({by_job('cdm_job_last_run_duration_seconds')})",
                "longest {{cluster_name}}",
            ),
            target(
                "B",
                f"quantile by (cluster_name) (0.5, {by_job('cdm_job_last_run_duration_seconds')})",
                "median {{cluster_name}}",
            ),
        ],
        defaults=timeseries_defaults("s"),
        options=timeseries_options(),
    )
    duration_per_job = panel(
        47,
        "timeseries",
        "Last run duration per job",
        "Duration (start to end) of each selected job's latest ended run, as it changes from run to run: "
        "a job getting slower shows as a rising step line (cdm_job_last_run_duration_seconds).",
        (0, y + 17, 24, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name, job_name) ({by_job('cdm_job_last_run_duration_seconds')})",
                per_job,
            )
        ],
        defaults=timeseries_defaults("s", lineInterpolation="stepAfter"),
        options=timeseries_options("table"),
    )
    return [
        row(
            40,
            "Run history",
            "How often each job runs and fails, and how long its runs take, from the run counters.",
            y,
        ),
        runs_per_cluster,
        runs_per_job,
        failures_per_job,
        ratio_per_job,
        ratio_per_cluster,
        duration_per_cluster,
        duration_per_job,
    ]


def clusters(y: int) -> list[Json]:
    queries = [
        (
            "A",
            "max by (cluster_id, cluster_name, project_id, region, version) "
            f"(cdm_cluster_info{{{PROJECT}, {CLUSTER}}})",
        ),
        ("B", f"max by (cluster_id, cluster_name, status) (cdm_cluster_status{{{CLUSTER}}} == 1)"),
        ("C", f"max by (cluster_id, cluster_name) (cdm_cluster_up{{{CLUSTER}}})"),
        ("D", f"sum by (cluster_id, cluster_name) (cluster:cdm_job_status:sum{{{CLUSTER}}})"),
        # "or ... * 0": 0, not an empty cell, for a cluster without such jobs when the exporter exports
        # only the current status (collection.status_series: current)
        (
            "E",
            "sum by (cluster_id, cluster_name) "
            f'(cluster:cdm_job_status:sum{{{CLUSTER}, status=~"BOOTING|RUNNING"}}) '
            f"or sum by (cluster_id, cluster_name) (cluster:cdm_job_status:sum{{{CLUSTER}}}) * 0",
        ),
        (
            "F",
            "sum by (cluster_id, cluster_name) "
            f'(cluster:cdm_job_status:sum{{{CLUSTER}, status=~"FAILED|FAILURE_ON_SUBMIT"}}) '
            f"or sum by (cluster_id, cluster_name) (cluster:cdm_job_status:sum{{{CLUSTER}}}) * 0",
        ),
    ]
    table = panel(
        21,
        "table",
        "Clusters",
        "One row per CDM cluster: project, region, version and status (ListClusters), whether its job list "
        "worked at the last collection, and its number of jobs, running jobs and failed jobs.",
        (0, y + 1, 24, 7),
        targets=[target(ref, expr, instant=True, table=True) for ref, expr in queries],
        defaults={
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True, "inspect": False}
        },
        overrides=[
            by_name("Status", cell("color-background"), ("mappings", [text_mapping(CLUSTER_STATUS_COLORS)])),
            by_name("Job list", cell("color-background"), ("mappings", [UP_MAPPING])),
            by_name("Running", ("color", {"mode": "fixed", "fixedColor": "blue"}), cell("color-text")),
            by_name(
                "Failed",
                ("color", {"mode": "thresholds"}),
                ("thresholds", thresholds((None, "green"), (1, "red"))),
                cell("color-text"),
            ),
        ],
        options={
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
            "sortBy": [{"desc": True, "displayName": "Failed"}],
        },
        transformations=[
            {"id": "merge", "options": {}},
            organize(
                exclude=["Time", "Value #A", "Value #B"],
                order=[
                    "cluster_name",
                    "cluster_id",
                    "project_id",
                    "region",
                    "version",
                    "status",
                    "Value #C",
                    "Value #D",
                    "Value #E",
                    "Value #F",
                ],
                rename={
                    "cluster_name": "Cluster",
                    "cluster_id": "Cluster ID",
                    "project_id": "Project",
                    "region": "Region",
                    "version": "Version",
                    "status": "Status",
                    "Value #C": "Job list",
                    "Value #D": "Jobs",
                    "Value #E": "Running",
                    "Value #F": "Failed",
                },
            ),
        ],
    )
    return [row(20, "Clusters", "CDM clusters of the selected projects and regions.", y), table]


def exporter(y: int) -> list[Json]:
    up_timeline_defaults: Json = {
        "color": {"mode": "thresholds"},
        "custom": {"fillOpacity": 80, "lineWidth": 0},
        "mappings": [UP_MAPPING],
        "thresholds": thresholds((None, "red"), (1, "green")),
        "unit": "none",
    }
    api_up = panel(
        31,
        "state-timeline",
        "CDM API reachable (cdm_up)",
        "Per project and region: 1 (UP) when authentication and the cluster list worked at the last "
        "collection. DOWN for 5 minutes fires CdmExporterApiDown. Discovered projects set aside (no CDM in "
        "their region, or forbidden) are left out; the Projects table lists them.",
        (0, y + 1, 12, 6),
        targets=[
            target("A", f"cdm_up{{{PROJECT}}} {NOT_SET_ASIDE}", "{{project_id}} {{region}} ({{instance}})")
        ],
        defaults=up_timeline_defaults,
        options=state_timeline_options(),
    )
    cluster_up = panel(
        32,
        "state-timeline",
        "Cluster job lists reachable (cdm_cluster_up)",
        "Per cluster: 1 (UP) when the cluster's job list worked at the last collection. While DOWN, its "
        "jobs show their last known state. DOWN for 10 minutes fires CdmClusterUnreachable.",
        (12, y + 1, 12, 6),
        targets=[target("A", f"max by (cluster_name) (cdm_cluster_up{{{CLUSTER}}})", "{{cluster_name}}")],
        defaults=up_timeline_defaults,
        options=state_timeline_options(),
    )
    requests = panel(
        33,
        "timeseries",
        "API requests by endpoint and code",
        "HTTP calls the exporter makes to IAM and CDM per second, by endpoint and HTTP status (error = "
        "transport failure). The per-user limit is about 120/min for job_status and 120/min shared by "
        "list_clusters, list_jobs and submissions.",
        (0, y + 7, 8, 8),
        targets=[
            target(
                "A",
                "sum by (endpoint, code) (rate(cdm_api_requests_total[$__rate_interval]))",
                "{{endpoint}} {{code}}",
            )
        ],
        defaults=timeseries_defaults("reqps", stacked=True),
        options=timeseries_options("table"),
    )
    latency = panel(
        34,
        "timeseries",
        "API latency",
        "Median, 90th and 99th percentile of the API call latency per endpoint "
        "(cdm_api_request_duration_seconds histogram).",
        (8, y + 7, 8, 8),
        targets=[
            target(
                ref,
                f"histogram_quantile({q}, sum by (le, endpoint) "
                "(rate(cdm_api_request_duration_seconds_bucket[$__rate_interval])))",
                f"p{round(q * 100)} {{{{endpoint}}}}",
            )
            for ref, q in (("A", 0.5), ("B", 0.9), ("C", 0.99))
        ],
        defaults=timeseries_defaults("s"),
        options=timeseries_options("table"),
    )
    errors = panel(
        35,
        "timeseries",
        "API errors and throttling",
        "Calls per second that did not succeed, by endpoint and code. 429 is throttling (APIGW.0308): the "
        "exporter does not retry it within a scrape and the job keeps its last known state; sustained 429s "
        "fire CdmExporterThrottled. error is a transport failure (refused, timeout, TLS).",
        (16, y + 7, 8, 8),
        targets=[
            target(
                "A",
                'sum by (endpoint, code) (rate(cdm_api_requests_total{code!~"2.."}[$__rate_interval])) > 0',
                "{{endpoint}} {{code}}",
            )
        ],
        defaults=timeseries_defaults("reqps", stacked=True),
        overrides=[
            {
                "matcher": {"id": "byRegexp", "options": ".* 429"},
                "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}}],
            },
            {
                "matcher": {"id": "byRegexp", "options": ".* (5..|error)"},
                "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}],
            },
        ],
        options=timeseries_options("table"),
    )
    refresh_age = panel(
        36,
        "timeseries",
        "Status refresh age",
        "Time since the exporter last fetched a job's status from the API (oldest and median job per "
        "cluster). The exporter refreshes running and changed jobs first and the rest as the API budget "
        "allows; above the red line (1 h) CdmJobStatusStale fires.",
        (0, y + 15, 8, 8),
        targets=[
            target(
                "A",
                f"max by (cluster_name) (time() - cdm_job_refresh_timestamp_seconds{{{JOB}}})",
                "oldest {{cluster_name}}",
            ),
            target(
                "B",
                f"quantile by (cluster_name) (0.5, time() - cdm_job_refresh_timestamp_seconds{{{JOB}}})",
                "median {{cluster_name}}",
            ),
        ],
        defaults={
            **timeseries_defaults("s", thresholdsStyle={"mode": "dashed"}),
            **threshold_line(3600),
        },
        options=timeseries_options(),
    )
    duration = panel(
        37,
        "timeseries",
        "Collection and scrape duration",
        "collection: how long the exporter's last collection took (cdm_scrape_duration_seconds). scrape: "
        "how long Prometheus' scrape of the exporter took (scrape_duration_seconds). The red line is the "
        "10 s scrape_timeout of prometheus/prometheus.example.yml.",
        (8, y + 15, 8, 8),
        targets=[
            target("A", "cdm_scrape_duration_seconds", "collection {{instance}}"),
            target("B", 'scrape_duration_seconds{job=~".*cdm.*"}', "scrape {{instance}}"),
        ],
        defaults={
            **timeseries_defaults("s", thresholdsStyle={"mode": "dashed"}),
            **threshold_line(10),
        },
        options=timeseries_options(),
    )
    budget = panel(
        38,
        "timeseries",
        "API budget remaining",
        "Requests left in the exporter's current budget window per API policy (job_status: ShowJobStatus; "
        "common: ListClusters, ShowJobs and ShowSubmissions), from collection.budget_per_minute. At 0 the "
        "exporter serves the last known state until the window resets.",
        (16, y + 15, 8, 8),
        targets=[
            target("A", f"cdm_api_budget_remaining{{{PROJECT}}}", "{{project_id}} {{region}} {{policy}}")
        ],
        defaults=timeseries_defaults("short"),
        options=timeseries_options(),
    )
    set_aside_mapping: Json = {
        "type": "value",
        "options": {
            "0": {"text": "no", "color": "green", "index": 0},
            "1": {"text": "set aside", "color": GREY, "index": 1},
        },
    }
    projects = panel(
        39,
        "table",
        "Projects",
        "One row per project: its IAM name (for projects found by account-wide discovery), region and ID, "
        "whether the CDM API worked at the last collection (cdm_up), and whether discovery set it aside "
        "because CDM is not offered in its region or the credential may not use it there "
        "(cdm_project_unavailable; retried every collection.unavailable_recheck_interval).",
        (0, y + 23, 24, 6),
        targets=[
            target("A", f"max by (project_id, region) (cdm_up{{{PROJECT}}})", instant=True, table=True),
            target(
                "B",
                f"max by (project_id, project_name, region) (cdm_project_info{{{PROJECT}}})",
                instant=True,
                table=True,
            ),
            target(
                "C",
                f"max by (project_id, region) (cdm_project_unavailable{{{PROJECT}}})",
                instant=True,
                table=True,
            ),
        ],
        defaults={
            "custom": {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True, "inspect": False}
        },
        overrides=[
            by_name("CDM API", cell("color-background"), ("mappings", [UP_MAPPING])),
            by_name("Set aside", cell("color-text"), ("mappings", [set_aside_mapping])),
        ],
        options={
            "cellHeight": "sm",
            "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
            "showHeader": True,
            "sortBy": [{"desc": False, "displayName": "CDM API"}],
        },
        transformations=[
            {"id": "merge", "options": {}},
            organize(
                exclude=["Time", "Value #B"],
                order=["project_name", "region", "project_id", "Value #A", "Value #C"],
                rename={
                    "project_name": "Project",
                    "region": "Region",
                    "project_id": "Project ID",
                    "Value #A": "CDM API",
                    "Value #C": "Set aside",
                },
            ),
        ],
    )
    return [
        row(
            30,
            "Exporter and API health",
            "Is the monitoring itself working, and how hard does it use the API?",
            y,
        ),
        api_up,
        cluster_up,
        requests,
        latency,
        errors,
        refresh_age,
        duration,
        budget,
        projects,
    ]


# dashboard -------------------------------------------------------------------------------------


def query_variable(name: str, label: str, query: str, description: str) -> Json:
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def templating() -> Json:
    return {
        "list": [
            {
                "current": {},
                "description": "The Prometheus that scrapes cdm-exporter.",
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "skipUrlSync": False,
                "type": "datasource",
            },
            query_variable(
                "project", "Project", "label_values(cdm_up, project_id)", "Huawei Cloud project ID."
            ),
            query_variable(
                "region", "Region", 'label_values(cdm_up{project_id=~"$project"}, region)', "Region."
            ),
            query_variable(
                "cluster",
                "Cluster",
                f"label_values(cdm_cluster_info{{{PROJECT}}}, cluster_name)",
                "CDM clusters of the selected projects and regions. With All, job panels show every cluster.",
            ),
            query_variable(
                "job",
                "Job",
                f"label_values(cdm_job_info{{{CLUSTER}}}, job_name)",
                "CDM jobs of the selected clusters.",
            ),
        ]
    }


def build() -> Json:
    panels = [*overview(1), *jobs(7), *run_history(36), *clusters(61), *exporter(69)]
    return {
        "annotations": {
            "list": [
                {
                    "datasource": DATASOURCE,
                    "enable": True,
                    "expr": f'ALERTS{{alertname=~"CdmJob.*", alertstate="firing", {JOB}}}',
                    "iconColor": "red",
                    "name": "CDM job alerts",
                    "step": "60s",
                    "tagKeys": "alertname,severity",
                    "textFormat": "{{cluster_name}} / {{job_name}}",
                    "titleFormat": "{{alertname}}",
                    "useValueForTime": False,
                }
            ]
        },
        "description": "Huawei Cloud CDM (Cloud Data Migration) jobs and clusters, from cdm-exporter.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "liveNow": False,
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["cdm", "cdm-exporter", "huawei-cloud"],
        "templating": templating(),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "CDM jobs (cdm-exporter)",
        "uid": "cdm-exporter",
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    """The dashboard JSON exactly as committed."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the JSON file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT}")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run python grafana/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
