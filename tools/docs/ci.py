"""OPERATIONS.md's "What CI runs", rendered from ``.ci/run`` and ``noxfile.py``.

``.ci/run`` is cut in steps (``step "TITLE"`` ... ``end``). Each step becomes one item of a
numbered list: its title, the Markdown of its ``#:`` lines, and the commands it runs that a
reader needs to see -- package installs, ``python -m`` modules, engines started, kernel
settings, Nox sessions, benchmarks -- as the script writes them. The README's commands, which
the script reads with ``python -m tools.docs.readme``, are shown as the README has them, and
each Nox session a step starts is followed by the pytest command ``noxfile.py`` gives it.

So the section says what CI runs without anyone keeping it: edit ``.ci/run`` or the noxfile,
run ``python -m tools.docs``, and ``--check`` holds again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from . import readme
from .sessions import Session

#: What a reader needs to see of a step: the commands these patterns find, as written.
SHOWN = re.compile(
    r"apt-get\s+install\s[^;&|>]*"
    r"|pip3?\s+install\s[^;&|>]*"
    r"|python3?\s+-m\s+[\w.]+[^;&|>\"')]*"
    r"|(?<![\w/.-])dockerd(?:-rootless\.sh)?\s+--[^;&|>\"')]*"
    r"|sysctl\s+-w\s[^;&|>\"')]*"
    r"|nox\s+-s\s[^;&|>\"')]*"
    r"|benchmarks/[\w*]+\.py")
#: An assignment from the README: ``name=$(python -m tools.docs.readme which)``.
README_ASSIGNMENT = re.compile(r"^(\w+)=\$\(python3?\s+-m\s+tools\.docs\.readme\s+(\w+)\)$")
STEP = re.compile(r"""^step\s+(["'])(.+)\1$""")
NOX = re.compile(r"nox\s+-s\s+(.+)")


@dataclass
class Step:
    title: str
    doc: list[str]
    lines: list[str]  # logical lines: continuations joined, comments dropped


def logical_lines(script: str) -> list[tuple[str, str]]:
    """(kind, text) per line: ``doc`` for a ``#:`` line, ``code`` for a logical line of code
    (backslash continuations joined; comment lines and trailing ``# comments`` dropped)."""
    out: list[tuple[str, str]] = []
    for line in re.sub(r"\\\n", " ", script).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            out.append(("doc", stripped[2:].strip()))
            continue
        code = re.sub(r"(^|\s)#(?![!{]).*$", "", stripped).strip()
        if code:
            out.append(("code", code))
    return out


def steps(script: str) -> tuple[list[Step], dict[str, str]]:
    """The steps of the script, and the variables it assigns from the README (name -> which)."""
    found: list[Step] = []
    readme_vars: dict[str, str] = {}
    for kind, text in logical_lines(script):
        m = STEP.match(text) if kind == "code" else None
        if m:
            found.append(Step(m.group(2), [], []))
            continue
        assignment = README_ASSIGNMENT.match(text) if kind == "code" else None
        if assignment:
            readme_vars[assignment.group(1)] = assignment.group(2)
        elif found and kind == "doc":
            found[-1].doc.append(text)
        elif found:
            found[-1].lines.append(text)
    return found, readme_vars


def _code(text: str) -> str:
    """``text`` as an inline code span (longer fences when it holds backticks)."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _sessions_note(command: str, sessions: dict[str, Session]) -> str:
    """What the sessions of a ``nox -s`` command run with pytest, per ``noxfile.py``."""
    m = NOX.match(command)
    if not m:
        return ""
    names = []
    for word in m.group(1).split():
        if word.startswith("-"):
            break
        names.append(word)
    unknown = [n for n in names if n not in sessions]
    if unknown:
        raise ValueError(f"{command!r} runs Nox session(s) noxfile.py does not have: {', '.join(unknown)}")
    notes = [f"`{n}` runs {', '.join(_code(p) for p in sessions[n].pytest())}" for n in names if sessions[n].pytest()]
    return f" ({'; '.join(notes)})" if notes else ""


def shown(step: Step, readme_vars: dict[str, str], readme_text: str, sessions: dict[str, Session]) -> list[str]:
    """The commands of a step a reader sees, in order, each once, with what its sessions run."""
    out: list[str] = []
    for line in step.lines:
        if README_ASSIGNMENT.match(line):
            continue
        found: list[tuple[int, str]] = [(m.start(), " ".join(m.group(0).split())) for m in SHOWN.finditer(line)]
        for name, which in readme_vars.items():
            for m in re.finditer(rf"\$(?:{name}\b|\{{{name}\}})", line):
                command = readme.command(readme_text, which)
                found.append((m.start(), f"{readme.LABELS[which]} {_code(command)}{_sessions_note(command, sessions)}"))
        for _, text in sorted(found):
            item = text if text.startswith(("README", "the README")) else _code(text) + _sessions_note(text, sessions)
            if item not in out:
                out.append(item)
    return out


def render(script: str, readme_text: str, sessions: Iterable[Session], options: dict[str, str]) -> str:
    """The numbered list of CI's steps."""
    if options:
        raise ValueError(f"ci:begin takes no option ({', '.join(sorted(options))})")
    by_name = {s.name: s for s in sessions}
    found, readme_vars = steps(script)
    if not found:
        raise ValueError("the CI script has no `step \"TITLE\"` line: nothing to render")
    items = []
    for n, step in enumerate(found, start=1):
        text = f"**{step.title}.**"
        if step.doc:
            text += " " + " ".join(step.doc)
        commands = shown(step, readme_vars, readme_text, by_name)
        if commands:
            text += " Runs: " + "; ".join(commands) + "."
        items.append(f"{n}. {text}")  # one line each: a wrapped line could start a block of its own
    return "\n".join(items)
