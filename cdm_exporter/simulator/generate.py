"""Initial contents of a simulated project, drawn from the seed.

Clusters: mostly normal (``"200"``); from the third one on, a fixed pattern of other states
(stopped, frozen, restarting, failed) so a project with >= 3 clusters always has one that is
not normal.  Jobs: all three job types (mostly NORMAL_JOB), scheduled and manual ones, some
never executed, with realistic connectors, links and config values.

The first three jobs of the first cluster are a *showcase*: one is mid-run at start time, one
has just succeeded and one has just failed, so a freshly started simulator (the demo) shows
RUNNING, SUCCEEDED and FAILED at once, whatever the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cdm_exporter.simulator import rng
from cdm_exporter.simulator.runs import FAILED, SUCCEEDED, JobProfile, RunOverride, Schedule, slot_run

JOB_TYPES = ("NORMAL_JOB", "BATCH_JOB", "SCENARIO_JOB")
CLUSTER_STATUSES = ("100", "200", "300", "303", "500", "800", "900", "910", "920")
STATUS_DETAIL = {
    "100": "Creating",
    "200": "Normal",
    "300": "Failed",
    "303": "Create failed",
    "500": "Restarting",
    "800": "Frozen",
    "900": "Stopped",
    "910": "Stopping",
    "920": "Starting",
}
# Cluster index (mod 10) -> status; the rest are normal.
_CLUSTER_PATTERN = {2: "900", 4: "800", 6: "500", 8: "300"}

# Names that are legal for CDM jobs in the simulator but hostile to URL building and labels.
ODD_JOB_NAMES = ("a/b", "..", "?x#y", "100%", '"quoted"', "数据 迁移 🚀", "%2F", "line\nbreak", ".")

_CLUSTER_WORDS = ("ods", "dwh", "lake", "etl", "sync", "ingest", "archive", "stream", "mart", "bridge")
_TOPICS = (
    "orders", "customers", "payments", "inventory", "clicks", "logs", "shipments",
    "invoices", "sessions", "products", "accounts", "events", "ledger", "reviews",
)  # fmt: skip
_USERS = ("cdm_admin", "etl_user", "data_ops", "zhang.wei", "ana.silva")
_VERSIONS = ("2.9.3.300", "2.10.0.100", "2.10.0.300")
_FLAVORS = ("cdm.small", "cdm.medium", "cdm.large", "cdm.xlarge")


@dataclass(frozen=True)
class _Pair:
    prefix: str
    from_connector: str
    to_connector: str
    from_link: str
    to_link: str
    files: bool


_PAIRS = (
    _Pair("mysql2hive", "generic-jdbc-connector", "hive-connector", "mysql_link", "hive_link", False),
    _Pair("oracle2dws", "generic-jdbc-connector", "dws-connector", "oracle_link", "dws_link", False),
    _Pair("obs2hdfs", "obs-connector", "hdfs-connector", "obs_link", "mrs_hdfs_link", True),
    _Pair("ftp2obs", "ftp-connector", "obs-connector", "ftp_link", "obs_link", True),
    _Pair("es2dis", "elasticsearch-connector", "dis-connector", "css_link", "dis_link", False),
    _Pair("mongo2dli", "mongodb-connector", "dli-connector", "mongo_link", "dli_link", False),
    _Pair("kafka2css", "kafka-connector", "elasticsearch-connector", "kafka_link", "css_link", False),
    _Pair("pg2obs", "generic-jdbc-connector", "obs-connector", "pg_link", "obs_link", False),
)


@dataclass(frozen=True)
class ClusterSpec:
    """Static facts of a cluster (its status lives in the world, it can change)."""

    id: str
    name: str
    index: int
    status: str
    created: float
    version: str
    flavor: str
    az: str
    public_ip: str
    private_ip: str


@dataclass(frozen=True)
class JobMeta:
    """Static, non-run facts of a job definition."""

    from_connector: str
    to_connector: str
    from_link: str
    to_link: str
    creation_user: str
    update_user: str
    group_name: str
    incremental: bool
    use_sql: bool
    delete_after_run: bool
    flag: int
    from_config: dict[str, Any]
    to_config: dict[str, Any]
    driver_config: dict[str, Any]


@dataclass(frozen=True)
class JobSpec:
    name: str
    serial: int
    job_type: str
    scheduled: bool
    created: float
    updated: float
    meta: JobMeta
    profile: JobProfile
    sid_base: int
    never_status_empty: bool


def cluster_status_for(index: int) -> str:
    return _CLUSTER_PATTERN.get(index % 10, "200") if index >= 2 else "200"


def make_cluster(
    seed: int, index: int, now: float, region: str, *, name: str | None = None, status: str | None = None
) -> ClusterSpec:
    word = rng.choice(_CLUSTER_WORDS, seed, "cluster", index, "word")
    return ClusterSpec(
        id=rng.uuid_string(seed, "cluster", index, "id"),
        name=name if name is not None else f"cdm-{word}-{index + 1:02d}",
        index=index,
        status=status if status is not None else cluster_status_for(index),
        created=now - rng.between(30, 400, seed, "cluster", index, "age") * 86400.0,
        version=rng.choice(_VERSIONS, seed, "cluster", index, "version"),
        flavor=rng.choice(_FLAVORS, seed, "cluster", index, "flavor"),
        az=f"{region}{rng.choice('abc', seed, 'cluster', index, 'az')}",
        public_ip=f"49.{rng.randint(0, 255, seed, index, 'ip1')}.{rng.randint(0, 255, seed, index, 'ip2')}."
        f"{rng.randint(1, 254, seed, index, 'ip3')}",
        private_ip=f"192.168.{rng.randint(0, 255, seed, index, 'pip1')}."
        f"{rng.randint(2, 254, seed, index, 'pip2')}",
    )


def job_type_for(index: int) -> str:
    """The job type of the ``index``-th generated job of a cluster: mostly NORMAL_JOB, some
    BATCH_JOB and SCENARIO_JOB (benchmarks building their own worlds use the same mix)."""
    slot = index % 10
    if slot in (5, 9):
        return "BATCH_JOB"
    if slot == 7:
        return "SCENARIO_JOB"
    return "NORMAL_JOB"


def _config(
    seed: int, key: str, pair: _Pair, topic: str, incremental: bool
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    if pair.files:
        # CDM returns some input values URL-encoded (Terraform unescapes them).
        from_inputs = [
            {
                "name": "fromJobConfig.inputDirectory",
                "value": quote(f"/landing/{topic}/", safe=""),
                "type": "STRING",
            },
            {"name": "fromJobConfig.inputFormat", "value": "BINARY_FILE", "type": "ENUM"},
        ]
        to_inputs = [
            {
                "name": "toJobConfig.outputDirectory",
                "value": quote(f"/warehouse/{topic}", safe=""),
                "type": "STRING",
            },
            {"name": "toJobConfig.duplicateFileOpType", "value": "REPLACE", "type": "ENUM"},
        ]
    else:
        from_inputs = [
            {"name": "fromJobConfig.schemaName", "value": "sales", "type": "STRING"},
            {"name": "fromJobConfig.tableName", "value": topic, "type": "STRING"},
            {"name": "fromJobConfig.incrMigration", "value": str(incremental).lower(), "type": "BOOLEAN"},
        ]
        to_inputs = [
            {"name": "toJobConfig.database", "value": "ods", "type": "STRING"},
            {"name": "toJobConfig.table", "value": f"ods_{topic}", "type": "STRING"},
            {"name": "toJobConfig.shouldClearTable", "value": "false", "type": "BOOLEAN"},
        ]
    extractors = str(rng.choice((1, 2, 4, 8), seed, key, "extractors"))
    driver: dict[str, Any] = {
        "configs": [
            {
                "name": "throttlingConfig",
                "inputs": [
                    {"name": "throttlingConfig.numExtractors", "value": extractors, "type": "INTEGER"},
                    {"name": "throttlingConfig.recordDirtyData", "value": "false", "type": "BOOLEAN"},
                ],
            },
            # The API documentation shows an empty "inputs" as an object, not a list.
            {"name": "jobRetryConfig", "inputs": {}},
        ]
    }
    return (
        {"configs": [{"name": "fromJobConfig", "inputs": from_inputs}]},
        {"configs": [{"name": "toJobConfig", "inputs": to_inputs}]},
        driver,
    )


def _meta(seed: int, key: str, pair: _Pair, topic: str) -> JobMeta:
    incremental = (not pair.files) and rng.chance(0.2, seed, key, "incremental")
    from_config, to_config, driver = _config(seed, key, pair, topic, incremental)
    creator = rng.choice(_USERS, seed, key, "creator")
    return JobMeta(
        from_connector=pair.from_connector,
        to_connector=pair.to_connector,
        from_link=pair.from_link,
        to_link=pair.to_link,
        creation_user=creator,
        update_user=creator
        if rng.chance(0.7, seed, key, "same_updater")
        else rng.choice(_USERS, seed, key, "upd"),
        group_name=rng.choice(("DEFAULT", "nightly", "realtime"), seed, key, "group"),
        incremental=incremental,
        use_sql=(not pair.files) and rng.chance(0.1, seed, key, "sql"),
        delete_after_run=rng.chance(0.05, seed, key, "delete_after_run"),
        flag=0,
        from_config=from_config,
        to_config=to_config,
        driver_config=driver,
    )


def _profile(
    seed: int,
    key: str,
    pair: _Pair,
    meta: JobMeta,
    *,
    schedule: Schedule | None,
    mean_duration: float,
    overrides: dict[int, RunOverride] | None = None,
    fail_probability: float | None = None,
) -> JobProfile:
    skip = rng.weighted(((0.0, 0.75), (0.001, 0.2), (0.05, 0.05)), seed, key, "skip")
    return JobProfile(
        key=key,
        schedule=schedule,
        mean_duration=mean_duration,
        boot_seconds=rng.between(3.0, 12.0, seed, key, "boot"),
        fail_probability=(
            fail_probability
            if fail_probability is not None
            else rng.weighted(((0.05, 5.0), (0.2, 3.0), (0.6, 1.0)), seed, key, "fail")
        ),
        rows_mean=int(rng.choice((20_000, 150_000, 1_200_000, 8_000_000), seed, key, "rows")),
        bytes_per_row=rng.randint(80, 2000, seed, key, "bpr") * (20 if pair.files else 1),
        files_mean=rng.randint(10, 5000, seed, key, "files") if pair.files else 0,
        skip_ratio=skip,
        incremental=meta.incremental,
        seed=seed,
        base_overrides=overrides or {},
    )


def _showcase_schedule(
    seed: int, key: str, pair: _Pair, meta: JobMeta, *, role: str, now: float, created: float
) -> tuple[Schedule, dict[int, RunOverride]]:
    """Place slot 0 so that, at ``now``, the job is mid-run / just succeeded / just failed."""
    period = 900.0
    if role == "running":
        overrides = {0: RunOverride(outcome=SUCCEEDED, duration=360.0)}
    else:
        overrides = {0: RunOverride(outcome=SUCCEEDED if role == "succeeded" else FAILED, duration=180.0)}
    probe = _profile(
        seed,
        key,
        pair,
        meta,
        schedule=Schedule(0.0, period, -(10**9)),
        mean_duration=180.0,
        overrides=overrides,
    )
    run0 = slot_run(probe, 0, {})
    if role == "running":
        elapsed = (run0.boot_end - run0.start) + 0.25 * (run0.nominal_end - run0.boot_end)
    else:
        elapsed = (run0.end - run0.start) + 8.0
    anchor = now - run0.start - elapsed
    return Schedule(anchor, period, math.ceil((created - anchor) / period)), overrides


def make_job(seed: int, cluster_index: int, index: int, now: float, *, name: str | None = None) -> JobSpec:
    """The ``index``-th generated job of a cluster (``now`` is the simulated start time)."""
    serial = index + 1
    key = f"c{cluster_index}j{serial}"
    pair = rng.choice(_PAIRS, seed, key, "pair")
    topic = rng.choice(_TOPICS, seed, key, "topic")
    job_type = job_type_for(index)
    meta = _meta(seed, key, pair, topic)
    created = now - rng.between(2.0, 90.0, seed, key, "age") * 86400.0
    updated = created + (now - created) * rng.between(0.0, 0.5, seed, key, "edited")
    if name is None:
        if job_type == "BATCH_JOB":
            name = f"entiredb_{pair.prefix}_{serial:03d}"
        elif job_type == "SCENARIO_JOB":
            name = f"scenario_{topic}_{serial:03d}"
        else:
            name = f"{pair.prefix}_{topic}_{serial:03d}"
    showcase = {0: "running", 1: "succeeded", 2: "failed"}.get(index) if cluster_index == 0 else None
    never = index % 10 == 3 and showcase is None
    manual = index % 10 in (4, 8) and showcase is None
    schedule: Schedule | None
    overrides: dict[int, RunOverride] = {}
    if showcase is not None:
        schedule, overrides = _showcase_schedule(
            seed, key, pair, meta, role=showcase, now=now, created=created
        )
        mean = 180.0
    elif never:
        schedule = None
        mean = rng.between(60.0, 600.0, seed, key, "mean")
    elif manual:
        period = rng.choice((7200.0, 21600.0, 86400.0), seed, key, "period")
        anchor = now - rng.unit(seed, key, "phase") * period
        schedule = Schedule(
            anchor, period, math.ceil((created - anchor) / period), math.floor((now - anchor) / period)
        )
        mean = rng.between(120.0, 1800.0, seed, key, "mean")
    else:
        period = rng.choice((120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0), seed, key, "period")
        anchor = now - rng.unit(seed, key, "phase") * period
        schedule = Schedule(anchor, period, math.ceil((created - anchor) / period))
        mean = period * rng.between(0.15, 0.45, seed, key, "mean")
    return JobSpec(
        name=name,
        serial=serial,
        job_type=job_type,
        scheduled=schedule is not None and not manual and not never,
        created=created,
        updated=updated,
        meta=meta,
        profile=_profile(seed, key, pair, meta, schedule=schedule, mean_duration=mean, overrides=overrides),
        sid_base=rng.randint(1, 400, seed, key, "sid"),
        never_status_empty=rng.chance(0.5, seed, key, "never_variant"),
    )


def make_added_job(
    seed: int,
    cluster_index: int,
    serial: int,
    name: str,
    *,
    job_type: str,
    now: float,
    scheduled: bool,
    period: float | None,
    duration: float | None,
    fail_probability: float | None,
) -> JobSpec:
    """A job added at ``now`` through the Python or admin API: it has no history.  A scheduled
    one starts its first run shortly after ``now`` and then once per ``period``."""
    key = f"c{cluster_index}j{serial}:{name}"
    pair = rng.choice(_PAIRS, seed, key, "pair")
    topic = rng.choice(_TOPICS, seed, key, "topic")
    meta = _meta(seed, key, pair, topic)
    schedule: Schedule | None = None
    period = period if period is not None else 300.0
    mean = duration if duration is not None else period * 0.3
    if scheduled:
        schedule = Schedule(now, period, 0)
        mean = min(mean, period * 0.5)
    return JobSpec(
        name=name,
        serial=serial,
        job_type=job_type,
        scheduled=scheduled,
        created=now,
        updated=now,
        meta=meta,
        profile=_profile(
            seed, key, pair, meta, schedule=schedule, mean_duration=mean, fail_probability=fail_probability
        ),
        sid_base=rng.randint(1, 400, seed, key, "sid"),
        never_status_empty=rng.chance(0.5, seed, key, "never_variant"),
    )
