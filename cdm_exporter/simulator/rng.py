"""Deterministic pseudo-randomness keyed by names instead of call order.

The simulator computes every value (job names, run durations, quirk choices, ...) as a pure
function of the seed and a few labels.  Hashing the labels, rather than drawing from one
``random.Random`` stream, keeps a value stable when unrelated things change: adding a job
does not reshuffle the durations of every other job's runs, and two simulators with the same
seed and the same clock answer byte-for-byte the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_SEP = "\x1f"


def _digest(parts: tuple[object, ...]) -> bytes:
    text = _SEP.join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def unit(*parts: object) -> float:
    """A float in [0, 1) determined by ``parts``."""
    return int.from_bytes(_digest(parts)[:8], "big") / 2.0**64


def between(low: float, high: float, *parts: object) -> float:
    """A float in [low, high) determined by ``parts``."""
    return low + (high - low) * unit(*parts)


def randint(low: int, high: int, *parts: object) -> int:
    """An int in [low, high] (both inclusive) determined by ``parts``."""
    return low + int(unit(*parts) * (high - low + 1))


def chance(probability: float, *parts: object) -> bool:
    """True with the given probability, determined by ``parts``."""
    return unit(*parts) < probability


def choice(options: Sequence[T], *parts: object) -> T:
    """One element of ``options`` determined by ``parts``."""
    return options[int(unit(*parts) * len(options))]


def weighted(options: Sequence[tuple[T, float]], *parts: object) -> T:
    """One value of ``(value, weight)`` pairs, chosen with probability proportional to weight."""
    total = sum(w for _, w in options)
    point = unit(*parts) * total
    for value, w in options:
        point -= w
        if point < 0:
            return value
    return options[-1][0]


def hex_string(length: int, *parts: object) -> str:
    """``length`` lower-case hex digits determined by ``parts``."""
    out = ""
    counter = 0
    while len(out) < length:
        out += hashlib.blake2b(_digest((*parts, counter)), digest_size=32).hexdigest()
        counter += 1
    return out[:length]


def uuid_string(*parts: object) -> str:
    """A version-4-shaped UUID string determined by ``parts`` (CDM cluster ids look like this)."""
    h = hex_string(32, *parts)
    variant = "89ab"[int(h[16], 16) % 4]
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"
