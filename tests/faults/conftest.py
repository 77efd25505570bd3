"""Fixtures of the fault-injection suite; the shared ones are in tests/conftest.py.

* every test's temp dir is searched for secret values after the test (``LEDGER.harvest``), so
  the hygiene test can look for each of them in every output the suite produced;
* a test that fails marks every row of the reliability table it touched as failed, a skipped
  module marks its rows as not run, with the reason;
* at the end of the session the table goes to ``build/reliability.{json,md}`` (git-ignored).
  No tracked file is written: ``python -m tests.faults.report`` copies a complete run into
  ``docs/reliability.md`` (``report.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import report
from .support import LEDGER


@pytest.fixture(autouse=True)
def _ledger(request: pytest.FixtureRequest, tmp_path: Path):
    LEDGER.current_test = request.node.nodeid
    yield
    LEDGER.harvest(tmp_path)


def kill_cases() -> int:
    """Kill cases per task (``READINESS_FAULT_KILLS``); the default keeps the suite short on 2 cores."""
    return max(1, int(os.environ.get("READINESS_FAULT_KILLS", "10")))


def seed() -> int:
    return int(os.environ.get("READINESS_FAULT_SEED", "6"))


def _reason(report_: pytest.TestReport) -> str:
    crash = getattr(report_.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report_.longrepr)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "see the test log")
    return line if len(line) <= 160 else line[:157] + "..."


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.failed:
        LEDGER.test_failed(item.nodeid, f"{item.name}: {_reason(rep)}")
    elif rep.skipped and hasattr(rep, "wasxfail"):
        LEDGER.test_failed(item.nodeid, f"{item.name}: expected failure ({rep.wasxfail})")
    elif rep.skipped and isinstance(rep.longrepr, tuple):  # (file, line, "Skipped: reason")
        LEDGER.test_skipped(item.module.__name__.rsplit(".", 1)[-1], rep.longrepr[2].removeprefix("Skipped: "))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the run's table to the build artifacts, when this session ran a fault test."""
    if not LEDGER.rows:
        return
    report.write_artifacts(LEDGER.result(seed=seed(), kills=kill_cases()))
