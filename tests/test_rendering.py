"""Concurrent scrapes of one exposition share a rendering, and never get one older than they are."""

from __future__ import annotations

import threading

import pytest
from exporter_stack import wait_until

from cdm_exporter.web.rendering import SHARE_WINDOW, SharedRenderer


class SlowProduce:
    """Counts its runs; each run waits for ``release`` and returns its run number."""

    def __init__(self) -> None:
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            self.runs += 1
            run = self.runs
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.release.wait(10)
        with self._lock:
            self.running -= 1
        return b"run %d" % run


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_callers_with_newer_data_than_the_running_rendering_share_the_next_one() -> None:
    clock = Clock()
    renderer: SharedRenderer[bytes] = SharedRenderer(clock)
    produce = SlowProduce()
    results: dict[str, bytes] = {}

    def call(name: str) -> None:
        results[name] = renderer.render("metrics", produce)

    first = threading.Thread(target=call, args=("first",))
    first.start()
    wait_until(lambda: produce.runs == 1, 10, "the first rendering never started")
    # 30 scrapes arrive while the first rendering runs: their collections ended after it started
    clock.now += SHARE_WINDOW + 0.5
    late = [threading.Thread(target=call, args=(f"late-{i}",)) for i in range(30)]
    for thread in late:
        thread.start()
    wait_until(lambda: renderer._slots["metrics"].pending is not None, 10, "no next rendering promised")
    produce.release.set()
    for thread in [first, *late]:
        thread.join(10)
    assert results["first"] == b"run 1"
    assert {results[f"late-{i}"] for i in range(30)} == {b"run 2"}  # one rendering, newer than they are
    assert produce.runs == 2 == renderer.renderings
    assert produce.most_at_once == 1
    assert renderer._slots == {}  # nothing is kept once nobody waits


def test_callers_ready_before_the_running_rendering_started_or_just_after_share_it() -> None:
    clock = Clock()
    renderer: SharedRenderer[bytes] = SharedRenderer(clock)
    produce = SlowProduce()
    results: list[bytes] = []
    ready = clock.now  # their collections ended before the rendering starts
    first = threading.Thread(target=lambda: results.append(renderer.render("m", produce, ready)))
    first.start()
    wait_until(lambda: produce.runs == 1, 10, "the rendering never started")
    others = [
        threading.Thread(target=lambda: results.append(renderer.render("m", produce, ready)))
        for _ in range(5)
    ]
    for thread in others:
        thread.start()
    produce.release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == [b"run 1"] * 6 and produce.runs == 1


def test_other_keys_render_apart_and_errors_reach_every_sharer() -> None:
    renderer: SharedRenderer[bytes] = SharedRenderer()
    assert renderer.render(("a", "text"), lambda: b"a") == b"a"
    assert renderer.render(("b", "text"), lambda: b"b") == b"b"

    def broken() -> bytes:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        renderer.render("x", broken)
    assert renderer.render("x", lambda: b"fine") == b"fine"  # the slot was freed
