"""The runbook's troubleshooting table, rendered from the catalogue of finding ids.

One row per id of :data:`readiness.preflight.catalog.CATALOG`, in its order: the id, what it
means, what preflight prints, the likely cause and the fix. The text lives in the catalogue
only, so a new finding cannot ship without its row: ``python -m tools.docs --check`` fails
until the runbook is rendered again.
"""

from __future__ import annotations

from collections.abc import Mapping

from readiness.preflight.catalog import Entry

from .table import table


def render(catalog: Mapping[str, Entry], options: dict[str, str]) -> str:
    if options:
        raise ValueError(f"troubleshooting:begin takes no option ({', '.join(sorted(options))})")
    return table(["Finding id", "What it means", "Symptom", "Cause", "Fix"],
                 [[f"`{ident}`", e.summary, e.symptom, e.cause, e.fix] for ident, e in catalog.items()])
