"""``invoke restore PATH`` and ``invoke backups``.

A restore checks everything before it touches anything: the manifest, every part's size and
SHA-256, that the backup is of this stack (its Compose project) and that the images run its
PostgreSQL major. Without ``--yes`` it says what it would replace and stops. With it, it stops
the stack, takes a **safety backup** of everything it is about to replace (copied as it lies:
the stack is stopped, so that copy is consistent, DCS included), puts each part back, founds the
Patroni cluster again from the restored member, and starts the stack again when it ran. Should a
step fail after the safety backup, the message names that backup and the command that puts it
back (``invoke restore <safety> --yes``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import output
from ...errors import ToolkitError, from_oserror
from ...prepare import dirs as dirslib
from ...stack import dbfacts
from ...stack.model import Model
from ...system import fsutil, runner
from ...system.engine import Engine
from .. import diskuse
from . import manifest, parts, take
from .plan import choose


def say(message: str, style: str | None = None) -> None:
    output.say("restore", message, style)


@dataclass
class Checked:
    """A backup that passed every check, and what restoring it replaces."""

    directory: Path
    doc: dict[str, Any]
    replaces: list[str] = field(default_factory=list)   # human lines
    services: list[str] = field(default_factory=list)   # services whose data is replaced


def image_major(model: Model, svc: str) -> dbfacts.Major | None:
    image = str(model.services[svc].get("image") or "")
    res = runner.run(["docker", "image", "inspect", "--format", "{{json .Config.Env}}", image], timeout=60)
    env = None
    if res.ok:
        import json

        try:
            env = json.loads(res.stdout.strip() or "null")
        except ValueError:
            env = None
    return dbfacts.major(image, env)


def dir_for(model: Model, service: str, target: str) -> dirslib.DataDir | None:
    """This stack's data directory for a part's (service, mount target): paths may differ on
    another machine or with another DATA_ROOT; the mount inside the container does not."""
    return next((d for d in dirslib.data_dirs(model) if d.service == service and d.target == target), None)


def check(model: Model, directory: Path) -> Checked:
    """Refuse a missing, partial, damaged or foreign backup, naming what is wrong."""
    doc, why = manifest.read(directory)
    if doc is None:
        raise ToolkitError(f"{directory} is not a complete backup: {why}", where=str(directory),
                           fix="choose a complete one: `invoke backups` lists them")
    damaged = manifest.damage(directory, doc)
    if damaged:
        raise ToolkitError(f"the backup {directory} is damaged: "
                           + "; ".join(f"{d.part}: {d.what}" for d in damaged)
                           + ". Nothing was changed.", where=str(directory),
                           fix="restore another backup (`invoke backups` lists them and whether their checksums "
                               "hold)")
    if doc.get("project") != model.name:
        raise ToolkitError(f"the backup {directory} is of another stack: Compose project {doc.get('project')!r}, "
                           f"this one is {model.name!r}. Nothing was changed.", where=str(directory / manifest.NAME),
                           fix="restore it in a checkout of that stack, or choose a backup of this one")
    out = Checked(directory, doc)
    for part in doc["parts"]:
        if part["kind"] == "config":
            out.replaces.append(f".env, the secrets and certificates ({len(part.get('paths', []))} files)")
            continue
        for d in part.get("dirs", []):
            if dir_for(model, d["service"], d["target"]) is None:
                raise ToolkitError(f"the backup holds data of {d['service']} ({d['target']}), which this stack has no "
                                   "data directory for. Nothing was changed.", where=str(directory / part["name"]),
                                   fix="restore it with the compose files it was taken with (git commit "
                                       f"{doc.get('git_commit') or 'unknown'})")
        if part["kind"] == "postgres":
            major = image_major(model, part["members"][0])
            if major is not None and not major.runs(int(part["postgres_major"])):
                raise ToolkitError(
                    f"the backup holds PostgreSQL {part['postgres_major']} data, and {part['members'][0]}'s image "
                    f"runs PostgreSQL {major.newest} ({major.source}). Nothing was changed.",
                    where=str(directory / part["name"]),
                    fix=f"restore it with an image of PostgreSQL {part['postgres_major']} (SPILO_IMAGE in .env), then "
                        "upgrade the major as runbook §7 says")
        for svc in part["services"]:
            if svc not in out.services:
                out.services.append(svc)
        paths = ", ".join(d["path"] for d in part.get("dirs", []))
        out.replaces.append(f"{part['kind']} data of {', '.join(part['services'])}: {paths}")
    return out


def restore(model: Model, engine: Engine, checked: Checked, *, root: Path,
            reload: Callable[[], Model], start: Callable[[Model], dict[str, Any]]) -> dict[str, Any]:
    """Replace the stack's data with the backup's (see the module); returns the run's document."""
    began = time.monotonic()
    phases: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        phases[name] = round(now - since, 2)
        return now

    with fsutil.file_lock(model.project_dir / take.LOCK):
        check_room(model, engine, checked)
        running = take.running_services(model)
        mark = time.monotonic()
        if running:
            say(f"stopping the stack ({len(running)} containers run)")
            parts.compose_run(model, "stop")
        mark = lap("stop", mark)
        try:
            safety = Path(_safety(model, engine, checked, root)["path"])
        except BaseException:
            if running:  # nothing was replaced: the stack goes back to what it was doing
                say("the safety backup failed: starting the stack again, nothing was replaced", "error")
                parts.compose_run(model, "start")
            raise
        mark = lap("safety_backup", mark)
        try:
            model = _put_back(model, engine, checked, reload, lambda name, since: lap(name, since))
            mark = time.monotonic()
            proved = None
            if running:
                say("starting the stack again")
                proved = start(model)
            else:
                parts.compose_run(model, "stop")  # what founding the cluster started
                say("the stack was not running: left stopped")
            lap("start_and_verify" if running else "stop", mark)
        except (ToolkitError, OSError) as exc:
            error = exc if isinstance(exc, ToolkitError) else from_oserror(exc)
            raise ToolkitError(f"{error.message}. The data as it was before the restore is in the safety backup "
                               f"{safety}", where=error.where,
                               fix=f"{error.fix or 'see the message'}; to put back what was there: "
                                   f"invoke restore {safety} --yes") from None
    seconds = round(time.monotonic() - began, 2)
    if proved is None or proved["ok"]:
        say(f"done in {seconds} s; what was there before is in {safety}", "ok")
    return {"path": str(checked.directory), "safety_backup": str(safety), "seconds": seconds, "phases": phases,
            "replaced": checked.replaces, "started": bool(running), "verify": proved}


