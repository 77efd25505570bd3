"""``invoke backup``: one self-describing backup of the stack's data and configuration.

The order is what makes it safe: every part is written and synced, then the manifest, last and
atomically. Whatever stops it (an error, a full disk, Ctrl-C) removes the directory it made and
starts again every service it stopped; only SIGKILL can leave a directory behind, and that one
has no manifest, so it is never offered for restore (``invoke backups`` lists it as incomplete).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ... import output
from ...errors import ToolkitError
from ...prepare import datastate
from ...stack import dbfacts, envfile
from ...stack.model import Model
from ...system import engine as enginelib
from ...system import fsutil, runner
from ...system.engine import Engine
from .. import diskuse
from . import manifest, parts
from .plan import Choice, Part, choose, config_paths

DEFAULT_ROOT = "backups"
LOCK = ".readiness/locks/backup.lock"
#: Room kept free beyond the estimate: WAL written during the backup, the manifest, the filesystem's own.
MARGIN = 256 * 1024 * 1024


def say(message: str, style: str | None = None) -> None:
    output.say("backup", message, style)


def running_services(model: Model) -> dict[str, str]:
    """Service -> the id of its running container."""
    return {str(c.get("Service", "")): str(c.get("ID", "")) for c in enginelib.project_containers(model.name)
            if c.get("State") == "running"}


def git_commit(project: Path) -> str | None:
    res = runner.run(["git", "-C", str(project), "rev-parse", "HEAD"], timeout=30) if runner.which("git") else None
    return res.stdout.strip() if res is not None and res.ok else None


def new_directory(root: Path, project: str, now: float) -> Path:
    fsutil.ensure_dir(root, 0o700)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    for n in range(1, 100):
        path = root / (f"{project}-{stamp}" if n == 1 else f"{project}-{stamp}-{n}")
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue
    raise ToolkitError(f"cannot create a new backup directory in {root}", where=str(root),
                       fix="remove old backups there, or choose another place with --to")


def check_room(model: Model, engine: Engine, choice: Choice, root: Path,
               usage: list[diskuse.Usage] | None = None) -> int:
    """The estimated size of the backup; refuses before anything is written when the disk
    under ``root`` has less free space than that and a margin."""
    dirs = [d for part in choice.parts for d in part.dirs if part.kind != "postgres" or d.service in part.members]
    wanted = {d.path for d in dirs}
    fsutil.ensure_dir(root, 0o700)  # a restore asks before its first backup under root exists
    usage = diskuse.measure(model, engine) if usage is None else usage
    sizes = [u.size or 0 for u in usage if u.path in wanted]
    estimate = sum(sizes)
    free = shutil.disk_usage(root).free
    if free < estimate + MARGIN:
        raise ToolkitError(
            f"not enough free space for the backup: {diskuse.human(free)} free under {root}, and it needs about "
            f"{diskuse.human(estimate + MARGIN)} (the data directories it copies, and a margin)",
            where=str(root), fix="free space there, or write the backup to another disk: `invoke backup --to DIR`")
    return estimate


@contextlib.contextmanager
def paused(model: Model, svc: str, running: dict[str, str], record: list[dict[str, Any]]) -> Iterator[None]:
    """Stop ``svc``'s container for the block when it runs (its own stop timeout, as Compose set
    it from ``stop_grace_period``); start it again afterwards, whatever happens. The engine by
    container id, not ``compose stop``: the pause is what the service's users wait through,
    and Compose would first load the whole project."""
    cid = running.get(svc)
    if not cid:
        yield
        return
    say(f"stopping {svc} while its data is copied")
    started = time.monotonic()
    try:  # a stop that fails or is interrupted may still stop it: start it again in every case
        parts.container(model, "stop", svc, cid)
        yield
    finally:
        parts.container(model, "start", svc, cid)
        record.append({"service": svc, "seconds": round(time.monotonic() - started, 2)})
        say(f"{svc} started again after {record[-1]['seconds']} s")


def _take_part(model: Model, engine: Engine, part: Part, directory: Path, running: dict[str, str],
               pauses: list[dict[str, Any]]) -> dict[str, Any]:
    dest = directory / part.name
    entry: dict[str, Any] = {"name": part.name, "kind": part.kind, "service": part.service,
                             "services": list(part.services),
                             "dirs": [{"service": d.service, "path": model.relpath(d.path), "target": d.target}
                                      for d in part.dirs]}
    started = time.monotonic()
    if part.kind == "config":
        paths = config_paths(model)
        res = parts.config_out(model, engine, paths, dest)
        entry["paths"] = paths
        entry["taken_by"] = list(parts.user_ids(engine))
    elif part.kind == "postgres":
        source = parts.replica_first(model, part.members, running)[0]
        facts = parts.pg_facts(model, source)
        say(f"pg_basebackup from {source} ({'a replica' if facts['from_replica'] else 'the leader'}), writes go on")
        res = parts.pg_out(model, source, dest)
        target = next(d.target for d in part.dirs if d.service == source).rstrip("/")
        if not facts["pgdata"].startswith(target + "/") and facts["pgdata"] != target:
            raise ToolkitError(f"PostgreSQL's data directory {facts['pgdata']} in {source} is not below its data "
                               f"mount {target}", where=source, fix="mount the data directory's parent as the "
                               "service's data directory (as the shipped stack does)")
        entry.update(facts, source=source, members=list(part.members), dcs=list(part.dcs),
                     subdir=facts["pgdata"][len(target):].strip("/"))
    elif part.kind == "valkey":
        facts = parts.valkey_snapshot(model, part.service)
        res = parts.valkey_out(model, part.service, facts, dest)
        entry["valkey"] = facts
    else:
        with paused(model, part.service, running, pauses):
            res = parts.dir_out(model, engine, part.dirs[0], dest)
        if part.service in {m for c in dbfacts.clusters(model) for m in c.members}:  # a restore checks the major
            state = datastate.probe(model.project_dir, [part.dirs[0].path], engine, model.helper_image)
            major = dbfacts.data_major(state[part.dirs[0].path].pg_version)
            if major is not None:
                entry["postgres_major"] = major
    entry.update(bytes=res.size, sha256=res.sha256)
    say(f"{part.name}: {diskuse.human(res.size)} in {time.monotonic() - started:.1f} s")
    return entry


def take(model: Model, engine: Engine, *, root: Path, only: list[str], skip: list[str]) -> tuple[Path, dict]:
    """Make one backup under ``root``; returns its directory and manifest."""
    with fsutil.file_lock(model.project_dir / LOCK):
        parts.remove_leftover_helpers(model)  # of a run killed before this one: none of a live run can exist
        running = running_services(model)
        choice = choose(model, only=only, skip=skip, running=running)
        return write_backup(model, engine, choice, root, running=running)


#: Parts taken side by side: each paused service is stopped only for its own copy, and the
#: copies, the base backup and the snapshot wait on different things (compose, the disk, WAL).
WORKERS = 4


def side_by_side(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` on :data:`WORKERS` threads; their results in order. Every started job runs
    to its end (a paused service is started again by its own job) before a failure is raised,
    all of them named; on Ctrl-C the jobs not yet started are dropped."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=WORKERS)
    try:
        futures = [pool.submit(job) for job in jobs]
        errors = [f.exception() for f in futures if f.exception() is not None]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if not errors:
        return [f.result() for f in futures]
    others = [e for e in errors if not isinstance(e, ToolkitError)]
    if others or len(errors) == 1:
        raise (others or errors)[0]
    toolkit = [e for e in errors if isinstance(e, ToolkitError)]
    raise ToolkitError("; ".join(e.message for e in toolkit),
                       fix=" / ".join(dict.fromkeys(e.fix or "" for e in toolkit)))


def take_parts(model: Model, engine: Engine, todo: list[Part], directory: Path, running: dict[str, str],
               pauses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every part's manifest entry, in ``todo``'s order. The copies of one service's several
    data directories share one job, so that the service is stopped once for all of them."""
    groups: dict[str, list[Part]] = {}
    for part in todo:
        groups.setdefault(part.service if part.kind == "copy" else f"\0{part.name}", []).append(part)

    def job(group: list[Part]) -> Callable[[], list[dict[str, Any]]]:
        if group[0].kind != "copy" or len(group) == 1:
            return lambda: [_take_part(model, engine, p, directory, running, pauses) for p in group]

        def together() -> list[dict[str, Any]]:
            with paused(model, group[0].service, running, pauses):
                return [_take_part(model, engine, p, directory, {}, pauses) for p in group]
        return together

    results = side_by_side([job(g) for g in groups.values()])
    done = {part.name: entry for group, entries in zip(groups.values(), results, strict=True)
            for part, entry in zip(group, entries, strict=True)}
    return [done[p.name] for p in todo]


