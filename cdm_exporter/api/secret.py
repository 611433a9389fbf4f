"""The one type every secret (token, password, secret key) is held in, from config to request."""

from __future__ import annotations

import hmac
from typing import NoReturn


class Secret:
    """A secret string that does not show itself.

    ``repr`` and ``str`` give ``Secret('***')``; :meth:`reveal` returns the value for the one
    place that needs it (signing a request, asking IAM for a token). Equality compares values
    in constant time; instances are immutable and hashable so they can sit in frozen
    dataclasses.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret holds a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        # Hashing by value is only safe if the value cannot change afterwards.
        raise AttributeError("Secret is immutable")

    def reveal(self) -> str:
        """Return the secret value. Call it only where the value is sent, never to log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(
            self._value.encode("utf-8", "surrogatepass"), other._value.encode("utf-8", "surrogatepass")
        )

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:  # pickling would write the value out
        raise TypeError("a Secret cannot be pickled")
