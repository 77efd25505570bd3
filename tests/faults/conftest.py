"""Fixtures of the fault-injection suite (issue #6); the shared ones are in tests/conftest.py.

* every test's temp dir is searched for secret values after the test (``LEDGER.harvest``), so
  the hygiene test can look for each of them in every output the suite produced;
* at the end of a session that ran every row of the reliability table, the table in
  ``docs/reliability.md`` is rewritten from the counters of this run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from .support import DOC, LEDGER, ROWS

START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"


@pytest.fixture(autouse=True)
def _harvest_secrets(tmp_path: Path):
    yield
    LEDGER.harvest(tmp_path)


def kill_cases() -> int:
    """Kill cases per task (``READINESS_FAULT_KILLS``); the default keeps the suite short on 2 cores."""
    return max(1, int(os.environ.get("READINESS_FAULT_KILLS", "10")))


def render_table() -> str:
    lines = ["| Fault or input class | Cases tried | Outcome | Data lost |", "|---|---:|---|---|"]
    for key in ROWS:
        row = LEDGER.rows[key]
        cells = [row.fault, str(row.cases), row.outcome, row.lost]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Rewrite the table when this run filled every row (a partial run leaves the doc alone)."""
    if set(LEDGER.rows) != set(ROWS) or not DOC.is_file():
        return
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return
    seed = os.environ.get("READINESS_FAULT_SEED", "6")
    table = (f"{START}\n_Written by `pytest tests/faults` (seed {seed}, {kill_cases()} kill cases per task)._\n\n"
             f"{render_table()}\n{END}")
    new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: table, text, flags=re.S)
    if new != text:
        DOC.write_text(new, encoding="utf-8")
