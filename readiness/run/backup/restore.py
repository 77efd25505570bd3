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

import functools
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
from ...system import engine as enginelib
from ...system import fsutil, runner
from ...system.engine import Engine
from .. import diskuse
from . import manifest, parts, take
from .plan import Choice, choose


def say(message: str, style: str | None = None) -> None:
    output.say("restore", message, style)


@dataclass
class Checked:
    """A backup that passed every check, and what restoring it replaces."""

    directory: Path
    doc: dict[str, Any]
    replaces: list[str] = field(default_factory=list)   # human lines
    services: list[str] = field(default_factory=list)   # services whose data is replaced


def image_major(image: str) -> dbfacts.Major | None:
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
    restores_env = any(p["kind"] == "config" and ".env" in p.get("paths", []) for p in doc["parts"])
    if restores_env:
        _same_data_root(model, directory, next(p for p in doc["parts"] if p["kind"] == "config"))
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
        if type(part.get("postgres_major")) is int:
            member = part["members"][0] if part["kind"] == "postgres" else part["service"]
            # The image the stack will run: the backup's own when it puts its .env back.
            image = str(doc.get("images", {}).get(member) if restores_env else "") or \
                str(model.services.get(member, {}).get("image") or "")
            major = image_major(image)
            if major is not None and not major.runs(int(part["postgres_major"])):
                raise ToolkitError(
                    f"the backup holds PostgreSQL {part['postgres_major']} data, and {member}'s image {image} "
                    f"runs PostgreSQL {major.newest} ({major.source}). Nothing was changed.",
                    where=str(directory / part["name"]),
                    fix=f"restore it with an image of PostgreSQL {part['postgres_major']} (SPILO_IMAGE in .env), then "
                        "move to the new major (`invoke upgrade --dry-run` names the ways)")
        for svc in part["services"]:
            if svc not in out.services:
                out.services.append(svc)
        paths = ", ".join(d["path"] for d in part.get("dirs", []))
        out.replaces.append(f"{part['kind']} data of {', '.join(part['services'])}: {paths}")
    return out


def _same_data_root(model: Model, directory: Path, part: dict[str, Any]) -> None:
    """The restore puts the backup's ``.env`` back: where it puts the data (``DATA_ROOT``) must
    be where this checkout has it, or the data would land in directories the safety backup does
    not hold."""
    import tarfile

    from ...stack import envfile

    try:
        with tarfile.open(directory / part["name"]) as tar:
            member = next((m for m in tar.getmembers() if m.name in ("./.env", ".env") and m.isfile()), None)
            data = tar.extractfile(member).read() if member else None  # type: ignore[union-attr]
    except (OSError, tarfile.TarError) as exc:
        raise ToolkitError(f"{part['name']} cannot be read: {exc}. Nothing was changed.",
                           where=str(directory / part["name"]),
                           fix="choose another backup (`invoke backups`)") from None
    if data is None:
        return
    theirs = envfile.parse_text(envfile.decode(data), directory / ".env").values.get("DATA_ROOT", "")
    ours = envfile.read(model.project_dir / ".env").values.get("DATA_ROOT", "")
    if theirs != ours:
        raise ToolkitError(f"the backup's .env puts the data at DATA_ROOT={theirs or '(default)'}, this checkout's at "
                           f"DATA_ROOT={ours or '(default)'}. Nothing was changed.", where=".env (DATA_ROOT)",
                           fix=f"set DATA_ROOT={theirs} in .env (`invoke dirs` creates it), then restore again")


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
        parts.remove_leftover_helpers(model)  # of a run killed before this one
        safety_choice = _safety_choice(model, checked)
        usage = diskuse.measure(model, engine)  # once, for both checks, before anything stops
        safety_size = take.check_room(model, engine, safety_choice, root, usage)
        check_room(model, checked, root, safety_size, usage)
        running = take.running_services(model)
        mark = time.monotonic()
        if running:
            say(f"stopping the stack ({len(running)} containers run)")
            parts.compose_run(model, "stop")
        mark = lap("stop", mark)
        try:
            say("taking a safety backup of what the restore replaces")
            safety, _ = take.write_backup(model, engine, safety_choice, root, running={}, label="safety",
                                          estimate=safety_size)
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
        except BaseException as exc:  # whatever stopped it, say where the data that was there is
            error = exc if isinstance(exc, ToolkitError) else from_oserror(exc) if isinstance(exc, OSError) else \
                ToolkitError("interrupted (Ctrl-C)", code=130) if isinstance(exc, KeyboardInterrupt) else \
                ToolkitError(f"internal error: {type(exc).__name__}: {exc}")
            raise ToolkitError(f"the restore stopped half-way: {error.message}. The data as it was before the restore "
                               f"is in the safety backup {safety}; the stack is stopped", where=error.where,
                               fix=f"{error.fix or 'see the message'}; to put back what was there: "
                                   f"invoke restore {safety} --yes", code=error.code) from None
    seconds = round(time.monotonic() - began, 2)
    if proved is None or proved["ok"]:
        say(f"done in {seconds} s; what was there before is in {safety}", "ok")
    return {"path": str(checked.directory), "safety_backup": str(safety), "seconds": seconds, "phases": phases,
            "replaced": checked.replaces, "started": bool(running), "verify": proved}


