"""The one error type every configuration problem is reported as, and its "did you mean" hint."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(Exception):
    """A configuration value is wrong.

    ``key`` is the dotted path of the offending key (``targets[0].auth.token_file``),
    so that the single line printed before exiting with code 2 names what to fix.
    The message never contains a secret value.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``; case is ignored for matching."""
    by_upper = {choice.upper(): choice for choice in choices}
    close = difflib.get_close_matches(word.upper(), list(by_upper), n=1, cutoff=0.6)
    return f"; did you mean {by_upper[close[0]]!r}?" if close else ""
