"""The spec's traceability table: every requirement id has a row, and what a row names exists.

The ids are those of the repository's PRD and plan (``docs/prd``, ``specs/``: the
translations of the seeds). A row's files, tests (``tests/<file>.py::<test>``, or
``Class::test``), Invoke tasks and Nox sessions must exist; tests are found with ``ast``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

from .markdown import Doc, code_spans, inline_text, section, tables

SPEC = "specs/infra-compose-readiness/spec.md"
#: Repository translations of the seeds: the source of the requirement ids.
REQUIREMENT_DOCS = ("docs/prd/infra-compose-readiness-prd.md", "specs/infra-compose-readiness/plan.md")
REQUIREMENT_ID = re.compile(r"\b(?:REQ(?:-[A-Z]+)+-\d+|STORY-\d+|TASK-\d+|VAL(?:-[A-Z]+)+-\d+)\b")


def requirement_ids(paths: Iterable[Path]) -> set[str]:
    ids: set[str] = set()
    for path in paths:
        ids.update(REQUIREMENT_ID.findall(path.read_text(encoding="utf-8")))
    return ids


def defined_tests(path: Path) -> set[str]:
    """``name`` and ``Class::name`` of every function and method defined in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out.update(f"{node.name}::{item.name}" for item in node.body
                       if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return out


def _column(header: list[str], *names: str) -> int | None:
    lowered = [h.strip("* ").lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _test_problems(label: str, ref: str, root: Path) -> list[str]:
    file, _, name = ref.partition("::")
    test_file = root / file
    if not file.startswith("tests/") or not file.endswith(".py") or not name:
        return [f"{label}: test reference {ref} is not of the form tests/<file>.py::<test>"]
    if not test_file.is_file():
        return [f"{label}: test file {file} (for {ref}) does not exist"]
    if name not in defined_tests(test_file):
        return [f"{label}: {file} defines no test {name}"]
    return []


def problems(ids: Iterable[str], spec: Doc, root: Path, task_names: Iterable[str] = (),
             session_names: Iterable[str] = ()) -> list[str]:
    """Every id has a row; every file, test and task a row names exists."""
    body = section(spec, "Traceability")
    if not body.tokens:
        return [f"{SPEC} has no Traceability section"]
    covered: set[str] = set()
    out: list[str] = []
    tasks, sessions = set(task_names), set(session_names)
    for header, rows in tables(body):
        id_col = _column(header, "id")
        if id_col is None:
            continue
        columns = {"file": _column(header, "files", "file"), "test": _column(header, "tests", "test"),
                   "task": _column(header, "task", "tasks", "command", "commands")}
        for row in rows:
            spans = {k: code_spans(row[c]) if c is not None and c < len(row) else [] for k, c in columns.items()}
            row_ids = REQUIREMENT_ID.findall(inline_text(row[id_col]))
            covered.update(row_ids)
            label = ", ".join(row_ids) or inline_text(row[id_col])
            out += [f"{label}: file {path} named in the traceability table does not exist"
                    for path in spans["file"] if not (root / path.rstrip("/")).exists()]
            for ref in spans["test"]:
                out += _test_problems(label, ref, root)
            for cmd in spans["task"]:
                words = cmd.split()
                if words[:1] == ["invoke"] and len(words) > 1 and words[1] not in tasks:
                    out.append(f"{label}: task `{cmd}` names no Invoke task")
                if words[:2] == ["nox", "-s"] and any(w not in sessions for w in words[2:] if not w.startswith("-")):
                    out.append(f"{label}: `{cmd}` names no Nox session")
    out += [f"{ident}: no row in the traceability table of {SPEC}" for ident in sorted(set(ids) - covered)]
    return out