def _safety_choice(model: Model, checked: Checked) -> Choice:
    """What the safety backup copies: everything the restore replaces, as it lies (the stack
    will be stopped), the configuration always."""
    only = [s for s in checked.services if s in model.services]
    return choose(model, only=only, running=set()) if only else \
        choose(model, skip=sorted(model.services), running=set())  # the configuration alone


def check_room(model: Model, checked: Checked, root: Path, safety_size: int, usage: list[diskuse.Usage]) -> None:
    """The data disk must hold the backup's data once what it replaces is gone, and the safety
    backup too when it is written to the same disk."""
    replaced = {Path(d.path) for p in checked.doc["parts"] for x in p.get("dirs", [])
                if (d := dir_for(model, x["service"], x["target"])) is not None}
    if not replaced:
        return
    freed = sum(u.size or 0 for u in usage if u.path in replaced)
    need = sum(p["bytes"] for p in checked.doc["parts"] if p["kind"] != "config")
    data_disk = next(iter(sorted(replaced))).parent
    free = shutil.disk_usage(data_disk).free
    if _same_device(data_disk, root):
        need += safety_size
    if free + freed < need + take.MARGIN:
        raise ToolkitError(f"not enough free space to restore: the data needs about {diskuse.human(need)}, and the "
                           f"data disk has {diskuse.human(free)} free plus {diskuse.human(freed)} the restore frees. "
                           "Nothing was changed.", where=str(next(iter(sorted(replaced))).parent),
                           fix="free space on the data disk (`invoke status` shows each directory), then run again")


def _same_device(a: Path, b: Path) -> bool:
    def device(p: Path) -> int | None:
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            return p.stat().st_dev
        except OSError:
            return None
    return device(a) == device(b)


def _put_back(model: Model, engine: Engine, checked: Checked, reload: Callable[[], Model],
              lap: Callable[[str, float], float]) -> Model:
    """Configuration first (it may move DATA_ROOT), then every data part side by side, then the
    Patroni cluster founded again from its restored member."""
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
    take.side_by_side([functools.partial(_put_part, model, engine, directory, part) for part in data])
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
    present = []
    for x in part.get("dirs", []):
        d = dir_for(model, x["service"], x["target"])
        if d is None:
            raise ToolkitError(f"the restored .env leaves {x['service']} without a data directory at {x['target']}",
                               where=".env", fix="compare the restored .env with the compose files")
        present.append(d)
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
        created = enginelib.parse_rfc3339(str(doc.get("created", "")))
        out.append({"path": str(path), "complete": True, "project": doc.get("project"), "created": doc.get("created"),
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


#: Newest modification time below each mounted directory, one line each (``i epoch``): busybox
#: and coreutils ``stat`` alike; a directory that cannot be read gives no line (unknown).
_NEWEST = ("for d in /mnt/*; do t=$(find \"$d\" -exec stat -c %Y {} + 2>/dev/null | sort -n | tail -n 1); "
           "[ -n \"$t\" ] && echo \"${d#/mnt/} $t\"; done; true")


def data_changed_at(model: Model, engine: Engine, dirs: list[dirslib.DataDir]) -> dict[str, float | None]:
    """Service -> the last moment its data may have changed: now while its container runs (it
    writes); when its container stopped; with no container at all (``invoke down``), the newest
    modification time inside its data directories, read through the engine. None: unknown,
    which no backup covers."""
    services = sorted({d.service for d in dirs})
    containers = {str(c.get("Service", "")): c for c in enginelib.project_containers(model.name)}
    times = enginelib.container_times([str(c["ID"]) for s, c in containers.items() if s in services])
    out: dict[str, float | None] = {}
    orphans = []
    for svc in services:
        t = times.get(str(containers[svc]["ID"])) if svc in containers else None
        if t is not None:
            started, finished, running = t
            out[svc] = time.time() if running else (max(started or 0.0, finished or 0.0) or None)
        else:
            orphans += [d for d in dirs if d.service == svc]
    if orphans:
        text, _ = enginelib.look_into(engine, model.helper_image, _NEWEST,
                                      [(d.path, f"/mnt/{i}") for i, d in enumerate(orphans)])
        newest: dict[int, float] = {}
        for line in text.splitlines():
            index, _, stamp = line.partition(" ")
            if index.isdigit() and stamp.strip().isdigit():
                newest[int(index)] = float(stamp)
        for i, d in enumerate(orphans):
            if i not in newest:
                out[d.service] = None
            elif out.get(d.service, 0.0) is not None:
                out[d.service] = max(out.get(d.service) or 0.0, newest[i])
    return out


def covering(rows: list[dict[str, Any]], changed: dict[str, float | None], project: str,
             intact: Callable[[dict[str, Any]], bool] = lambda row: True) -> dict[str, Any] | None:
    """The newest complete backup of ``project`` that holds every service of ``changed``, was
    taken after each one's data last changed (an unknown moment is never covered) and is
    ``intact`` (its hashes hold: asked only of the one that would be chosen); None when none is."""
    for row in sorted((r for r in rows if r["complete"] and r["checksums_ok"] and r.get("project") == project),
                      key=lambda r: r["created"], reverse=True):
        created = enginelib.parse_rfc3339(str(row["created"])) or 0.0
        if set(changed) <= set(row["services"]) and all(t is not None and created >= t for t in changed.values()) \
                and intact(row):
            return row
    return None
