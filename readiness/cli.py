"""The task class every task of ``tasks.py`` uses: the one place where a run ends.

A task body returns nothing (success), an exit code, or a :class:`Outcome` (a JSON document
plus its verdict). Whatever happens inside, the run ends here in one of five ways, each with
its exit code (README's table): 0 done, 1 a check failed, 2 the command was used wrongly,
127 a required tool is missing, 130 interrupted (Ctrl-C). A :class:`ToolkitError`, an
``OSError`` (a root-owned ``secrets/`` after a ``sudo`` run, a lock on a network filesystem)
and Ctrl-C all end in the usual what/where/fix paragraph -- or, with ``--json``, in
``{"ok": false, "error": {...}}`` on stdout. Nothing ends in a traceback: an unexpected
exception (a bug) is reported as such, with the file that keeps its traceback.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from dataclasses import dataclass, field
from typing import Any

from invoke import Exit, Task

from . import output
from .errors import ToolkitError, from_oserror


@dataclass
class Outcome:
    """What a state-reporting task found: its JSON document and whether it is a success."""

    doc: dict[str, Any] = field(default_factory=dict)
    ok: bool = True
    code: int = 1  # exit code when not ok

    def __post_init__(self) -> None:
        self.doc = {"ok": self.ok, **{k: v for k, v in self.doc.items() if k != "ok"}}


def _internal(exc: BaseException) -> ToolkitError:
    """A bug: say so, keep the traceback in a file instead of printing it."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        fd, name = tempfile.mkstemp(prefix="readiness-error-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    except OSError:
        name = "(could not be saved)"
    return ToolkitError(f"internal error: {type(exc).__name__}: {exc}", where=name,
                        fix="this is a bug in the toolkit: please report it with the file named above")


class ToolkitTask(Task):
    """An Invoke task whose every ending goes through :mod:`readiness.output`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = output.configure(as_json=bool(kwargs.get("json")))
        try:
            result = super().__call__(*args, **kwargs)
        except ToolkitError as exc:
            return self._end(out, exc)
        except KeyboardInterrupt:
            return self._end(out, ToolkitError("interrupted (Ctrl-C)", fix="run the task again when you are ready",
                                               code=output.EXIT_INTERRUPTED))
        except OSError as exc:
            return self._end(out, from_oserror(exc))
        except Exit:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a message
            return self._end(out, _internal(exc))
        if isinstance(result, Outcome):
            if out.json:
                out.document(result.doc)
            if not result.ok:
                raise Exit(code=result.code)
            return result
        if isinstance(result, int) and result:
            raise Exit(code=result)
        if out.json and result is None:
            out.document({"ok": True})
        return result

    @staticmethod
    def _end(out: output.Output, exc: ToolkitError) -> None:
        out.fail(exc)
        raise Exit(code=exc.code)