def _safety(model: Model, engine: Engine, checked: Checked, root: Path) -> dict[str, Any]:
    """A copy of everything the restore replaces, taken with the stack stopped."""
    only = [s for s in checked.services if s in model.services]
    choice = choose(model, only=only, running=set()) if only else \
        choose(model, skip=sorted(model.services), running=set())  # the configuration alone
    say("taking a safety backup of what the restore replaces")
    directory, doc = take.write_backup(model, engine, choice, root, running={}, label="safety")
    return {"path": str(directory), **doc}


def check_room(model: Model, engine: Engine, checked: Checked) -> None:
    """The data disk must hold the backup's data once what it replaces is gone."""
    replaced = {Path(d.path) for p in checked.doc["parts"] for x in p.get("dirs", [])
                if (d := dir_for(model, x["service"], x["target"])) is not None}
    if not replaced:
        return
    freed = sum(u.size or 0 for u in diskuse.measure(model, engine) if u.path in replaced)
    need = sum(p["bytes"] for p in checked.doc["parts"] if p["kind"] != "config")
    free = shutil.disk_usage(next(iter(sorted(replaced))).parent).free
    if free + freed < need + take.MARGIN:
        raise ToolkitError(f"not enough free space to restore: the data needs about {diskuse.human(need)}, and the "
                           f"data disk has {diskuse.human(free)} free plus {diskuse.human(freed)} the restore frees. "
                           "Nothing was changed.", where=str(next(iter(sorted(replaced))).parent),
                           fix="free space on the data disk (`invoke status` shows each directory), then run again")


