"""Bind-mount source directories: present, owned and writable by the container user.

Which directories: every bind mount of the rendered model that is writable (not
``read_only``) and whose source lies inside the project directory. Who must be able to
write them: the service's ``x-readiness.data-owner`` (or ``user``). Existing directories are
never changed (their owner may be deliberate, and chown of data is the user's call); the
task and preflight print the exact command instead.
"""

from __future__ import annotations

import os
import platform
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import fsutil
from .compose import Model
from .errors import ToolkitError

DEFAULT_MODE = 0o750


@dataclass(frozen=True)
class DataDir:
    service: str
    path: Path
    target: str
    owner: tuple[int, int] | None
    mode: int


def data_dirs(model: Model) -> list[DataDir]:
    """Writable bind-mount sources below the project directory, sorted by path."""
    root = model.project_dir
    out: dict[Path, DataDir] = {}
    for svc, spec in sorted(model.services.items()):
        mode = int(str(model.x(svc).get("data-mode", "0750")), 8)
        for vol in spec.get("volumes") or []:
            if not isinstance(vol, dict) or vol.get("type") != "bind" or vol.get("read_only"):
                continue
            source = Path(vol.get("source", ""))
            if not source.is_absolute() or root not in source.parents:
                continue
            if source.exists() and not source.is_dir():
                continue  # a file mount (configuration), not a data directory
            out.setdefault(source, DataDir(svc, source, str(vol.get("target", "")), model.data_owner(svc), mode))
    return [out[k] for k in sorted(out)]


def ownership_matters() -> bool:
    """Only a Linux engine maps host uids straight into containers (Docker Desktop does not)."""
    return platform.system() == "Linux"


def allows(path: Path, uid: int, gid: int, bits: int) -> bool:
    """Whether a process with uid:gid has every permission in ``bits`` (rwx as 0o7) on ``path``.

    Decided by the mode bits of the class it falls in (owner, group or other), as the kernel
    does for a container process; uid 0 may do anything.
    """
    st = path.stat()
    if uid == 0:
        return True
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & bits == bits


def writable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a process with uid:gid could create files in the directory ``path``."""
    return allows(path, uid, gid, 0o3)


def fix_command(d: DataDir) -> str:
    uid, gid = d.owner or (os.getuid(), os.getgid())
    p = shlex.quote(str(d.path))
    return f"sudo mkdir -p {p} && sudo chown {uid}:{gid} {p} && sudo chmod {d.mode:o} {p}"


@dataclass(frozen=True)
class DirChange:
    path: Path
    action: str


def ensure(model: Model) -> tuple[list[DirChange], list[tuple[DataDir, str]]]:
    """Create missing data directories with their owner and mode.

    Returns (changes, problems); a problem is a directory that could not be given the
    owner its container needs, with the reason. Existing directories are only checked.
    """
    changes: list[DirChange] = []
    problems: list[tuple[DataDir, str]] = []
    is_root = os.geteuid() == 0
    for d in data_dirs(model):
        if d.path.is_dir():
            if ownership_matters() and d.owner and not writable_by(d.path, *d.owner):
                problems.append((d, f"owned by {d.path.stat().st_uid}:{d.path.stat().st_gid}, "
                                    f"not writable by uid {d.owner[0]}"))
            continue
        try:
            fsutil.ensure_dir(d.path, d.mode)
        except ToolkitError as exc:
            problems.append((d, exc.message))
            continue
        owner = ""
        if d.owner and ownership_matters() and (os.getuid(), os.getgid()) != d.owner:
            if is_root:
                os.chown(d.path, *d.owner)
                owner = f"owner {d.owner[0]}:{d.owner[1]}, "
            elif not writable_by(d.path, *d.owner):
                problems.append((d, f"needs owner {d.owner[0]}:{d.owner[1]} and only root can chown"))
        changes.append(DirChange(d.path, f"created ({owner}mode {d.mode:04o})"))
    return changes, problems
