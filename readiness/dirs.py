"""Bind-mount data directories: present, owned and writable by the container user.

Which directories: every bind mount of the rendered model that is writable (not
``read_only``) and whose source lies inside the project directory. Who must be able to
write them: the service's ``x-readiness.data-owner`` (or ``user``), a *container* uid, which
the engine maps to a host uid (:mod:`readiness.engine`).

How they are made, with no sudo under any engine: the toolkit creates each directory as the
user under a temporary name, gives it its owner and mode -- directly when this process is
root on a rootful engine, otherwise through one short-lived helper container that the
engine runs as root (``engine.helper``; right under rootful with the docker group, rootless
and userns-remap alike) -- and only then renames it into place. A directory therefore
appears under its final name only once it is usable, and a lock serialises concurrent runs:
two ``invoke bootstrap`` started together cannot see each other's half-made directory.

Existing directories are never changed by default (their owner may be deliberate): a wrong
owner is reported with the command that fixes it, ``invoke dirs --repair``, which re-owns
them through the same helper.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import engine as enginelib
from . import fsutil
from .compose import Model
from .engine import Engine
from .errors import ToolkitError, from_oserror

DEFAULT_MODE = 0o750
LOCK = ".readiness/locks/dirs.lock"
_TMP = ".readiness-tmp-"


@dataclass(frozen=True)
class DataDir:
    service: str
    path: Path
    target: str
    owner: tuple[int, int] | None  # container uid:gid that must write it
    mode: int
    #: The writer is the service's own root user and keeps CAP_DAC_OVERRIDE (Spilo, whose
    #: entrypoint then gives the directory to its database user itself): it can write a
    #: directory the user owns, so the directory is left to the user.
    dac_override: bool = False


def data_dirs(model: Model) -> list[DataDir]:
    """Writable bind-mount sources below the project directory, sorted by path."""
    root = model.project_dir
    out: dict[Path, DataDir] = {}
    for svc, spec in sorted(model.services.items()):
        mode = model.data_mode(svc)
        for vol in spec.get("volumes") or []:
            if not isinstance(vol, dict) or vol.get("type") != "bind" or vol.get("read_only"):
                continue
            source = Path(vol.get("source", ""))
            if not source.is_absolute() or root not in source.parents:
                continue
            if source.exists() and not source.is_dir():
                continue  # a file mount (configuration), not a data directory
            owner = model.data_owner(svc)
            dac = (owner == (0, 0) and not model.x(svc).get("data-owner") and model.has_cap(svc, "DAC_OVERRIDE"))
            out.setdefault(source, DataDir(svc, source, str(vol.get("target", "")), owner, mode, dac))
    return [out[k] for k in sorted(out)]


def host_owner(d: DataDir, engine: Engine) -> tuple[int, int] | None:
    """The host uid:gid the directory must have for its container owner, as the engine maps it."""
    if d.owner is None:
        return None
    uid, gid = engine.host_uid(d.owner[0]), engine.host_gid(d.owner[1])
    return None if uid is None or gid is None else (uid, gid)


def usable(d: DataDir, engine: Engine) -> str | None:
    """Why the container owner cannot create files in the existing directory; None if it can."""
    if d.owner is None or not engine.ownership_matters:
        return None
    st = d.path.stat()
    if enginelib.permits(engine, (st.st_uid, st.st_gid, st.st_mode), *d.owner, 0o3, dac_override=d.dac_override):
        return None
    seen = engine.container_uid(st.st_uid)
    as_seen = f" (uid {seen} in a container)" if seen is not None and seen != st.st_uid else \
        " (nobody in a container)" if seen is None else ""
    return (f"owned by {st.st_uid}:{st.st_gid}{as_seen} mode {st.st_mode & 0o777:04o}, "
            f"not writable by uid {d.owner[0]}")


def fix_hint(d: DataDir) -> str:
    owner = f"{d.owner[0]}:{d.owner[1]}" if d.owner else "its owner"
    return f"`invoke dirs --repair` (gives it owner {owner} and mode {d.mode:04o} through the engine, no sudo)"


@dataclass(frozen=True)
class DirChange:
    path: Path
    action: str


def ensure(model: Model, engine: Engine, *, repair: bool = False) -> tuple[list[DirChange], list[tuple[DataDir, str]]]:
    """Create missing data directories with their owner and mode; with ``repair``, re-own
    existing ones that their container user cannot write.

    Returns (changes, problems); a problem is a directory its container cannot use, with the reason.
    """
    wanted = data_dirs(model)
    if not wanted:
        return [], []
    changes: list[DirChange] = []
    problems: list[tuple[DataDir, str]] = []
    with fsutil.file_lock(model.project_dir / LOCK):
        _sweep(wanted)
        fresh: list[tuple[DataDir, Path]] = []
        fixes: list[tuple[DataDir, Path]] = []
        for d in wanted:
            if d.path.is_dir():
                why = usable(d, engine)
                if why and repair:
                    fixes.append((d, d.path))
                elif why:
                    problems.append((d, why))
                continue
            fsutil.ensure_dir(d.path.parent, 0o755)
            tmp = _make_temp(d)
            fresh.append((d, tmp))
            fixes.append((d, tmp))
        try:
            owned = _set_owners(model, engine, fixes)
            for d, tmp in fresh:
                os.rename(tmp, d.path)
                detail = f"owner {d.owner[0]}:{d.owner[1]}, " if d in owned and d.owner else ""
                changes.append(DirChange(d.path, f"created ({detail}mode {d.mode:04o})"))
            for d, path in fixes:
                if path == d.path:
                    changes.append(DirChange(d.path, f"repaired (owner {d.owner[0]}:{d.owner[1]}, mode {d.mode:04o})"
                                             if d.owner else f"repaired (mode {d.mode:04o})"))
        finally:
            for _, tmp in fresh:
                if tmp.exists():
                    _remove_empty(tmp)
        for d in wanted:
            if d.path.is_dir() and d not in (p for p, _ in problems):
                why = usable(d, engine)
                if why:
                    problems.append((d, why))
    return changes, problems


def _make_temp(d: DataDir) -> Path:
    tmp = d.path.with_name(f"{_TMP}{d.path.name}-{os.getpid()}")
    try:
        tmp.mkdir(mode=0o700)
    except FileExistsError:  # a run of ours with this pid was killed here: start again
        _remove_empty(tmp)
        tmp.mkdir(mode=0o700)
    except OSError as exc:
        raise from_oserror(exc) from None
    return tmp


def _remove_empty(path: Path) -> None:
    """Remove a temporary directory this module made (empty: nothing ever wrote into it)."""
    with contextlib.suppress(OSError):
        path.rmdir()


def _sweep(wanted: list[DataDir]) -> None:
    """Remove the empty temporary directories of runs that were killed (under the lock)."""
    for parent in {d.path.parent for d in wanted}:
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                if child.name.startswith(_TMP) and child.is_dir():
                    _remove_empty(child)


def _set_owners(model: Model, engine: Engine, fixes: list[tuple[DataDir, Path]]) -> set[DataDir]:
    """Give each directory its container owner and mode; returns the ones that got an owner.

    The host owner follows the engine's mapping. Root on a rootful engine does it itself;
    anyone else asks the engine (one helper container for all of them): the user may not
    chown to another uid, and under rootless the target is a subordinate uid only the
    engine's user namespace can give.
    """
    chown = [(d, p) for d, p in fixes if d.owner and engine.ownership_matters and host_owner(d, engine)
             and _current_owner(p) != host_owner(d, engine) and not _writable_as_is(d, p, engine)]
    root = os.geteuid() == 0
    # Only a mode to set: the user does it where the directory is theirs (or they are root);
    # a directory a container uid already owns (a mode-only `--repair`) goes to the helper.
    chmod: list[tuple[DataDir, Path]] = []
    for d, path in fixes:
        if (d, path) in chown:
            continue
        if root or _current_owner(path)[0] == os.geteuid():
            os.chmod(path, d.mode)
        else:
            chmod.append((d, path))
    if not chown and not chmod:
        return set()
    if root:  # root here may give any host owner, whatever the engine maps
        for d, path in chown:
            owner = host_owner(d, engine)
            assert owner is not None
            os.chown(path, *owner)
            os.chmod(path, d.mode)
        return {d for d, _ in chown}
    work = chown + chmod
    mounts = [(path, f"/mnt/{i}") for i, (_, path) in enumerate(work)]
    # Rootful and rootless engines map the container ids themselves; a userns-remap engine's
    # containers cannot chown the user's directory (its owner is not in the remapped range),
    # so the helper runs in the host's user namespace and is given the host ids.
    host = engine.kind == enginelib.USERNS
    owners = [host_owner(d, engine) if host else d.owner for d, _ in chown]
    script = " && ".join(
        [f"chown {o[0]}:{o[1]} /mnt/{i} && chmod {d.mode:o} /mnt/{i}"  # type: ignore[index]
         for i, ((d, _), o) in enumerate(zip(chown, owners, strict=True))]
        + [f"chmod {d.mode:o} /mnt/{i}" for i, (d, _) in enumerate(chmod, start=len(chown))])
    enginelib.helper(model.helper_image, script, mounts, caps=("CHOWN", "FOWNER"), host_userns=host)
    return {d for d, _ in chown}


def _writable_as_is(d: DataDir, path: Path, engine: Engine) -> bool:
    """A root writer that keeps DAC_OVERRIDE can use the user's directory: no chown needed."""
    if not d.dac_override or d.owner is None:
        return False
    st = path.stat()
    return enginelib.permits(engine, (st.st_uid, st.st_gid, d.mode), *d.owner, 0o3, dac_override=True)


def _current_owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def remove(model: Model, targets: list[DataDir]) -> list[Path]:
    """Delete data directories through the engine (their files may belong to container uids).

    The contents are removed from inside a helper container, which may delete what container
    uids wrote (the user may not); the emptied directories are then removed by the user, who
    owns their parent. ``invoke dirs`` recreates them. Returns what was removed.
    """
    present = [d for d in targets if d.path.is_dir()]
    if not present:
        return []
    mounts = [(d.path, f"/mnt/{i}") for i, d in enumerate(present)]
    script = " && ".join(f"find /mnt/{i} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +" for i in range(len(present)))
    enginelib.helper(model.helper_image, script, mounts, caps=("DAC_OVERRIDE", "FOWNER"))
    for d in present:
        try:
            d.path.rmdir()
        except OSError as exc:
            raise ToolkitError(f"cannot remove {d.path}: {exc.strerror}", where=str(d.path),
                               fix=f"remove it by hand: rm -r {shlex.quote(str(d.path))}") from None
    return [d.path for d in present]
