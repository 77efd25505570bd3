"""Preflight checks of where the stack keeps files: data directories, bind mounts, free space.

* ``dir.protected`` / ``dir.missing`` / ``dir.not-writable``: a data directory a variable puts
  on a system path, one that is missing, or one its container user cannot write;
* ``mount.missing`` / ``mount.wrong-kind``: a read-only bind-mount source (configuration) that
  is missing, or is a directory where a file belongs -- Docker creates a missing source as an
  empty directory, and the service then fails far from the cause;
* ``disk.engine`` / ``disk.data``: free space where the engine keeps images and where the data
  directories are;
* ``logs.unbounded``: a service whose container log grows without a bound on the engine's
  disk (container logs are a main cause of the full disks users of such stacks report).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ToolkitError
from ..prepare import dirs
from ..stack import compose
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import hostfacts
from ..system.hostfacts import GIB, gib
from .facts import ENV_FILE, Facts, model_images
from .findings import ERROR, WARNING, Finding

#: Free space the stack needs when the stack does not say (top-level ``x-readiness.free-space``):
#: the engine's data root while some image is still to be pulled (the core stack's images
#: take about 5 GiB unpacked, and a pull holds the compressed layers too), and the filesystem
#: of the data directories.
DEFAULT_FREE = {"engine": 8 * GIB, "data": 2 * GIB}
#: Below this, a write fails soon whatever the stack: an error, not a warning.
HARD_FLOOR = 1 * GIB


def check_dirs(model: Model, facts: Facts) -> list[Finding]:
    out = []
    for svc, source, var in dirs.refused(model):
        out.append(Finding("dir.protected", ERROR,
                           f"{var} puts {svc}'s data directory at {source}, a path the toolkit never creates, re-owns "
                           "or deletes (the filesystem root or a directory right below it, a system tree, the project "
                           "or home directory)",
                           f"set {var} in .env to a directory of its own (e.g. /srv/infra-core-data), then `invoke "
                           "dirs`", svc, f"{ENV_FILE} ({var})"))
    for d in dirs.data_dirs(model):
        rel = model.relpath(d.path)
        if not d.path.is_dir():
            out.append(Finding("dir.missing", ERROR, f"bind-mount source for {d.target} does not exist",
                               "run `invoke dirs`", d.service, rel))
        elif facts.engine is not None:
            why = dirs.usable(d, facts.engine)
            if why:
                out.append(Finding("dir.not-writable", ERROR, why, dirs.fix_hint(d), d.service, rel))
    return out


# ------------------------------------------------------------------ mounts


def _file_like(target: str) -> bool:
    """Whether a container path names a file (``haproxy.cfg``, ``docker.sock``), not a ``.d`` directory."""
    name = target.rstrip("/").rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1] if "." in name.strip(".") else ""
    return bool(suffix) and suffix != "d" and suffix.isalnum() and len(suffix) <= 10


def read_only_binds(model: Model) -> list[tuple[str, Path, str]]:
    """(service, source, target) of every read-only bind mount, sorted."""
    out = set()
    for svc, spec in model.services.items():
        for vol in spec.get("volumes") or []:
            if isinstance(vol, dict) and vol.get("type") == "bind" and vol.get("read_only") and vol.get("source"):
                out.add((svc, Path(str(vol["source"])), str(vol.get("target", ""))))
    return sorted(out)


def check_mounts(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    if facts.engine is not None and facts.engine.kind == enginelib.Kind.REMOTE:
        return []  # engine.remote: these paths are the other machine's
    out = []
    for svc, source, target in read_only_binds(model):
        rel = model.relpath(source)
        inside = model.project_dir in source.parents
        restore = f"restore it from the repository (`git checkout -- {rel}`)" if inside else \
            f"create it, or change the mount in {files.get(svc, 'the compose file')}"
        if not os.path.lexists(source):
            out.append(Finding(
                "mount.missing", ERROR,
                f"read-only bind-mount source {rel} (-> {target}) does not exist: Docker would create an empty "
                f"directory in its place and {svc} would fail at start",
                f"{restore}", svc, rel))
        elif source.is_dir() and _file_like(target):
            empty = not any(True for _ in _entries(source))
            made = "an empty directory (Docker makes one when the file is missing at `up`)" if empty else \
                "a directory"
            out.append(Finding(
                "mount.wrong-kind", ERROR,
                f"read-only bind-mount source {rel} (-> {target}) is {made}, where {svc} expects a file",
                f"remove the directory (`rmdir {rel}`, or `sudo rmdir` if Docker made it as root), then {restore}",
                svc, rel))
    return out


def _entries(path: Path):
    try:
        yield from os.scandir(path)
    except OSError:
        return


# ------------------------------------------------------------------ disk


def free_space_needs(model: Model) -> dict[str, int]:
    """What the stack declares it needs (top-level ``x-readiness.free-space``), else :data:`DEFAULT_FREE`."""
    declared = (model.rendered.get("x-readiness") or {}).get("free-space") or {}
    if not isinstance(declared, dict):
        declared = {"": declared}
    out = dict(DEFAULT_FREE)
    for key, value in declared.items():
        size = hostfacts.parse_size(value)
        if key not in DEFAULT_FREE or size is None:
            raise ToolkitError(f"malformed x-readiness value: x-readiness.free-space.{key}: {value!r}",
                               where=f"{compose.COMPOSE_FILE} (x-readiness.free-space)",
                               fix="write `free-space: {engine: 8G, data: 2G}` (sizes with k/m/g/t), then run again")
        out[key] = size
    return out


def check_disk(model: Model, facts: Facts) -> list[Finding]:
    needs = free_space_needs(model)
    out = []
    engine = facts.engine
    if engine is not None and facts.engine_free is not None:
        where, free = facts.engine_free
        missing = [img for img in model_images(model) if img not in facts.images] if facts.images_known else []
        if free < HARD_FLOOR or (missing and free < needs["engine"]):
            error = free < HARD_FLOOR
            why = (f"{len(missing)} image(s) still to pull, about {gib(needs['engine'])} with the unpacked layers"
                   if missing else "containers write their layers and logs there")
            out.append(Finding(
                "disk.engine", ERROR if error else WARNING,
                f"the engine's data root {engine.data_root} has {gib(free)} free ({where}); {why}",
                "free space there (`docker system df` shows what Docker holds; `docker image prune` and "
                "`docker builder prune` remove what no container uses), or move the engine's data-root"))
    for directory, free in facts.data_free:
        if free < needs["data"]:
            out.append(Finding(
                "disk.data", ERROR if free < HARD_FLOOR else WARNING,
                f"the data directories' filesystem has {gib(free)} free ({model.relpath(directory)}), less than "
                f"the {gib(needs['data'])} the stack asks for: databases stop accepting writes when it fills",
                "free space on that filesystem, or put the data elsewhere: DATA_ROOT in .env (then `invoke dirs`)",
                file=model.relpath(directory)))
    return out


#: Log drivers that keep a container's log on the engine's disk with no bound unless given a
#: ``max-size``. ``local`` rotates by default (20 MB, 5 files); the others (journald, syslog,
#: fluentd, none, ...) hand the lines to something with limits of its own, or drop them.
UNBOUNDED_UNLESS_SIZED = ("json-file",)


def check_logs(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    """Every service whose rendered ``logging`` (or, without one, the engine's default driver)
    lets its log grow without bound. Without a ``logging`` key the engine's ``daemon.json``
    may set a ``max-size``, which ``docker info`` does not show: the fix says so."""
    default = facts.engine.logging_driver if facts.engine is not None else "json-file"
    assumed = "" if facts.engine is not None else ", assumed: the engine did not answer"
    out = []
    for svc, spec in sorted(model.services.items()):
        logging = spec.get("logging") or {}
        driver = str(logging.get("driver") or default)
        if driver not in UNBOUNDED_UNLESS_SIZED or (logging.get("options") or {}).get("max-size"):
            continue
        whose = "its driver" if logging.get("driver") else f"the engine's default driver{assumed}"
        out.append(Finding(
            "logs.unbounded", WARNING,
            f"{svc}'s container log has no size limit ({driver}, {whose}): it grows until the engine's disk is full",
            "give the service a bounded `logging:` (the file's `x-logging` anchor: `logging: *logging`, json-file "
            "with max-size and max-file); a `log-opts` max-size in the engine's daemon.json bounds it too, but "
            "`docker info` does not show it, so this warning stays",
            service=svc, file=files.get(svc, "")))
    return out
