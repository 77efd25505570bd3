"""``.env.example`` lists exactly the variables the stack references, each with a comment.

The variables come from Compose (``docker compose config --variables``, through
:func:`readiness.stack.compose.variables`); the file is read as Compose reads a dotenv file
(:mod:`readiness.stack.envfile`). Not a generated block: each line's comment is prose a
maintainer writes, and ``invoke env`` copies the lines verbatim into a new ``.env``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from readiness.stack import envfile


def _is_comment(line: str) -> bool:
    """A comment line that says something (not a bare ``# ====`` ruler)."""
    line = line.strip()
    return line.startswith("#") and bool(re.search(r"[A-Za-z0-9]", line))


def problems(variables: Iterable[str], example: Path) -> list[str]:
    """Every stack variable is listed once, with a comment line directly above it; nothing else is."""
    wanted = set(variables)
    env = envfile.read(example)
    lines = example.read_text(encoding="utf-8-sig").splitlines()
    out = [f"{example.name}:{n}: malformed line ({msg})" for n, msg in env.errors]
    first: dict[str, envfile.Entry] = {}
    for entry in env.entries:
        if entry.key in first:
            out.append(f"{entry.key}: defined twice in {example.name} (lines {first[entry.key].line} and {entry.line})")
        first.setdefault(entry.key, entry)
    for name in sorted(wanted):
        entry = first.get(name)
        if entry is None:
            out.append(f"{name}: the stack references it but {example.name} does not list it")
        elif entry.line < 2 or not _is_comment(lines[entry.line - 2]):
            out.append(f"{name}: {example.name}:{entry.line} has no comment line directly above it")
    for key, entry in first.items():
        if key not in wanted:
            out.append(f"{key}: in {example.name}:{entry.line} but the stack does not use it")
    return out
