"""What the documents are rendered and checked from, read once and only when needed.

The stack's model is rendered by Compose (:func:`readiness.stack.compose.load`, the model
every task uses; ``docker compose config`` needs the Compose CLI, not an engine) from the
compose files and their defaults alone: the stack's variables of the caller's environment are
left out, and a developer's ``.env`` is not read, so the documents never depend on who
renders them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from readiness.preflight.catalog import CATALOG, Entry
from readiness.stack import compose
from readiness.stack.model import Model

from . import sessions as sessionslib
from . import tasks as taskslib
from .markdown import Doc

ROOT = Path(__file__).resolve().parents[2]
#: Environment variables Compose reads for a project, besides the stack's own.
COMPOSE_PREFIXES = ("COMPOSE_", "READINESS_", "DOCKER_DEFAULT_PLATFORM")


@contextlib.contextmanager
def stack_defaults(example: Path) -> Iterator[None]:
    """The process environment without the stack's variables (the keys of ``example``,
    ``COMPOSE_*``, ``READINESS_*``), with ``LOCAL_DOMAIN=localhost`` (the one required variable)
    and no ``.env`` (``COMPOSE_ENV_FILES`` names an empty file)."""
    keys = set()
    with contextlib.suppress(OSError):
        for line in example.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
            if m:
                keys.add(m.group(1))
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key in keys or key.startswith(COMPOSE_PREFIXES):
                del os.environ[key]
        os.environ.update(LOCAL_DOMAIN="localhost", COMPOSE_ENV_FILES=os.devnull)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_model(root: Path) -> Model:
    """The stack of ``root`` as Compose renders it from its files and defaults."""
    with stack_defaults(root / ".env.example"):
        return compose.load(root)


class Sources:
    """The repository's sources of the documents. Each is read on first use; a test may set
    any of them to render from something else."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")

    @cached_property
    def tasks(self) -> list[taskslib.TaskDoc]:
        return taskslib.load_tasks(self.root / "tasks.py")

    @cached_property
    def sessions(self) -> list[sessionslib.Session]:
        return sessionslib.load(self.root / "noxfile.py")

    @cached_property
    def catalog(self) -> dict[str, Entry]:
        return dict(CATALOG)

    @cached_property
    def model(self) -> Model:
        return load_model(self.root)

    @cached_property
    def variables(self) -> list[str]:
        with stack_defaults(self.root / ".env.example"):
            return sorted(compose.variables(self.model))

    @cached_property
    def ci_script(self) -> str:
        return self.text(".ci/run")

    @cached_property
    def readme(self) -> str:
        return self.text("README.md")

    def doc(self, rel: str) -> Doc:
        return Doc.parse(self.text(rel))
