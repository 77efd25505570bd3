"""Markdown tables as the renderers write them: one line per row, ``|`` escaped in cells."""

from __future__ import annotations

from collections.abc import Iterable


def cell(text: str) -> str:
    """``text`` as one table cell: on one line, with its pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = [cell(h) for h in header]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
