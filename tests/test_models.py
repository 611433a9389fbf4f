"""Parsing of API payloads: the documented examples and quirks, and property tests that no
input escapes ``parse_*`` as anything but ``ShapeError`` or yields a wrong-typed field."""

from __future__ import annotations

import copy
import json
import math
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdm_exporter.api import models
from cdm_exporter.api.models import (
    Cluster,
    Counters,
    JobPage,
    JobSummary,
    ShapeError,
    Submission,
    latest,
    parse_clusters,
    parse_job_page,
    parse_submissions,
)

FIXTURES = Path(__file__).parent / "fixtures" / "api"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- a runtime type check of every field of a parsed record -------------------------------------


def _allowed(cls: type) -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(cls)
    allowed: dict[str, tuple[type, ...]] = {}
    for field in fields(cls):
        hint = hints[field.name]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        # tuple[JobSummary, ...] -> tuple (its items are checked one by one)
        allowed[field.name] = tuple(typing.get_origin(option) or option for option in options)
    return allowed


def assert_well_typed(record: object) -> None:
    """Every field holds exactly one of its annotated types (a bool is not an int, floats are
    finite), timestamps are not negative and progress is a percentage."""
    assert is_dataclass(record)
    for name, options in _allowed(type(record)).items():
        value = getattr(record, name)
        if value is None:
            assert type(None) in options, f"{type(record).__name__}.{name} is None"
            continue
        if is_dataclass(value):
            assert type(value) in options, f"{type(record).__name__}.{name}: {type(value)}"
            assert_well_typed(value)
            continue
        if isinstance(value, tuple):
            assert tuple in options
            for item in value:
                assert_well_typed(item)
            continue
        assert type(value) in options, f"{type(record).__name__}.{name} = {value!r} not in {options}"
        if isinstance(value, float):
            assert math.isfinite(value), f"{name} = {value!r}"
        if name.endswith("_date"):
            assert value >= 0, f"{name} = {value!r}"
        if name == "progress":
            assert 0.0 <= value <= 100.0


# --- documented examples ---------------------------------------------------------------------------


def test_clusters_otc_example() -> None:
    (cluster,) = parse_clusters(load("list_clusters_otc.json"))
    assert cluster == Cluster(
        id="bae65496-643e-47ca-84af-948672de7eeb",
        name="cdm-c018",
        status="200",
        status_detail="Normal",
        version=None,
        is_frozen=False,
    )
    assert cluster.status_name == "normal"


def test_clusters_old_doc_version_on_cluster_and_frozen() -> None:
    (cluster,) = parse_clusters(load("list_clusters_old_doc.json"))
    assert cluster.version == "2.9.1.200"
    assert cluster.is_frozen is True
    assert cluster.status_name == "stopped"


def test_clusters_full_example() -> None:
    clusters = parse_clusters(load("list_clusters_full.json"))
    assert [c.id[-2:] for c in clusters] == ["01", "02", "03", "04"]
    prod, new, broken, bare = clusters
    assert (prod.name, prod.version, prod.status_name, prod.status_detail) == (
        "cdm-prod",
        "2.10.0.300",
        "normal",
        "Normal",
    )
    assert new.status_name == "creating"
    assert broken.status_name == "create_failed"
    # no name: the id stands in, and an undocumented status code is kept as its own label value
    assert bare.name == bare.id
    assert bare.status_name == "777"
    for cluster in clusters:
        assert_well_typed(cluster)


def test_job_list_otc_example_has_no_status() -> None:
    page = parse_job_page(load("job_list_otc.json"))
    assert (page.total, page.page_no, page.page_size, page.dropped) == (1, 1, 10, 0)
    (job,) = page.jobs
    assert job == JobSummary(
        name="es_css",
        job_type="NORMAL_JOB",
        from_connector="elasticsearch-connector",
        to_connector="dis-connector",
        from_link="css",
        to_link="dis",
    )


def test_job_list_full_example() -> None:
    page = parse_job_page(load("job_list_full.json"))
    assert page.total == 3
    first, batch, scenario = page.jobs
    assert first.status == "SUCCEEDED"
    assert first.creation_date == pytest.approx(1536905778.725)
    assert first.update_date == pytest.approx(1536906582.997)  # sent as a string
    assert first.execute_start_date == 1700000000.0
    assert first.execute_update_date == 1700000360.0
    assert first.update_user == "ops"
    assert first.external_id == "job_local1202051771_0002"
    assert first.is_incremental is False
    assert (first.rows_read, first.rows_written, first.bytes_read, first.bytes_written) == (
        1000,
        998,
        1048576,
        1048000,
    )
    assert (first.files_read, first.files_written) == (0, 4)
    assert batch == JobSummary(
        name="entire_db", job_type="BATCH_JOB", status="NEW", creation_date=1536905778.725
    )
    assert scenario.job_type is None  # filled in by the client from the query
    assert scenario.status == "PENDING"
    assert scenario.is_incremental is True
    assert first.change_key != batch.change_key


