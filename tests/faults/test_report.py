"""The reliability table's plumbing: no test run writes the docs, the table
says only what was asserted, and only a complete run reaches docs/reliability.md."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import require_tool  # tests/conftest.py

from . import report
from .support import ROWS, Ledger


def run_of(ledger: Ledger) -> dict:
    return json.loads(json.dumps(ledger.result(seed=6, kills=10)))


def test_a_row_says_what_was_asserted_and_nothing_else():
    ledger = Ledger()
    ledger.current_test = "t::a"
    row = ledger.row("kill.env")
    row.cases += 2
    row.check(True, "every rerun exited 0")
    row.check(1 == 1, "every rerun exited 0", keeps_data=True)
    row.figure("1 kill landed mid-write")
    with pytest.raises(AssertionError, match="no temp file: NOT TRUE"):
        row.check(False, "no temp file", "left .x.tmp")
    assert row.outcome == "every rerun exited 0 (2x). Measured, not asserted: 1 kill landed mid-write"
    assert row.lost == "nothing lost (1 check)"
    ledger.test_failed("t::a", "test_x: boom")
    assert (row.status, row.outcome, row.lost) == (report.FAILED, "FAILED: test_x: boom", "not established")
    ledger.test_skipped("test_engine", "not root")
    rows = {r["key"]: r for r in run_of(ledger)["rows"]}
    assert list(rows) == list(ROWS)
    assert rows["engine.before-up"]["outcome"] == "not run (not root)"
    assert rows["disk.full"]["status"] == report.NOT_RUN


def test_only_a_complete_run_reaches_the_document(tmp_path, capsys):
    ledger = Ledger()
    for key in ROWS:
        ledger.row(key).check(True, "held")
    complete = run_of(ledger)
    assert report.incomplete(complete) == []
    doc = f"# T\n\n{report.START}\nold\n{report.END}\n\ntail\n"
    new = report.updated_doc(doc, complete)
    assert new.startswith("# T\n\n" + report.START) and new.endswith(report.END + "\n\ntail\n")
    assert new.count("| held |") == len(ROWS) and "old" not in new

    ledger.rows["race.bootstrap"].failure = "two networks"
    partial = run_of(ledger)
    assert report.incomplete(partial) == [f"{ROWS['race.bootstrap'][0]}: failed"]
    source = tmp_path / "run.json"
    source.write_text(json.dumps(partial))
    before = report.DOC.read_bytes()
    assert report.main(["--from", str(source)]) == 1
    assert "not complete" in capsys.readouterr().err
    assert report.DOC.read_bytes() == before
    assert report.main(["--from", str(tmp_path / "missing.json")]) == 1


def test_the_artifacts_are_written_outside_git(tmp_path):
    ledger = Ledger()
    ledger.row("hygiene.modes").check(True, "modes match")
    md = report.write_artifacts(run_of(ledger), tmp_path)
    assert md.read_text().startswith(report.START)
    assert json.loads((tmp_path / "reliability.json").read_text())["seed"] == 6
    git = require_tool("git", "the artifacts must be ignored by git")
    for artifact in (report.JSON_ARTIFACT, report.MD_ARTIFACT):
        ignored = subprocess.run([git, "-C", str(report.REPO), "check-ignore", "-q", str(artifact)])
        assert ignored.returncode == 0, f"{artifact} is not git-ignored"
    assert not list(tmp_path.glob(".*.tmp"))
