"""Which document holds which generated block, how each kind is rendered, and every check.

``python -m tools.docs`` rewrites the generated blocks of :data:`DOCUMENTS`; ``--check``
compares them instead, and both then run the checks of what is not generated (links,
commands named in code, ``.env.example``, the spec's traceability, the rotation section).
Each check returns a list of problems, one line each; none means the documents agree with
the code.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable

from . import ci, commands, envexample, links, secrets, sessions, tasks, traceability, troubleshooting
from .blocks import Block, blocks
from .blocks import render as render_blocks
from .markdown import markdown_files
from .sources import Sources

RUNBOOK = "runbooks/core/infra-bootstrap-runbook.md"
SECRETS_README = "secrets/README.md"

#: Block kind -> (how it is rendered, what it is rendered from).
RENDERERS: dict[str, tuple[Callable[[Sources, dict[str, str]], str], str]] = {
    "tasks": (lambda s, o: tasks.render(s.tasks, o), "tasks.py (Invoke's task list)"),
    "sessions": (lambda s, o: sessions.render(s.sessions, o), "noxfile.py"),
    "troubleshooting": (lambda s, o: troubleshooting.render(s.catalog, o), "readiness/preflight/catalog.py"),
    "secrets": (lambda s, o: secrets.render(s.model, o), "the secrets registry of docker-compose.yml"),
    "ci": (lambda s, o: ci.render(s.ci_script, s.readme, s.sessions, o), ".ci/run and noxfile.py"),
}
#: Every document with generated blocks, and the kinds it must have.
DOCUMENTS: dict[str, frozenset[str]] = {
    "README.md": frozenset({"tasks"}),
    "OPERATIONS.md": frozenset({"tasks", "sessions", "ci"}),
    RUNBOOK: frozenset({"troubleshooting"}),
    SECRETS_README: frozenset({"secrets"}),
}
COMMAND = "python -m tools.docs"


def render_document(text: str, sources: Sources) -> str:
    """``text`` with every block rendered (ValueError for an unknown kind or a bad option)."""
    def one(block: Block) -> str:
        if block.kind not in RENDERERS:
            raise ValueError(f"unknown block kind {block.kind!r} (one of {', '.join(RENDERERS)})")
        return RENDERERS[block.kind][0](sources, block.options)

    return render_blocks(text, one)


def _diff(old: str, new: str, limit: int = 12) -> str:
    lines = [ln for ln in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
             if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    shown = [f"\n    {ln[0]} {ln[1:]}" for ln in lines[:limit]]
    return "".join(shown) + (f"\n    ... ({len(lines) - limit} more lines)" if len(lines) > limit else "")


def stale(rel: str, text: str, sources: Sources) -> list[str]:
    """Why document ``rel`` (its ``text``) is not what :func:`render_document` makes of it."""
    try:
        kinds = {b.kind for b in blocks(text)}
        rendered = render_document(text, sources)
    except ValueError as exc:
        return [f"{rel}: {exc}"]
    out = [f"{rel} has no generated {kind} block (<!-- {kind}:begin --> ... <!-- {kind}:end -->)"
           for kind in sorted(DOCUMENTS.get(rel, frozenset()) - kinds)]
    for old, new in zip(blocks(text), blocks(rendered), strict=True):
        before, after = text[old.start:old.end], rendered[new.start:new.end]
        if before != after:
            line = text.count("\n", 0, old.start) + 1
            out.append(f"{rel}:{line}: the {old.kind} block is not what {COMMAND} renders from "
                       f"{RENDERERS[old.kind][1]}{_diff(before, after)}")
    return out


def render_all(sources: Sources, *, write: bool, only: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(documents rewritten or stale, problems) for every document of :data:`DOCUMENTS` (or
    those of ``only``)."""
    changed, problems = [], []
    for rel in only or tuple(DOCUMENTS):
        text = sources.text(rel)
        found = stale(rel, text, sources)
        if not found:
            continue
        changed.append(rel)
        if write:
            with contextlib.suppress(ValueError):  # stale() below names the bad marker
                (sources.root / rel).write_text(render_document(text, sources), encoding="utf-8")
            problems += stale(rel, sources.text(rel), sources)
        else:
            problems += found
    return changed, problems


def checks(sources: Sources) -> list[str]:
    """Every check of what is not generated."""
    root = sources.root
    files = markdown_files(root)
    task_names = [t.name for t in sources.tasks]
    session_names = [s.name for s in sources.sessions]
    ids = traceability.requirement_ids(root / rel for rel in traceability.REQUIREMENT_DOCS)
    return (links.problems(root, files)
            + commands.problems(root, files, task_names, session_names)
            + envexample.problems(sources.variables, root / ".env.example")
            + traceability.problems(ids, sources.doc(traceability.SPEC), root, task_names, session_names)
            + secrets.rotation_problems(sources.model, sources.doc(RUNBOOK), RUNBOOK))
