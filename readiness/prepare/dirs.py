"""Bind-mount data directories: present, owned and writable by the container user.

Which directories (:func:`data_dirs`): the source of every writable (not ``read_only``) bind
mount of the rendered model that is a directory, or does not exist yet, and that

* lies below the project directory (``./data/grafana``), or
* is written in the compose file under a variable (``${DATA_ROOT:-../../data}/grafana``): its
  location is a setting of ``.env``, so it is the stack's data wherever the setting points --
  another disk, outside the checkout -- and is created, owned, checked and reset exactly like
  one inside.

No variable name is known here: the rule reads the compose files as written
(:func:`readiness.stack.sources.raw_services`). A source written as a literal path outside the
project (``/var/log:/host/log``) is the host's, not the stack's, and is never created,
re-owned or deleted; nor is a source that exists as something else than a directory (a
configuration file, the Docker socket). Nor, whatever the compose files say, is a path the
toolkit must never re-own or empty (:func:`protected`): the filesystem root and the directories
directly below it, the system's own trees (``/etc``, ``/usr``, ``/proc``, ...), the project
directory, the home directory and their ancestors; ``invoke dirs`` refuses such a setting with
the fix. Who must be able to write a data directory: the service's ``x-readiness.data-owner``
(or ``user``), a *container* uid, which the engine maps to a host uid (:mod:`readiness.system.engine`).

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
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ToolkitError, from_oserror
from ..stack import sources
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import fsutil
from ..system.engine import Engine

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


#: Trees of the system itself: never a data directory, whatever a variable says.
SYSTEM_TREES = tuple(Path(p) for p in ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
                                        "/proc", "/sbin", "/sys", "/usr"))


def protected(path: Path, project_dir: Path) -> bool:
    """Whether ``path`` is one the toolkit must never create, re-own or empty as data: the
    filesystem root or a directory directly below it, a system tree (:data:`SYSTEM_TREES`), the
    project directory, the home directory, or an ancestor of either."""
    path = Path(os.path.normpath(path))
    if len(path.parts) <= 2 or any(path == t or t in path.parents for t in SYSTEM_TREES):
        return True
    home = os.path.expanduser("~")
    keep = [project_dir] + ([Path(home)] if os.path.isabs(home) else [])
    return any(path == k or path in k.parents for k in keep)


_VARIABLE_ROOTED = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^{}]*\}|([A-Za-z_][A-Za-z0-9_]*))/[^/]")


def _split_short(entry: str) -> tuple[str, str]:
    """(source, target) of a short-syntax volume as written, ``${...}`` kept whole (it may hold ``:``)."""
    parts, depth, current = [], 0, ""
    for ch in entry:
        depth += ch == "{"
        depth -= ch == "}" and depth > 0
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return (parts[0], parts[1]) if len(parts) >= 2 else ("", parts[0])


def variable_rooted(project_dir: Path) -> dict[str, dict[str, str]]:
    """Service -> {container target: variable} of the bind mounts whose source the compose file
    writes under a variable (``${DATA_ROOT:-../../data}/grafana:/var/lib/grafana``), as written."""
    out: dict[str, dict[str, str]] = {}
    for svc, (_, spec) in sources.raw_services(project_dir).items():
        for vol in spec.get("volumes") or []:
            if isinstance(vol, dict):
                source, target = str(vol.get("source") or ""), str(vol.get("target") or "")
            else:
                source, target = _split_short(str(vol))
            m = _VARIABLE_ROOTED.match(source.strip())
            if m and "$" not in target:
                out.setdefault(svc, {})[target.rstrip("/") or "/"] = m.group(1) or m.group(2)
    return out


def _writable_dir_binds(model: Model) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(service, source, volume) of every writable bind mount whose source is, or may become, a directory."""
    for svc, spec in sorted(model.services.items()):
        for vol in spec.get("volumes") or []:
            if not isinstance(vol, dict) or vol.get("type") != "bind" or vol.get("read_only"):
                continue
            source = Path(vol.get("source", ""))
            if not source.is_absolute() or (source.exists() and not source.is_dir()):
                continue  # a file mount (configuration, the Docker socket), not a data directory
            yield svc, source, vol


