"""Job runs as a pure function of (seed, job profile, mutations, simulated time).

A job with a schedule owns an endless sequence of *slots*: slot ``r`` starts near
``anchor + r * period`` (plus a drawn jitter) and lasts a drawn duration shorter than the
period, so runs of one job never overlap.  Every property of a run (duration, boot phase,
outcome, row counts, error text) is drawn from ``rng`` keyed by the seed, the job and the slot,
so asking "what did this job look like at time T" needs no stored state and no replay: a fixed
clock gives fixed answers, and moving the clock backwards is as valid as moving it forwards.

Mutations made from Python (start a run now, force an outcome, end a run now) are recorded as
*manual runs* and *overrides*; scheduled slots that would overlap a manual run are suppressed.
All times in this module are simulated seconds (see ``World`` for the mapping to wall time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cdm_exporter.simulator import rng

RunKey = tuple[Literal["s", "m"], int]
"""("s", slot) for a scheduled slot, ("m", n) for the n-th manual run of a job."""

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
FAILURE_ON_SUBMIT = "FAILURE_ON_SUBMIT"
BOOTING = "BOOTING"
PENDING = "PENDING"
RUNNING = "RUNNING"
NEVER_EXECUTED = "NEVER_EXECUTED"
STOPPED = "STOPPED"

# How a run can end. STOPPED (seen in the console, not in the API enum) is never drawn; it
# only happens when forced from Python, like a user pressing "stop".
OUTCOMES = (SUCCEEDED, FAILED, FAILURE_ON_SUBMIT, STOPPED)

# Running runs report progress in ticks, like a heartbeat from the cluster: progress, counters
# and last-update-date move together and stay constant between ticks.
HEARTBEAT_SECONDS = 3.0


@dataclass(frozen=True)
class RunOverride:
    """A mutation of one run: force its outcome, its end time and/or its nominal duration."""

    outcome: str | None = None
    end: float | None = None
    duration: float | None = None


@dataclass(frozen=True)
class ManualRun:
    """A run started from Python ("start a run now")."""

    start: float
    duration: float | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Schedule:
    """Slot geometry. ``last_slot`` bounds the slots of a job that is not scheduled but has a
    history of (manually started) runs; ``None`` means the schedule goes on forever."""

    anchor: float
    period: float
    first_slot: int
    last_slot: int | None = None


@dataclass(frozen=True)
class JobProfile:
    """Immutable per-job parameters, drawn once from the seed."""

    key: str
    schedule: Schedule | None
    mean_duration: float
    boot_seconds: float
    fail_probability: float
    rows_mean: int
    bytes_per_row: int
    files_mean: int
    skip_ratio: float
    incremental: bool
    seed: int
    base_overrides: Mapping[int, RunOverride] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One run, fully determined: phases and totals. ``nominal_end`` is where a successful run
    would end; the actual ``end`` is earlier for failures."""

    key: RunKey
    start: float
    boot_end: float
    nominal_end: float
    end: float
    outcome: str
    boot_status: str
    total_rows: int
    total_bytes: int
    total_files: int
    skip_ratio: float
    incremental: bool
    error_index: int

    def fraction_at(self, t: float) -> float:
        """Share of the work done at ``t`` (0..1), following the run's steady pace."""
        if t <= self.boot_end:
            return 0.0
        span = self.nominal_end - self.boot_end
        if span <= 0:
            return 1.0
        return min(1.0, (t - self.boot_end) / span)


@dataclass(frozen=True)
class RunState:
    """A run as observed at some time: what ShowJobStatus would say about it then."""

    run: Run
    submission_id: int
    status: str
    progress: float
    finished: bool
    last_update: float
    rows_read: int
    rows_written: int
    rows_skipped: int
    bytes_read: int
    bytes_written: int
    files_read: int
    files_written: int
    files_skipped: int
    write_rows: int
    update_rows: int
    delete_rows: int


def _draw_duration(profile: JobProfile, key: RunKey) -> float:
    return profile.mean_duration * rng.between(0.7, 1.3, profile.seed, profile.key, key, "duration")


