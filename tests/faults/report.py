"""The reliability table: written by a run of the fault suite, copied into the docs on request.

A run of ``tests/faults`` never edits a tracked file. At the end of the session it writes
what it asserted to two git-ignored artifacts:

* ``build/reliability.json``: the rows (fault, cases tried, outcome, data lost, status) and
  the run's settings;
* ``build/reliability.md``: the same rows as the Markdown block of ``docs/reliability.md``.

``docs/reliability.md`` changes only through the explicit command::

    python -m tests.faults.report            # copy the latest complete run into docs/reliability.md
    python -m tests.faults.report --check    # exit 1 when the document differs from the latest run

which refuses a run that left a row failed or not run (a partial run, ``-k``, one file).
Every outcome cell lists the claims the tests asserted and that held (``Row.check`` in
``support.py``), with how many times; figures the tests measured without asserting them are
marked as such. This module is plain Python (no pytest), so the command needs no test run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
DOC = REPO / "docs" / "reliability.md"
ARTIFACT_DIR = REPO / "build"
JSON_ARTIFACT = ARTIFACT_DIR / "reliability.json"
MD_ARTIFACT = ARTIFACT_DIR / "reliability.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
#: Row status values (``status`` in the JSON artifact).
PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| Fault or input class | Cases tried | Outcome | Data lost |", "|---|---:|---|---|"]
    for row in rows:
        cells = [row["fault"], str(row["cases"]), row["outcome"], row["lost"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def render_block(run: dict[str, Any]) -> str:
    """The marked block of docs/reliability.md for one run."""
    note = (f"_From a full run of `python -m pytest tests/faults` (seed {run['seed']}, {run['kills']} kill "
            f"cases per task), copied here by `python -m tests.faults.report`._")
    return f"{START}\n{note}\n\n{render_table(run['rows'])}\n{END}"


def incomplete(run: dict[str, Any]) -> list[str]:
    """Rows that keep this run out of the docs: failed or not run."""
    return [f"{row['fault']}: {row['status']}" for row in run["rows"] if row["status"] != PASSED]


def write_artifacts(run: dict[str, Any], directory: Path = ARTIFACT_DIR) -> Path:
    """Write the run's JSON and Markdown artifacts (atomically: a reader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("reliability.json", json.dumps(run, indent=2) + "\n"),
                       ("reliability.md", render_block(run) + "\n")):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, directory / name)
    return directory / "reliability.md"


def updated_doc(doc_text: str, run: dict[str, Any]) -> str:
    if START not in doc_text or END not in doc_text:
        raise ValueError(f"{DOC.name} has no {START} ... {END} block")
    block = render_block(run)
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, doc_text, flags=re.S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the document differs")
    parser.add_argument("--from", dest="source", type=Path, default=JSON_ARTIFACT, help="the run's JSON artifact")
    args = parser.parse_args(argv)
    try:
        run = json.loads(args.source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the fault suite's results {args.source}: {exc}\n"
              "  fix:   run `python -m pytest tests/faults` first", file=sys.stderr)
        return 1
    missing = incomplete(run)
    if missing:
        print(f"error: the run in {args.source} is not complete, {len(missing)} row(s) did not pass:\n  "
              + "\n  ".join(missing) + "\n  fix:   run the whole fault suite until it passes: "
              "`python -m pytest tests/faults`", file=sys.stderr)
        return 1
    text = DOC.read_text(encoding="utf-8")
    new = updated_doc(text, run)
    if args.check:
        if new != text:
            print(f"{DOC.relative_to(REPO)} differs from the latest run ({args.source}); "
                  "run `python -m tests.faults.report`", file=sys.stderr)
            return 1
        print(f"{DOC.relative_to(REPO)} matches the latest run")
        return 0
    if new == text:
        print(f"{DOC.relative_to(REPO)}: nothing changed")
        return 0
    DOC.write_text(new, encoding="utf-8")
    print(f"{DOC.relative_to(REPO)}: table updated from {args.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