def refused(model: Model) -> list[tuple[str, Path, str]]:
    """(service, source, variable) of the writable bind mounts a variable puts on a :func:`protected` path."""
    rooted = variable_rooted(model.project_dir)
    out = []
    for svc, source, vol in _writable_dir_binds(model):
        var = rooted.get(svc, {}).get(str(vol.get("target", "")).rstrip("/"))
        if var and model.project_dir not in source.parents and protected(source, model.project_dir):
            out.append((svc, source, var))
    return out


def refuse_protected(model: Model) -> None:
    """Stop, naming the setting, before a variable makes a system or home path a data directory."""
    bad = refused(model)
    if not bad:
        return
    variables = sorted({var for _, _, var in bad})
    shown = ", ".join(f"{source} ({svc})" for svc, source, _ in bad)
    raise ToolkitError(
        f"{', '.join(variables)} puts data directories at {shown}: the filesystem root, a directory right below it, "
        "a system tree, or the project or home directory, which the toolkit never creates, re-owns or deletes",
        where=f".env ({', '.join(variables)})",
        fix=f"set {variables[0]} in .env to a directory of its own (e.g. /srv/infra-core-data), then run again")


def data_dirs(model: Model) -> list[DataDir]:
    """The stack's data directories (the module's rule), sorted by path."""
    root = model.project_dir
    rooted = variable_rooted(root)
    out: dict[Path, DataDir] = {}
    for svc, source, vol in _writable_dir_binds(model):
        if root not in source.parents:
            if str(vol.get("target", "")).rstrip("/") not in rooted.get(svc, {}):
                continue  # a host path written as such: not the stack's to create or delete
            if protected(source, root):
                continue  # refused(): `invoke dirs` says why
        owner = model.data_owner(svc)
        dac = (owner == (0, 0) and not model.x(svc).get("data-owner") and model.has_cap(svc, "DAC_OVERRIDE"))
        out.setdefault(source, DataDir(svc, source, str(vol.get("target", "")), owner, model.data_mode(svc), dac))
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
    refuse_protected(model)
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
    host = engine.kind == enginelib.Kind.USERNS
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


def empty(model: Model, targets: list[DataDir], *, host_userns: bool = False) -> None:
    """Delete everything inside the existing ``targets`` through one helper container (their
    files may belong to container uids); each directory itself stays, with its owner.
    ``host_userns``: a userns-remap engine's files of unmapped owners too."""
    present = [d for d in targets if d.path.is_dir()]
    if not present:
        return
    mounts = [(d.path, f"/mnt/{i}") for i, d in enumerate(present)]
    script = " && ".join(f"find /mnt/{i} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +" for i in range(len(present)))
    enginelib.helper(model.helper_image, script, mounts, caps=("DAC_OVERRIDE", "FOWNER"), host_userns=host_userns)


def remove(model: Model, targets: list[DataDir]) -> list[Path]:
    """Delete data directories through the engine (their files may belong to container uids).

    The contents are removed from inside a helper container, which may delete what container
    uids wrote (the user may not); the emptied directories are then removed by the user, who
    owns their parent. ``invoke dirs`` recreates them. Returns what was removed.
    """
    present = [d for d in targets if d.path.is_dir()]
    if not present:
        return []
    empty(model, present)
    for d in present:
        try:
            d.path.rmdir()
        except OSError as exc:
            raise ToolkitError(f"cannot remove {d.path}: {exc.strerror}", where=str(d.path),
                               fix=f"remove it by hand: rm -r {shlex.quote(str(d.path))}") from None
    return [d.path for d in present]