def build_run(
    profile: JobProfile,
    key: RunKey,
    start: float,
    override: RunOverride | None,
    duration: float | None = None,
) -> Run:
    """Draw every property of the run ``key`` of ``profile`` starting at ``start``."""
    seed, pk = profile.seed, profile.key
    nominal = duration
    if override is not None and override.duration is not None:
        nominal = override.duration
    if nominal is None:
        nominal = _draw_duration(profile, key)
    boot = min(profile.boot_seconds * rng.between(0.6, 1.4, seed, pk, key, "boot"), nominal * 0.4)
    boot_status = PENDING if rng.chance(0.12, seed, pk, key, "pending") else BOOTING
    outcome = rng.weighted(
        [
            (FAILURE_ON_SUBMIT, 0.02),
            (FAILED, profile.fail_probability),
            (SUCCEEDED, max(0.0, 0.98 - profile.fail_probability)),
        ],
        seed,
        pk,
        key,
        "outcome",
    )
    if override is not None and override.outcome is not None:
        outcome = override.outcome
    boot_end = start + boot
    nominal_end = start + nominal
    if outcome == FAILURE_ON_SUBMIT:
        end = boot_end
    elif outcome == FAILED:
        end = boot_end + (nominal_end - boot_end) * rng.between(0.1, 0.9, seed, pk, key, "fail_at")
    else:
        end = nominal_end
    if override is not None and override.end is not None:
        end = max(start, override.end)
        boot_end = min(boot_end, end)
    rows = int(profile.rows_mean * rng.between(0.5, 1.5, seed, pk, key, "rows"))
    files = (
        int(profile.files_mean * rng.between(0.5, 1.5, seed, pk, key, "files")) if profile.files_mean else 0
    )
    return Run(
        key=key,
        start=start,
        boot_end=boot_end,
        nominal_end=nominal_end,
        end=end,
        outcome=outcome,
        boot_status=boot_status,
        total_rows=rows,
        total_bytes=rows * profile.bytes_per_row,
        total_files=files,
        skip_ratio=profile.skip_ratio,
        incremental=profile.incremental,
        error_index=rng.randint(0, 1_000_000, seed, pk, key, "error"),
    )


def _merge(base: RunOverride | None, top: RunOverride | None) -> RunOverride | None:
    """A mutation on top of a built-in override: the mutation wins where it says something."""
    if base is None or top is None:
        return top if base is None else base
    return RunOverride(
        outcome=top.outcome if top.outcome is not None else base.outcome,
        end=top.end if top.end is not None else base.end,
        duration=top.duration if top.duration is not None else base.duration,
    )


def slot_run(profile: JobProfile, slot: int, overrides: Mapping[RunKey, RunOverride]) -> Run:
    """The run of scheduled ``slot`` (its start includes a jitter that keeps it inside the slot)."""
    sched = profile.schedule
    assert sched is not None
    key: RunKey = ("s", slot)
    override = _merge(profile.base_overrides.get(slot), overrides.get(key))
    nominal = override.duration if override is not None and override.duration is not None else None
    if nominal is None:
        nominal = _draw_duration(profile, key)
    slack = max(0.0, sched.period - nominal)
    jitter = slack * 0.4 * rng.unit(profile.seed, profile.key, key, "jitter")
    return build_run(profile, key, sched.anchor + slot * sched.period + jitter, override, nominal)


def _last_started_slot(profile: JobProfile, t: float, overrides: Mapping[RunKey, RunOverride]) -> int | None:
    sched = profile.schedule
    if sched is None:
        return None
    h = math.floor((t - sched.anchor) / sched.period)
    if sched.last_slot is not None:
        h = min(h, sched.last_slot)
    if h < sched.first_slot:
        return None
    if slot_run(profile, h, overrides).start > t:
        h -= 1
    return h if h >= sched.first_slot else None


def next_slot_after(profile: JobProfile, t: float, overrides: Mapping[RunKey, RunOverride]) -> int | None:
    """The first scheduled slot that starts strictly after ``t``, if the job has one."""
    sched = profile.schedule
    if sched is None:
        return None
    h = _last_started_slot(profile, t, overrides)
    candidate = sched.first_slot if h is None else h + 1
    candidate = max(candidate, sched.first_slot)
    if sched.last_slot is not None and candidate > sched.last_slot:
        return None
    return candidate


