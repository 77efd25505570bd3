"""Closed sets of words, as enums that behave exactly like the words.

Where a string stands for one of a closed set -- the kinds of engine, the severities of a
finding, the kinds of a health check -- it is a :class:`TextEnum`: the set is written down in
one place, and a misspelt member is an error where it is written instead of a comparison
that silently never holds. A member is a ``str``: it compares and hashes as its word
(``engine.kind == "rootless"`` holds, a dict keyed by ``"error"`` finds ``Severity.ERROR``),
and prints, formats and serialises to JSON as the word, so every message and every ``--json``
document reads byte for byte as it did with plain strings. (``enum.StrEnum`` does the same
from Python 3.11; the toolkit supports 3.10.)
"""

from __future__ import annotations

from enum import Enum


class TextEnum(str, Enum):
    """A closed set of words; a member is its word wherever a string goes."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(str.__str__(self), spec)
