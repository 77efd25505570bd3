"""What the stack's data directories hold: empty or not, and which PostgreSQL major wrote them.

Several decisions depend on it: a secret baked into a service's data must not be regenerated
once that data exists (:mod:`readiness.prepare.baked`); Patroni members' data without etcd's, or the
reverse, does not boot; data written by another PostgreSQL major does not start. Nothing
here writes into a data directory.

Why this needs care: data directories belong to container uids (Grafana 472, Spilo 101, ...)
with mode 0750, so the user who runs the toolkit can stat them but usually not list them.
Root, or a user who owns them (Docker Desktop, rootless for container root), reads them
directly; for the others one short-lived helper container answers for every directory at once
(:func:`readiness.system.engine.helper`: read-only mounts, only CAP_DAC_READ_SEARCH, no network).

Its answers are cached in ``.readiness/cache/datastate.json`` under the directory's (device,
inode, mtime, ctime): adding or removing an entry changes a directory's mtime and ctime, and
nobody can set a ctime, so "empty or not" from the cache is exact and a warm preflight runs
no container. The PostgreSQL version lies a few levels down and is as fresh as the top
directory: a restore into ``pgroot/`` that leaves the top directory alone is seen only once
the top directory changes (Spilo's own in-place upgrade moves to the image's major, which is
never a finding).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError
from ..system import engine as enginelib
from ..system import fsutil
from ..system.engine import Engine

CACHE = ".readiness/cache/datastate.json"
#: Where a PostgreSQL data directory's version file sits below a bind-mount source:
#: ``PG_VERSION`` (postgres <= 17 at /var/lib/postgresql/data), ``18/docker/PG_VERSION``
#: (postgres >= 18 at /var/lib/postgresql), ``pgroot/data/PG_VERSION`` (Spilo). The
#: shallowest wins: ``base/<oid>/PG_VERSION`` of each database is deeper than the cluster's.
PG_PATTERNS = ("PG_VERSION", "*/PG_VERSION", "*/*/PG_VERSION")


@dataclass(frozen=True)
class DirState:
    """One data directory as last seen.

    ``empty`` is None when it could not be looked into (``error`` says why); callers that
    protect data treat that as "holds data".
    """

    exists: bool
    empty: bool | None
    pg_version: str | None = None
    error: str = ""

    @property
    def has_data(self) -> bool:
        """Whether the directory holds anything (or might: unknown counts as yes)."""
        return self.exists and self.empty is not True


ABSENT = DirState(exists=False, empty=True)


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def _pg_version_direct(path: Path) -> str | None:
    for pattern in PG_PATTERNS:
        for candidate in sorted(path.glob(pattern)):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = candidate.read_text(encoding="ascii").strip()
                if text:
                    return text
    return None


def _read_direct(path: Path) -> DirState:
    try:
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        return DirState(True, None, error=exc.strerror or str(exc))
    return DirState(True, empty, None if empty else _pg_version_direct(path))


def _readable(path: Path) -> bool:
    return os.access(path, os.R_OK | os.X_OK)


def _load_cache(project_dir: Path) -> dict[str, dict]:
    try:
        doc = json.loads((project_dir / CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _save_cache(project_dir: Path, cache: dict[str, dict]) -> None:
    path = project_dir / CACHE
    with contextlib.suppress(OSError, ToolkitError):  # a cache: failing to keep it costs time only
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, (json.dumps(cache, indent=1, sort_keys=True) + "\n").encode(), 0o600)


def helper_script(count: int) -> str:
    """The helper's shell script: one line ``<index> <empty 0|1> [<PG_VERSION>]`` per ``/mnt/<index>``."""
    lines = []
    for i in range(count):
        d = f"/mnt/{i}"
        globs = " ".join(f"{d}/{p}" for p in PG_PATTERNS)
        lines.append(f'if [ -n "$(ls -A {d})" ]; then e=0; else e=1; fi; '
                     f'v=$(cat {globs} 2>/dev/null | head -n 1); echo "{i} $e $v"')
    return "\n".join(lines)


def parse_helper(text: str, count: int) -> dict[int, tuple[bool, str | None]]:
    """The helper's lines -> {index: (empty, PG_VERSION or None)}."""
    out: dict[int, tuple[bool, str | None]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1] in ("0", "1") and int(parts[0]) < count:
            out[int(parts[0])] = (parts[1] == "1", parts[2] if len(parts) > 2 else None)
    return out


def probe(project_dir: Path, paths: Iterable[Path], engine: Engine | None, helper_image: str | None, *,
          readable: Callable[[Path], bool] = _readable) -> dict[Path, DirState]:
    """The state of each directory in ``paths`` (at most one helper container for all of them).

    ``engine`` None (no engine) or remote (its paths are another machine's): what cannot be
    read directly stays unknown. ``helper_image`` None: the same. ``readable`` decides which
    directories are read directly (tests make root take the helper's path).
    """
    out: dict[Path, DirState] = {}
    cache = _load_cache(project_dir)
    pending: list[tuple[Path, list[int]]] = []
    for path in sorted(set(paths)):
        try:
            st = path.stat()
        except FileNotFoundError:
            out[path] = ABSENT
            continue
        except OSError as exc:
            out[path] = DirState(True, None, error=exc.strerror or str(exc))
            continue
        if not path.is_dir():
            out[path] = DirState(True, False, error="not a directory")
            continue
        if readable(path):
            out[path] = _read_direct(path)
            continue
        ident = _identity(st)
        hit = cache.get(str(path))
        if isinstance(hit, dict) and hit.get("id") == ident and isinstance(hit.get("empty"), bool):
            out[path] = DirState(True, hit["empty"], hit.get("pg"))
            continue
        pending.append((path, ident))
    if not pending:
        return out
    why = ""
    if engine is None or engine.kind == enginelib.Kind.REMOTE or not helper_image:
        why = "not readable by this user, and no local engine to look through"
    else:
        mounts = [(path, f"/mnt/{i}") for i, (path, _) in enumerate(pending)]
        stdout, why = enginelib.look_into(engine, helper_image, helper_script(len(pending)), mounts)
        answers = parse_helper(stdout, len(pending)) if not why else {}
        for i, (path, ident) in enumerate(pending):
            if i in answers:
                empty, pg = answers[i]
                out[path] = DirState(True, empty, pg)
                cache[str(path)] = {"id": ident, "empty": empty, "pg": pg}
        if answers:
            _save_cache(project_dir, cache)
    for path, _ in pending:
        out.setdefault(path, DirState(True, None, error=why or "the helper container gave no answer"))
    return out