def _manual_runs(
    profile: JobProfile, manual: Sequence[ManualRun], overrides: Mapping[RunKey, RunOverride]
) -> list[Run]:
    runs = []
    for i, m in enumerate(manual):
        key: RunKey = ("m", i)
        override = _merge(RunOverride(outcome=m.outcome), overrides.get(key))
        runs.append(build_run(profile, key, m.start, override, m.duration))
    return runs


def timeline(
    profile: JobProfile,
    manual: Sequence[ManualRun],
    overrides: Mapping[RunKey, RunOverride],
    t: float,
    limit: int,
) -> tuple[list[Run], int]:
    """The newest ``limit`` runs started at or before ``t`` (newest first) and how many runs
    have started in total (which numbers the submissions)."""
    manual_runs = [r for r in _manual_runs(profile, manual, overrides) if r.start <= t]
    sched = profile.schedule
    hi = _last_started_slot(profile, t, overrides)
    suppressed: set[int] = set()
    slot_count = 0
    if sched is not None and hi is not None:
        lo = sched.first_slot
        slot_count = hi - lo + 1
        for m in manual_runs:
            first = max(lo, math.floor((m.start - sched.anchor) / sched.period) - 1)
            last = min(hi, math.floor((m.end - sched.anchor) / sched.period) + 1)
            for r in range(first, last + 1):
                s = slot_run(profile, r, overrides)
                if s.start < m.end and s.end > m.start:
                    suppressed.add(r)
    scheduled: list[Run] = []
    if sched is not None and hi is not None:
        r = hi
        while r >= sched.first_slot and len(scheduled) < limit:
            if r not in suppressed:
                scheduled.append(slot_run(profile, r, overrides))
            r -= 1
    merged = sorted(scheduled + manual_runs, key=lambda run: run.start, reverse=True)[:limit]
    total = slot_count - len(suppressed) + len(manual_runs)
    return merged, total


def observe(run: Run, submission_id: int, t: float) -> RunState:
    """What ``run`` looks like at time ``t`` (which must not be before its start)."""
    if t >= run.end:
        finished = True
        status = run.outcome
        last_update = run.end
        fraction = 1.0 if run.outcome == SUCCEEDED else run.fraction_at(run.end)
        if run.outcome == FAILURE_ON_SUBMIT:
            fraction = 0.0
        progress = 100.0 if run.outcome == SUCCEEDED else -1.0
    elif t < run.boot_end:
        finished = False
        status = run.boot_status
        last_update = run.start
        fraction = 0.0
        progress = 0.0
    else:
        finished = False
        status = RUNNING
        tick = run.boot_end + math.floor((t - run.boot_end) / HEARTBEAT_SECONDS) * HEARTBEAT_SECONDS
        last_update = tick
        fraction = min(run.fraction_at(tick), 0.999)
        progress = round(100.0 * fraction, 1)
    rows_read = int(run.total_rows * fraction)
    rows_skipped = int(rows_read * run.skip_ratio)
    rows_written = rows_read - rows_skipped
    files_read = int(run.total_files * fraction)
    files_skipped = int(files_read * run.skip_ratio)
    update_rows = int(rows_written * 0.1) if run.incremental else 0
    delete_rows = int(rows_written * 0.01) if run.incremental else 0
    bytes_read = int(run.total_bytes * fraction)
    return RunState(
        run=run,
        submission_id=submission_id,
        status=status,
        progress=progress,
        finished=finished,
        last_update=last_update,
        rows_read=rows_read,
        rows_written=rows_written,
        rows_skipped=rows_skipped,
        bytes_read=bytes_read,
        bytes_written=bytes_read - int(bytes_read * run.skip_ratio),
        files_read=files_read,
        files_written=files_read - files_skipped,
        files_skipped=files_skipped,
        write_rows=rows_written - update_rows - delete_rows,
        update_rows=update_rows,
        delete_rows=delete_rows,
    )