def test_job_list_empty() -> None:
    assert parse_job_page(load("job_list_empty.json")) == JobPage(jobs=(), total=0, page_no=1, page_size=100)


def test_seed_example_string_timestamp() -> None:
    (sub,) = parse_submissions(load("job_status_seed_booting.json"))
    assert sub == Submission(
        job_name="jdbc2hive",
        status="BOOTING",
        progress=1.0,
        creation_user="cdm",
        creation_date=1536905778.725,
    )


def test_succeeded_with_typo_spelling() -> None:
    (sub,) = parse_submissions(load("job_status_succeeded_typo.json"))
    assert sub.last_update_user == "cdm"
    assert sub.is_stopping_increment == ""
    assert sub.progress == 100.0
    assert sub.last_update_date == pytest.approx(1536916580.005)
    assert (sub.is_execute_auto, sub.is_delete_job, sub.is_incrementing) == (False, False, False)
    assert sub.counters == Counters(bytes_read=0, rows_read=0, rows_written=0)


def test_succeeded_with_fixed_spelling_and_all_counters() -> None:
    (sub,) = parse_submissions(load("job_status_succeeded_fixed_spelling.json"))
    assert sub.last_update_user == "scheduler"
    assert sub.submission_id == 42
    assert sub.external_id == "job_local1127970451_0009"
    assert (sub.write_rows, sub.update_rows, sub.delete_rows) == (995, 5, 0)
    assert sub.execute_date == 1700000001.0
    assert sub.counters == Counters(
        bytes_read=10485760,
        bytes_written=10400000,
        rows_read=1000,
        rows_written=995,
        rows_written_skipped=5,
        total_size=10485760,
        total_files=2,
        files_read=2,
        files_written=1,
        files_skipped=1,
    )


def test_both_spellings_fixed_one_wins_and_numeric_strings() -> None:
    (sub,) = parse_submissions(load("job_status_both_spellings.json"))
    assert sub.last_update_user == "new-spelling"
    assert sub.progress == 37.5
    assert sub.submission_id == 7


def test_failed_run() -> None:
    (sub,) = parse_submissions(load("job_status_failed.json"))
    assert sub.status == "FAILED"
    assert sub.progress is None  # -1 means unknown/failed, never exported as a ratio
    assert sub.error_summary == "Cdm.0901: Failed to connect to the database."
    assert sub.error_details is not None and sub.error_details.startswith("org.postgresql")
    assert sub.status in models.FAILED_STATUSES


def test_pending_is_kept_as_is() -> None:
    (sub,) = parse_submissions(load("job_status_pending_random_cluster.json"))
    assert sub.status == "PENDING"
    assert sub.progress == 0.0
    assert sub.status in models.ACTIVE_STATUSES


def test_never_executed() -> None:
    (sub,) = parse_submissions(load("job_status_never_executed.json"))
    assert (sub.status, sub.progress, sub.submission_id) == ("NEVER_EXECUTED", None, -1)


def test_odd_types_cost_only_their_field() -> None:
    subs = parse_submissions(load("job_status_odd_types.json"))
    assert [s.submission_id for s in subs] == [3, 4]  # 3.0 read as 3; nameless/non-object records dropped
    odd, capped = subs
    assert odd.progress is None  # "NaN"
    assert odd.creation_date is None  # negative
    assert odd.execute_date is None  # "not a date"
    assert odd.last_update_date == 1.7e9
    assert odd.is_incrementing is True  # "TRUE"
    assert odd.is_stopping_increment == "false"  # a bool where a string is documented, kept as text
    assert odd.is_execute_auto is True  # 1
    assert odd.is_delete_job is None  # "yes"
    assert (odd.write_rows, odd.update_rows, odd.delete_rows) == (12, None, None)
    assert odd.counters == Counters(bytes_read=2048)
    assert odd.error_summary == "12"
    assert capped.progress == 100.0  # 250 capped
    assert capped.counters is None  # a list where an object is documented
    assert latest(subs) is capped
    for sub in subs:
        assert_well_typed(sub)


