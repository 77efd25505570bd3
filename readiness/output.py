"""One output layer for every task: text for people, one JSON document for machines.

Every line a task prints goes through :class:`Output`, so that three rules hold everywhere:

* With ``--json``, stdout carries exactly one JSON document (success and failure alike, the
  same exit code); progress lines go to stderr, where a CI log still shows them.
* Colour and symbols only when stdout is a terminal, and never with ``NO_COLOR`` set
  (https://no-color.org), ``TERM=dumb`` or ``--json``. A pipe or a file gets plain text, so
  grep and the tests see the same words a person does.
* Tables fit the terminal's width: the last column is cut with an ellipsis, never wrapped.

The JSON shapes are documented as JSON Schemas under ``schemas/`` (one per shape); the tests
validate every task's output against them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .errors import ToolkitError

#: SGR codes per style.
_SGR = {"ok": "32", "error": "1;31", "warning": "33", "info": "36", "dim": "2", "bold": "1", "starting": "33"}
_SYMBOLS = {"ok": "✔", "error": "✖", "warning": "▲", "info": "•", "starting": "…"}
_ASCII_SYMBOLS = {"ok": "+", "error": "x", "warning": "!", "info": "*", "starting": "~"}

#: Exit codes (README's table): a check failed, the command was used wrongly, a tool is missing,
#: the user interrupted; and a service the task must ask could not be reached (sysexits'
#: EX_UNAVAILABLE: `invoke pins` when no registry answers, so CI can tell it from a bad pin).
EXIT_FAILED, EXIT_USAGE, EXIT_MISSING_TOOL, EXIT_INTERRUPTED, EXIT_UNAVAILABLE = 1, 2, 127, 130, 69


def wants_colour(stream: TextIO, env: dict[str, str] | None = None) -> bool:
    """Whether ``stream`` is a terminal that should get colour (``NO_COLOR`` and ``TERM=dumb`` say no)."""
    env = os.environ if env is None else env
    if env.get("NO_COLOR", "") != "" or env.get("TERM") == "dumb":
        return False
    if env.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass
class Output:
    """Where and how a task prints; one per process (:func:`current`)."""

    json: bool = False
    colour: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    width: int = 100

    # -------------------------------------------------------------- styling

    def paint(self, text: str, style: str | None) -> str:
        if not self.colour or not style or style not in _SGR:
            return text
        return f"\033[{_SGR[style]}m{text}\033[0m"

    def symbol(self, style: str) -> str:
        """A symbol for a state (``ok``, ``error``, ``warning``...) on a terminal; nothing elsewhere."""
        if not self.colour:
            return ""
        encoding = (getattr(self.out, "encoding", "") or "").lower()
        table = _SYMBOLS if "utf" in encoding else _ASCII_SYMBOLS
        return self.paint(table.get(style, ""), style) + " "

    # -------------------------------------------------------------- lines

    @property
    def _lines(self) -> TextIO:
        """Human lines: stdout normally, stderr with ``--json`` (stdout is the document's)."""
        return self.err if self.json else self.out

    def line(self, text: str = "", style: str | None = None) -> None:
        self._lines.write(self.paint(text, style) + "\n")
        self._lines.flush()

    def say(self, task: str, message: str, style: str | None = None) -> None:
        """``task: message``, the toolkit's progress line."""
        prefix = self.paint(f"{task}:", "bold") if self.colour else f"{task}:"
        self._lines.write(f"{self.symbol(style) if style else ''}{prefix} {self.paint(message, style)}\n")
        self._lines.flush()

    def text(self, block: str) -> None:
        """A finished block of human text (a table, a report); nothing in ``--json`` mode."""
        if self.json:
            return
        self.out.write(block if block.endswith("\n") or not block else block + "\n")
        self.out.flush()

    def document(self, doc: dict[str, Any]) -> None:
        """The one JSON document of a ``--json`` run."""
        self.out.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        self.out.flush()

    def fail(self, exc: ToolkitError) -> None:
        """A toolkit error: one paragraph on stderr, or ``{"ok": false, "error": ...}`` on stdout."""
        if self.json:
            self.document({"ok": False, "error": {"what": exc.message, "where": exc.where or "",
                                                  "fix": exc.fix or ""}, "exit_code": exc.code})
            return
        lines = exc.render().splitlines()
        if self.colour and lines:
            lines[0] = self.paint(lines[0], "error")
        self.err.write("\n".join(lines) + "\n")
        self.err.flush()

    # -------------------------------------------------------------- tables

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]],
              styles: Sequence[str | None] | None = None) -> str:
        """Aligned columns; the last one is cut to the terminal width. ``styles`` colours a row."""
        cells = [list(headers)] + [list(r) for r in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers) - 1)]
        lead = sum(w + 2 for w in widths)
        room = max(20, self.width - lead) if self.colour else None
        lines = []
        for n, row in enumerate(cells):
            last = row[-1]
            if room is not None and len(last) > room:
                last = last[: room - 1] + "…"
            text = "".join(f"{c:{w}}  " for c, w in zip(row[:-1], widths, strict=True)) + last
            style = "bold" if n == 0 else (styles[n - 1] if styles else None)
            lines.append(self.paint(text.rstrip(), style))
        return "\n".join(lines) + "\n"


_CURRENT: list[Output] = []


def configure(*, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> Output:
    """Set up the process's output for one task run (called by the task class)."""
    stream = out or sys.stdout
    colour = not as_json and wants_colour(stream)
    width = shutil.get_terminal_size((100, 24)).columns
    o = Output(json=as_json, colour=colour, out=stream, err=err or sys.stderr, width=width)
    _CURRENT[:] = [o]
    return o


def current() -> Output:
    """The output of the running task (plain text on stdout if none was configured)."""
    if not _CURRENT:
        _CURRENT.append(Output(out=sys.stdout, err=sys.stderr))
    return _CURRENT[0]


def say(task: str, message: str, style: str | None = None) -> None:
    current().say(task, message, style)
