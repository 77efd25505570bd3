"""Refuse a commit that would track secret material.

    python3 -m readiness.guard [FILE ...]   # pre-commit: the staged files are passed as FILEs
    python3 -m readiness.guard              # every file git tracks (CI, or by hand)

A file under a secrets directory (``secrets/``, plus the directory of every file secret of
the stack) may be tracked only when its name is in
:data:`readiness.prepare.secrets.ALLOWED_TRACKED` (README.md, .gitkeep); the index is read with
:func:`readiness.prepare.secrets.tracked_files`, the same function behind preflight's
``secret.tracked`` finding, so the hook, preflight and CI apply one rule. Exit status 1 and
one paragraph naming the files and the fix when something is refused; never prints file
contents.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ToolkitError
from .prepare import secrets as secretslib
from .stack import compose
from .system import runner


def work_tree() -> Path:
    """The git work tree around the current directory (git runs the hook there), else that directory."""
    res = runner.run(["git", "rev-parse", "--show-toplevel"], timeout=30)
    return Path(res.stdout.strip()).resolve() if res.ok and res.stdout.strip() else Path.cwd().resolve()


def secret_dirs(project: Path) -> list[Path]:
    """``secrets/`` and the directory of every file secret the stack declares.

    The stack is read with ``docker compose config`` when Compose is there; without it (a
    bare commit machine) the conventional ``secrets/`` still protects the registry.
    """
    found = {project / "secrets"}
    if (project / compose.COMPOSE_FILE).is_file():
        try:
            model = compose.load(project, tolerate_missing=True)
            found |= {s.path.parent for s in secretslib.specs(model)}
        except ToolkitError:
            pass
    return sorted(found)


def refused(project: Path, files: list[str] | None = None) -> list[str]:
    """Tracked (or staged) files under a secrets directory that git must not hold.

    With ``files`` (paths relative to ``project``, as pre-commit passes them) only those are
    judged; a staged deletion is not a problem, so a file no longer in the index is ignored.
    """
    tracked = secretslib.tracked_files(project, secret_dirs(project))
    if files is None:
        return tracked
    wanted = {os.path.normpath(f) for f in files}
    return [f for f in tracked if os.path.normpath(f) in wanted]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    project = compose.project_dir(fallback=work_tree)
    bad = refused(project, args or None)
    if not bad:
        return 0
    listing = "\n".join(f"  {f}" for f in bad)
    print(
        f"error: refusing to commit secret material ({len(bad)} file(s) under a secrets directory):\n{listing}\n"
        f"  only {' and '.join(sorted(secretslib.ALLOWED_TRACKED))} may be tracked there\n"
        f"  fix:   git rm --cached -- {' '.join(bad)}   (then rotate those values: `invoke secrets` "
        "creates new ones once the files are deleted)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
