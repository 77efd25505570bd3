"""Every ``invoke <task>`` and ``nox -s <session>`` a document shows in code exists.

Code is what markdown-it-py calls code: fenced and indented blocks, and inline spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .markdown import Doc, code

_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_INVOKE = re.compile(r"(?:^|[\s;&|(`$])invoke\s+([^\s`'\")]+)")
_NOX = re.compile(r"(?:^|[\s;&|(`])nox\s+(?:-s|--sessions?)\s+((?:[a-z][\w-]*\s*)+)")


def problems(root: Path, files: Iterable[Path], task_names: Iterable[str], session_names: Iterable[str]) -> list[str]:
    tasks, sessions = set(task_names), set(session_names)
    out = []
    for md in files:
        rel = md.relative_to(root) if root in md.parents else md
        for line, text in code(Doc.parse(md.read_text(encoding="utf-8", errors="replace"))):
            for m in _INVOKE.finditer(text):
                name = m.group(1)
                if _NAME.fullmatch(name) and name not in tasks:
                    out.append(f"{rel}:{line}: `invoke {name}` names no Invoke task")
            for m in _NOX.finditer(text):
                out += [f"{rel}:{line}: `nox -s {name}` names no Nox session"
                        for name in m.group(1).split() if name not in sessions]
    return out