def test_history_and_latest() -> None:
    payload = load("submissions_history.json")
    subs = parse_submissions(payload)
    assert [s.submission_id for s in subs] == [3, 2, 1]
    newest = latest(subs)
    assert newest is not None and newest.submission_id == 3
    assert latest(list(reversed(subs))) is newest
    assert latest([]) is None
    # without ids the creation date decides; with neither, the first listed
    undated = [Submission(job_name="a", creation_date=1.0), Submission(job_name="a", creation_date=2.0)]
    assert latest(undated) is undated[1]
    bare = [Submission(job_name="a"), Submission(job_name="b")]
    assert latest(bare) is bare[0]


@pytest.mark.parametrize(
    ("parse", "payload"),
    [
        (parse_clusters, []),
        (parse_clusters, {"clusters": {}}),
        (parse_clusters, {}),
        (parse_job_page, {"total": 1}),
        (parse_job_page, "jobs"),
        (parse_submissions, None),
        (parse_submissions, {"submissions": "x"}),
        (parse_submissions, load("error_cdm_0100.json")),
    ],
)
def test_wrong_overall_shape_raises_shape_error(parse: Any, payload: Any) -> None:
    with pytest.raises(ShapeError):
        parse(payload)


# --- properties --------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=10**300, max_value=10**400)  # JSON integers are unbounded
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "-1", "1536905778725", "NaN", "1e999", "true", "FALSE", "  42 ", "0x10", "12.5"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8)
            | st.sampled_from(["clusters", "jobs", "submissions", "name", "job-name", "id", "status"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)
PARSERS = (parse_clusters, parse_job_page, parse_submissions)


def _check(parse: Any, payload: Any) -> None:
    try:
        result = parse(payload)
    except ShapeError:
        return
    records = result.jobs if isinstance(result, JobPage) else result
    if isinstance(result, JobPage):
        assert_well_typed(result)
    for record in records:
        assert_well_typed(record)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=json_values, list_key=st.sampled_from(["clusters", "jobs", "submissions"]))
def test_arbitrary_json_never_escapes(payload: Any, list_key: str) -> None:
    for parse in PARSERS:
        _check(parse, payload)
        # also as the list of records under the right key, so record parsing is reached
        _check(parse, {list_key: payload if isinstance(payload, list) else [payload]})


REAL_PAYLOADS = [
    load(name)
    for name in sorted(p.name for p in FIXTURES.glob("*.json"))
    if name.startswith(("list_clusters", "job_list", "job_status", "submissions"))
]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A real payload with a few values replaced by arbitrary JSON, keys deleted, or records
    replaced, at any depth."""
    payload = copy.deepcopy(draw(st.sampled_from(REAL_PAYLOADS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        node: Any = payload
        path_length = draw(st.integers(min_value=0, max_value=5))
        for _ in range(path_length):
            children = (
                list(node.keys())
                if isinstance(node, dict)
                else list(range(len(node)))
                if isinstance(node, list)
                else []
            )
            if not children:
                break
            key = draw(st.sampled_from(children))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
            if draw(st.booleans()):
                node[key] = draw(json_values)
            else:
                del node[key]
        elif isinstance(node, list) and node:
            node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(json_values)
    return payload


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated())
def test_mutated_real_payloads_never_escape(payload: Any) -> None:
    for parse in PARSERS:
        _check(parse, payload)


def test_type_check_helper_can_fail() -> None:
    """The property tests are only as good as this check: it must reject wrong types."""
    with pytest.raises(AssertionError):
        assert_well_typed(Submission(job_name="a", submission_id=True))  # bool is an int to mypy
    with pytest.raises(AssertionError):
        assert_well_typed(JobSummary(name="a", creation_date=-1.0))
    with pytest.raises(AssertionError):
        assert_well_typed(Submission(job_name="a", progress=float("nan")))
    with pytest.raises(AssertionError):
        assert_well_typed(Submission(job_name="a", counters={"x": 1}))  # type: ignore[arg-type]


def test_huge_integers_do_not_overflow() -> None:
    """JSON integers are unbounded; a 400-digit number must cost only its field."""
    huge = 10**400
    (sub,) = parse_submissions({"submissions": [{"job-name": "a", "creation-date": huge, "progress": huge}]})
    assert (sub.creation_date, sub.progress) == (None, None)
    (job,) = parse_job_page({"jobs": [{"name": huge}]}).jobs
    assert job.name == str(huge)
