"""The task tables of README.md and OPERATIONS.md, rendered from Invoke's own task list.

    python -m readiness.docs           # rewrite every marked table in place
    python -m readiness.docs --check   # exit 1, naming each table that differs

Why generated: a hand-written table drifts from ``tasks.py`` (OPERATIONS.md once documented
``invoke logs --service`` after the argument had become positional). Here every row comes
from the collection Invoke builds from ``tasks.py`` at run time -- task names, docstrings,
arguments, their kinds, defaults and ``help`` -- so a new task or option shows up in the
tables on the next run, and ``tests/test_docs_drift.py`` fails until the tables are rendered.

A table lives between two marker comments; the begin marker chooses the tasks and the style::

    <!-- tasks:begin -->                              every task: Command | What it does
    <!-- tasks:begin style=full only=up,health -->    these tasks, with their options
    <!-- tasks:begin style=full except=up,health -->  every other task (a new one lands here)
    <!-- tasks:end -->

Tasks keep the order of ``tasks.py``. Only the text between the markers is rewritten.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS_PY = ROOT / "tasks.py"
DOCUMENTS = ("README.md", "OPERATIONS.md")
BEGIN = re.compile(r"<!-- tasks:begin(?P<spec>[^>]*?)-->")
END = "<!-- tasks:end -->"
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


def load_tasks(tasks_py: Path = TASKS_PY) -> list[TaskDoc]:
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


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


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


def _parse_spec(spec: str) -> dict[str, str]:
    out = {}
    for word in spec.split():
        key, sep, value = word.partition("=")
        if not sep or key not in ("style", "only", "except"):
            raise ValueError(f"tasks:begin: cannot read {word!r} (style=, only=, except=)")
        out[key] = value
    return out


def select(tasks: list[TaskDoc], spec: dict[str, str]) -> list[TaskDoc]:
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


def render(text: str, tasks: list[TaskDoc]) -> str:
    """``text`` with every marked table rendered from ``tasks``."""
    out, pos = [], 0
    for m in BEGIN.finditer(text):
        if m.start() < pos:
            continue
        end = text.find(END, m.end())
        if end < 0:
            raise ValueError(f"{m.group(0)} has no {END}")
        spec = _parse_spec(m.group("spec"))
        table = render_table(select(tasks, spec), spec.get("style", "summary"))
        out += [text[pos:m.end()], "\n", table, "\n"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m readiness.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    args = parser.parse_args(argv)
    tasks = load_tasks()
    stale = []
    for rel in DOCUMENTS:
        path = ROOT / rel
        text = path.read_text(encoding="utf-8")
        new = render(text, tasks)
        if new == text:
            continue
        stale.append(rel)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"{rel}: task tables rendered")
    if args.check and stale:
        print("task tables out of date in " + ", ".join(stale) + ": run `python -m readiness.docs`", file=sys.stderr)
        return 1
    if not stale:
        print("task tables: nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
