"""The task tables of README.md and OPERATIONS.md, rendered from Invoke's own task list.

Why generated: a hand-written table drifts from ``tasks.py`` (OPERATIONS.md once documented
``invoke logs --service`` after the argument had become positional). Here every row comes
from the collection Invoke builds from ``tasks.py`` at run time -- task names, docstrings,
arguments, their kinds, defaults and ``help`` -- so a new task or option shows up in the
tables on the next run of ``python -m tools.docs``, and ``--check`` fails until then.

The begin marker chooses the tasks and the style::

    <!-- tasks:begin -->                              every task: Command | What it does
    <!-- tasks:begin style=full only=up,health -->    these tasks, with their options
    <!-- tasks:begin style=full except=up,health -->  every other task (a new one lands here)
    <!-- tasks:end -->

Tasks keep the order of ``tasks.py``.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .table import cell as _cell

STYLES = ("summary", "full")


@dataclass(frozen=True)
class Option:
    flag: str  # --timeout
    short: str | None  # -t
    value: str | None  # INT, STRING, FLOAT; None for a switch
    default: object
    help: str
    repeatable: bool = False


@dataclass(frozen=True)
class TaskDoc:
    name: str
    summary: str
    positional: tuple[str, ...]
    options: tuple[Option, ...]

    @property
    def usage(self) -> str:
        return " ".join(["invoke", self.name, *(p.upper() for p in self.positional)])


def _one_paragraph(doc: str | None) -> str:
    first = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def _option(arg) -> Option:
    names = sorted(arg.names, key=len, reverse=True)
    long = names[0].replace("_", "-")
    short = next((n for n in names[1:] if len(n) == 1), None)
    kind = arg.kind
    if kind is bool:
        flag, value = (f"--no-{long}" if arg.default else f"--{long}"), None
    elif kind is list:
        flag, value = f"--{long}", "STRING"
    else:
        flag, value = f"--{long}", getattr(kind, "__name__", "value").upper()
    return Option(flag, f"-{short}" if short else None, value, arg.default, " ".join((arg.help or "").split()),
                  repeatable=kind is list)


def load_tasks(tasks_py: Path) -> list[TaskDoc]:
    """Every task of the collection Invoke builds from ``tasks_py``, in the file's order."""
    import invoke

    name = f"_readiness_docs_tasks_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, tasks_py)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {tasks_py}")
    module = importlib.util.module_from_spec(spec)
    added = str(tasks_py.parent) not in sys.path
    if added:  # as Invoke does: tasks.py imports from its own directory
        sys.path.insert(0, str(tasks_py.parent))
    try:
        spec.loader.exec_module(module)
        collection = invoke.Collection.from_module(module)
    finally:
        sys.modules.pop(name, None)
        if added:
            sys.path.remove(str(tasks_py.parent))
    out = []
    for task_name, task in collection.tasks.items():
        args = task.get_arguments()
        out.append(TaskDoc(
            name=task_name,
            summary=_one_paragraph(task.__doc__),
            positional=tuple(a.name for a in args if a.positional),
            options=tuple(_option(a) for a in args if not a.positional),
        ))
    return out


def _synopsis(task: TaskDoc) -> str:
    parts = [task.usage]
    for opt in task.options:
        parts.append(f"[{opt.flag}{' ' + opt.value if opt.value else ''}]")
    return " ".join(parts)


def _option_text(opt: Option) -> str:
    head = f"`{opt.flag}{' ' + opt.value if opt.value else ''}`"
    notes = [f"`{opt.short}`"] if opt.short else []
    if opt.repeatable:
        notes.append("repeatable")
    elif opt.value and opt.default not in (None, ""):
        notes.append(f"default {opt.default}")
    head += f" ({', '.join(notes)})" if notes else ""
    return f"{head}: {opt.help}" if opt.help else head


def render_table(tasks: Iterable[TaskDoc], style: str = "summary") -> str:
    tasks = list(tasks)
    if style == "summary":
        lines = ["| Command | What it does |", "|---|---|"]
        lines += [f"| `{_cell(_synopsis(t))}` | {_cell(t.summary)} |" for t in tasks]
    elif style == "full":
        lines = ["| Command | What it does | Options |", "|---|---|---|"]
        for t in tasks:
            options = "<br>".join(_option_text(o) for o in t.options) or "none"
            lines.append(f"| `{_cell(t.usage)}` | {_cell(t.summary)} | {_cell(options)} |")
    else:
        raise ValueError(f"unknown table style {style!r} (one of {', '.join(STYLES)})")
    return "\n".join(lines)


def select(tasks: list[TaskDoc], spec: dict[str, str]) -> list[TaskDoc]:
    """The tasks ``only=`` or ``except=`` choose, in the order of ``tasks.py``."""
    names = [t.name for t in tasks]
    for key in ("only", "except"):
        unknown = [n for n in spec.get(key, "").split(",") if n and n not in names]
        if unknown:
            raise ValueError(f"tasks:begin {key}= names no task: {', '.join(unknown)}")
    if "only" in spec:
        wanted = spec["only"].split(",")
        return sorted((t for t in tasks if t.name in wanted), key=lambda t: names.index(t.name))
    dropped = set(spec.get("except", "").split(","))
    return [t for t in tasks if t.name not in dropped]


def render(tasks: list[TaskDoc], options: dict[str, str]) -> str:
    """The table a ``tasks`` block with these options shows."""
    unknown = set(options) - {"style", "only", "except"}
    if unknown:
        raise ValueError(f"tasks:begin: unknown option {', '.join(sorted(unknown))} (style=, only=, except=)")
    return render_table(select(tasks, options), options.get("style", "summary"))