def _put_back(model: Model, engine: Engine, checked: Checked, reload: Callable[[], Model],
              lap: Callable[[str, float], float]) -> Model:
    """Configuration first (it may move DATA_ROOT), then every data part side by side, then the
    Patroni cluster founded again from its restored member."""
    from concurrent.futures import ThreadPoolExecutor

    directory, doc = checked.directory, checked.doc
    mark = time.monotonic()
    for part in doc["parts"]:
        if part["kind"] == "config":
            say(f"{part['name']}: .env, secrets and certificates")
            sent = parts.config_in(model, engine, directory / part["name"], part.get("paths", []),
                                   tuple(part.get("taken_by", (0, 0))))  # type: ignore[arg-type]
            _same(part, sent)
            model = reload()  # .env may move DATA_ROOT or a port
    data = [p for p in doc["parts"] if p["kind"] != "config"]
    with ThreadPoolExecutor(max_workers=take.WORKERS) as pool:
        futures = [pool.submit(_put_part, model, engine, directory, part) for part in data]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    mark = lap("put_back", mark)
    for part in data:
        if part["kind"] == "postgres":
            founder = part["members"][0]
            say(f"{founder} founds the PostgreSQL cluster again from the restored data")
            parts.compose_run(model, "up", "-d", "--no-deps", *part.get("dcs", []), founder)
            parts.wait_leader(model, founder)
            say(f"{founder} is the leader; the other members copy from it when they start")
            mark = lap("found_cluster", mark)
    return model


def _put_part(model: Model, engine: Engine, directory: Path, part: dict[str, Any]) -> None:
    dirs = [dir_for(model, d["service"], d["target"]) for d in part.get("dirs", [])]
    present = [d for d in dirs if d is not None]
    started = time.monotonic()
    parts.empty(model, engine, present)
    source = directory / part["name"]
    if part["kind"] == "postgres":
        target = next(d for d in present if d.service == part["members"][0])
        sent = parts.dir_in(model, engine, source, target, subdir=part.get("subdir", ""))
    elif part["kind"] == "valkey":
        sent = parts.valkey_in(model, engine, source, present[0], part["valkey"])
    else:
        sent = parts.dir_in(model, engine, source, present[0])
    _same(part, sent)
    say(f"{part['name']}: {diskuse.human(part['bytes'])} in {time.monotonic() - started:.1f} s")


def _same(part: dict[str, Any], sent: runner.Streamed) -> None:
    """What was put back is what was checked (the file did not change in between)."""
    if sent.sha256 != part["sha256"]:
        raise ToolkitError(f"{part['name']} changed while it was being restored (its SHA-256 no longer matches the "
                           "manifest)", where=part["name"], fix="keep the backup directory unchanged during a restore")


def listing(root: Path, *, hashes: bool = True) -> list[dict[str, Any]]:
    """Every directory under ``root``: complete backups with size, age and whether their checksums
    hold (``hashes``: read every part; otherwise only the sizes); incomplete ones with why."""
    out = []
    if not root.is_dir():
        return out
    now = time.time()
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        doc, why = manifest.read(path)
        if doc is None:
            out.append({"path": str(path), "complete": False, "why": why})
            continue
        damaged = manifest.damage(path, doc, hashes=hashes)
        created = manifest.parse_utc(str(doc.get("created", "")))
        out.append({"path": str(path), "complete": True, "created": doc.get("created"),
                    "age_seconds": None if created is None else int(now - created),
                    "bytes": manifest.total_bytes(doc), "label": doc.get("label", ""),
                    "services": sorted({s for p in doc["parts"] for s in p.get("services", [])}),
                    "checksums_ok": not damaged, "damage": [f"{d.part}: {d.what}" for d in damaged]})
    return out


def age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def data_changed_at(model: Model, services: set[str]) -> dict[str, float | None]:
    """Service -> the last moment its data may have changed, as the engine knows it: the start
    of its running container (its writes since are the part a backup taken meanwhile misses), or
    the stop of a stopped one; None when it has no container (nothing the engine can say)."""
    from ...system import engine as enginelib

    containers = {str(c.get("Service", "")): c for c in enginelib.project_containers(model.name)}
    times = enginelib.container_times([str(c["ID"]) for s, c in containers.items() if s in services])
    out: dict[str, float | None] = {}
    for svc in sorted(services):
        t = times.get(str(containers[svc]["ID"])) if svc in containers else None
        if t is None:
            out[svc] = None
        else:
            started, finished, running = t
            out[svc] = started if running else max(started or 0.0, finished or 0.0) or None
    return out


def covering(rows: list[dict[str, Any]], changed: dict[str, float | None]) -> dict[str, Any] | None:
    """The newest complete backup that holds every service of ``changed`` and was taken after
    each one's data last changed; None when there is none."""
    for row in sorted((r for r in rows if r["complete"] and r["checksums_ok"]), key=lambda r: r["created"],
                      reverse=True):
        created = manifest.parse_utc(str(row["created"])) or 0.0
        if set(changed) <= set(row["services"]) and all(t is None or created >= t for t in changed.values()):
            return row
    return None