def write_backup(model: Model, engine: Engine, choice: Choice, root: Path, *, running: dict[str, str],
                 label: str = "", estimate: int | None = None) -> tuple[Path, dict]:
    """Write the parts of ``choice``, then the manifest; on any failure remove what was written
    (paused services are started again by :func:`paused` in every case)."""
    if estimate is None:  # a caller that checked the room already passes what it found
        estimate = check_room(model, engine, choice, root)
    started = time.time()
    directory = new_directory(root, model.name + (f"-{label}" if label else ""), started)
    say(f"writing {directory} ({len(choice.parts)} parts, about {diskuse.human(estimate)})")
    pauses: list[dict[str, Any]] = []
    try:
        entries = take_parts(model, engine, choice.parts, directory, running, pauses)
        doc = {
            "format": manifest.FORMAT, "project": model.name, "label": label, "created": manifest.utc(started),
            "seconds": round(time.time() - started, 2), "git_commit": git_commit(model.project_dir),
            "pins": {k: v for k, v in sorted(envfile.read(model.project_dir / ".env").values.items())
                     if envfile.is_pin(k)},
            "images": {svc: str(spec.get("image") or "") for svc, spec in sorted(model.services.items())},
            "engine": {"kind": str(engine.kind), "version": engine.version_text},
            "running": sorted(running), "parts": entries,
            "paused": sorted(pauses, key=lambda p: p["service"]),
            "skipped": [{"service": s, "why": why} for s, why in choice.skipped],
        }
        fsutil.fsync(directory)  # the parts' names; each part was synced as it was written
        manifest.write(directory, doc)
    except BaseException as exc:
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise ToolkitError(f"the disk under {root} filled up during the backup; the unfinished backup was "
                               "removed and every service runs as before", where=str(root),
                               fix="free space there, or write the backup elsewhere: `invoke backup --to DIR`"
                               ) from None
        raise
    say(f"done: {directory} ({diskuse.human(manifest.total_bytes(doc))} in {doc['seconds']} s)", "ok")
    return directory, doc


def default_root(project: Path) -> Path:
    return project / DEFAULT_ROOT


def resolve_root(project: Path, to: str | None) -> Path:
    return Path(os.path.abspath(os.path.expanduser(to))) if to else default_root(project)
