"""The Nox sessions of ``noxfile.py``, read with ``ast``: names, docstrings, the commands they run.

The sessions table of OPERATIONS.md is rendered from the docstrings (``<!-- sessions:begin -->``),
and "What CI runs" shows the pytest command of each session CI starts. The noxfile is read,
not imported: importing it would need Nox's session machinery, and only its text matters here.
"""

from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass
from pathlib import Path

from .table import table


@dataclass(frozen=True)
class Session:
    name: str
    doc: str  # the docstring, whitespace collapsed per paragraph, paragraphs joined by a space
    runs: tuple[tuple[str, ...], ...]  # the constant leading words of each session.run(...)

    def pytest(self) -> list[str]:
        """Each pytest command the session runs, as a shell would read it."""
        return [shlex.join(words) for words in self.runs if words[:1] == ("pytest",)]


def _session_decorator(decorator: ast.expr) -> tuple[bool, str | None]:
    """Whether ``decorator`` is ``@nox.session`` (called or not), and its ``name=`` if given."""
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    is_session = (isinstance(target, ast.Attribute) and target.attr == "session"
                  and isinstance(target.value, ast.Name) and target.value.id == "nox") or (
        isinstance(target, ast.Name) and target.id == "session")
    name = None
    for kw in call.keywords if call else []:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            name = kw.value.value
    return is_session, name


def _runs(function: ast.FunctionDef) -> tuple[tuple[str, ...], ...]:
    runs = []
    for call in ast.walk(function):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "run":
            words = []
            for arg in call.args:
                if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                    break
                words.append(arg.value)
            if words:
                runs.append(tuple(words))
    return tuple(runs)


def load(noxfile: Path) -> list[Session]:
    """Every session of ``noxfile``, in the file's order, under its ``name=`` if it has one."""
    tree = ast.parse(noxfile.read_text(encoding="utf-8"), filename=str(noxfile))
    out = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            is_session, name = _session_decorator(decorator)
            if is_session:
                paragraphs = (ast.get_docstring(node) or "").split("\n\n")
                doc = " ".join(" ".join(p.split()) for p in paragraphs if p.strip())
                out.append(Session(name or node.name, doc, _runs(node)))  # type: ignore[arg-type]
                break
    return out


def render(sessions: list[Session], options: dict[str, str]) -> str:
    """The sessions table: each session and its docstring."""
    if options:
        raise ValueError(f"sessions:begin takes no option ({', '.join(sorted(options))})")
    return table(["Command", "What it runs"], [[f"`nox -s {s.name}`", s.doc] for s in sessions])
