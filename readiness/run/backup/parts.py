"""The engine side of a backup: each part is a stream a container produces or consumes.

Data directories belong to container uids (Grafana 472, Spilo's postgres, Valkey 999), so the
user cannot read them, and on a rootless engine not even root could chown them back. Every
read and write of data therefore happens in a short-lived helper container (``HELPER_IMAGE``,
no network, the fewest capabilities), as the engine maps uids: ``tar`` records numeric owners
as containers see them, and ``tar -x --numeric-owner`` gives them back, on a rootful, a
rootless or a userns-remap engine alike. The databases' own tools run where they are, in their
containers (``docker compose exec``). Bytes stream through the toolkit into the backup file
(:func:`readiness.system.runner.to_file`), which hashes them on the way: no second read.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Collection
from pathlib import Path

from ...errors import ToolkitError
from ...prepare import dirs as dirslib
from ...stack import compose, dbfacts
from ...stack.model import Model
from ...system import engine as enginelib
from ...system import runner
from ...system.engine import Engine, Kind

Progress = Callable[[int], None]


def _failed(what: str, res: runner.Streamed | runner.Result, fix: str) -> ToolkitError:
    text = res.stderr.strip()
    last = (text.splitlines() or [f"exit status {res.returncode}"])[-1]
    return ToolkitError(f"{what} failed: {last}", fix=enginelib.unreachable_hint(text) or fix)


#: The label every helper container of a backup or restore carries, valued with the project:
#: under the backup lock, one still running belongs to a run that was killed (its client gone).
HELPER_LABEL = "io.readiness.backup-helper"


def helper_labels(model: Model) -> dict[str, str]:
    return {HELPER_LABEL: model.name}


def remove_leftover_helpers(model: Model) -> list[str]:
    """Remove this project's backup helpers still running; call it under the backup lock,
    where none of a live run can exist. A client killed with SIGKILL leaves its ``docker run``
    container behind (a ``tar`` reading a whole data directory into nothing): this is where it
    ends. Returns the ids removed."""
    return enginelib.remove_labelled(HELPER_LABEL, model.name)


# ------------------------------------------------------------------ data directories (helper + tar)


def dir_out(model: Model, engine: Engine, d: dirslib.DataDir, dest: Path, progress: Progress | None = None
            ) -> runner.Streamed:
    """``tar -c`` of a data directory, read-only, as its containers see it, into ``dest``."""
    args = enginelib.helper_command(model.helper_image, "cd /src && exec tar -cf - .", [(d.path, "/src")],
                                    caps=("DAC_READ_SEARCH",), host_userns=engine.kind == Kind.USERNS, readonly=True,
                                    stream=True, labels=helper_labels(model))
    res = runner.to_file(args, dest, progress=progress)
    if not res.ok:
        raise _failed(f"reading {model.relpath(d.path)} ({d.service})", res,
                      "check that the helper image runs (`docker run --rm HELPER_IMAGE true`) and run again")
    return res


def dir_in(model: Model, engine: Engine, source: Path, d: dirslib.DataDir, *, subdir: str = "") -> runner.Streamed:
    """Put an archive back into an emptied data directory (``subdir`` below it), owners and
    modes as the archive holds them."""
    target = "/dst/" + subdir.strip("/") if subdir.strip("/") else "/dst"
    script = f"mkdir -p {shlex.quote(target)} && cd {shlex.quote(target)} && exec tar --numeric-owner -xpf -"
    args = enginelib.helper_command(model.helper_image, script, [(d.path, "/dst")],
                                    caps=("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"),
                                    host_userns=engine.kind == Kind.USERNS, stdin=True, labels=helper_labels(model))
    res = runner.from_file(args, source)
    if not res.ok:
        raise _failed(f"writing {model.relpath(d.path)} ({d.service})", res, "check free space on the data disk "
                      "(`df -h`), then run the restore again: it starts over from its safety backup")
    return res


def empty(model: Model, engine: Engine, dirs: list[dirslib.DataDir]) -> None:
    """Remove everything inside ``dirs``, creating those that do not exist (each stays, with its owner)."""
    for d in dirs:
        d.path.mkdir(parents=True, exist_ok=True)
    dirslib.empty(model, dirs, host_userns=engine.kind == Kind.USERNS)


# ------------------------------------------------------------------ configuration


def user_ids(engine: Engine) -> tuple[int, int]:
    """The invoking user's uid:gid as the helper containers see it: as the engine maps it
    (rootless: 0:0), or the host's own ids where helpers run in the host's user namespace
    (userns-remap)."""
    import os

    if engine.kind == Kind.USERNS:
        return os.getuid(), os.getgid()
    uid, gid = engine.container_uid(os.getuid()), engine.container_gid(os.getgid())
    return (0 if uid is None else uid), (0 if gid is None else gid)


def helper_ids(engine: Engine, owner: tuple[int, int]) -> tuple[int, int]:
    """A container owner as a helper must write it: itself, or mapped to the host's ids where
    helpers run in the host's user namespace (userns-remap)."""
    if engine.kind != Kind.USERNS:
        return owner
    uid, gid = engine.host_uid(owner[0]), engine.host_gid(owner[1])
    return (owner[0] if uid is None else uid), (owner[1] if gid is None else gid)


def _relative(paths: list[str]) -> str:
    """Project-relative paths as ``./path`` words: never read as an option by tar or find."""
    return " ".join(shlex.quote(p if p.startswith("./") else "./" + p) for p in paths)


def config_out(model: Model, engine: Engine, paths: list[str], dest: Path) -> runner.Streamed:
    script = "cd /p && exec tar -cf - " + _relative(paths)
    args = enginelib.helper_command(model.helper_image, script, [(model.project_dir, "/p")],
                                    caps=("DAC_READ_SEARCH",), host_userns=engine.kind == Kind.USERNS, readonly=True,
                                    stream=True, labels=helper_labels(model))
    res = runner.to_file(args, dest)
    if not res.ok:
        raise _failed("reading .env and secrets/", res, "check that the helper image runs and run again")
    return res


def config_in(model: Model, engine: Engine, source: Path, paths: list[str], taken_by: tuple[int, int]
              ) -> runner.Streamed:
    """Put ``.env``, the secrets and the records back; files the backup's user owned go to this
    user (a new machine, another uid), every other owner is kept as it was."""
    uid, gid = user_ids(engine)
    quoted = _relative(paths)
    taken_by = (int(taken_by[0]), int(taken_by[1]))
    script = "cd /p && tar --numeric-owner -xpf -"
    if (uid, gid) != taken_by and paths:
        script += (f" && find {quoted} -uid {taken_by[0]} -exec chown -h {uid} {{}} +"
                   f" && find {quoted} -gid {taken_by[1]} -exec chgrp -h {gid} {{}} +")
    args = enginelib.helper_command(model.helper_image, script, [(model.project_dir, "/p")],
                                    caps=("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"),
                                    host_userns=engine.kind == Kind.USERNS, stdin=True, labels=helper_labels(model))
    res = runner.from_file(args, source)
    if not res.ok:
        raise _failed("writing .env and secrets/", res, "check free space and run the restore again")
    return res


# ------------------------------------------------------------------ services, through compose


def exec_run(model: Model, svc: str, script: str, *, timeout: float = 60) -> runner.Result:
    return runner.run(compose.command_for(model, "exec", "-T", svc, "sh", "-c", script), cwd=model.project_dir,
                      timeout=timeout)


def compose_run(model: Model, *args: str, timeout: float = 600) -> None:
    res = runner.run(compose.command_for(model, *args), cwd=model.project_dir, timeout=timeout)
    if not res.ok:
        raise _failed(f"docker compose {' '.join(args)}", res, "see the message above; `invoke status` shows the stack")


def container(model: Model, action: str, svc: str, cid: str) -> None:
    """``docker stop`` / ``docker start`` of one service's container."""
    res = runner.run(["docker", action, cid], timeout=600)
    if not res.ok:
        raise _failed(f"docker {action} {svc}", res, f"`docker compose {action} {svc}` by hand; `invoke status` shows "
                      "the stack")


# ------------------------------------------------------------------ PostgreSQL (Patroni)

_FACTS_SQL = ("SELECT current_setting('data_directory'), current_setting('server_version_num'), "
              "(SELECT system_identifier FROM pg_control_system()), pg_is_in_recovery()")


def _superuser(model: Model, member: str) -> tuple[str, str]:
    env = dbfacts.environment(model.services[member])
    return env.get("PGUSER_SUPERUSER", "postgres"), env.get("PGUSER_STANDBY", "standby")


def pg_facts(model: Model, member: str) -> dict:
    """What the member's PostgreSQL says about its data: directory, major, system id, role."""
    superuser, _ = _superuser(model, member)
    res = exec_run(model, member, f"exec psql -X -A -t -F '|' -U {shlex.quote(superuser)} -d postgres "
                                  f"-c {shlex.quote(_FACTS_SQL)}")
    if not res.ok or res.stdout.count("|") != 3:
        raise _failed(f"asking PostgreSQL in {member} about its data", res,
                      f"check that {member} is healthy (`invoke status`, `invoke logs {member}`)")
    pgdata, version, sysid, recovery = res.stdout.strip().split("|")
    return {"pgdata": pgdata, "postgres_major": int(version) // 10000, "system_identifier": sysid,
            "from_replica": recovery == "t"}


def replica_first(model: Model, members: tuple[str, ...], running: Collection[str]) -> list[str]:
    """Running members, replicas first (Patroni's ``/replica`` answers 200 on a streaming one)."""
    up = [m for m in members if m in running]
    replicas = [m for m in up if exec_run(model, m, "curl -fsS -o /dev/null http://localhost:8008/replica",
                                          timeout=20).ok]
    return replicas + [m for m in up if m not in replicas]


def pg_out(model: Model, member: str, dest: Path, progress: Progress | None = None) -> runner.Streamed:
    """``pg_basebackup`` of the member as one tar on stdout, its WAL inside (``-X fetch``):
    consistent while writes go on; over the member's local socket as the replication user
    (Spilo's ``local replication standby trust``), so no password passes."""
    _, standby = _superuser(model, member)
    script = f"exec pg_basebackup -U {shlex.quote(standby)} -D - -F tar -X fetch -c fast --no-password"
    args = compose.command_for(model, "exec", "-T", member, "sh", "-c", script)
    res = runner.to_file(args, dest, progress=progress, cwd=model.project_dir)
    if not res.ok:
        raise _failed(f"pg_basebackup in {member}", res,
                      f"check that {member} is healthy and that its disk has room for WAL (`invoke status`)")
    return res


def wait_leader(model: Model, member: str, timeout: float = 300) -> None:
    """Until Patroni in ``member`` answers ``/primary`` with 200 (it took the leader lock)."""
    deadline = time.monotonic() + timeout
    while True:
        if exec_run(model, member, "curl -fsS -o /dev/null http://localhost:8008/primary", timeout=20).ok:
            return
        if time.monotonic() > deadline:
            logs = runner.run(compose.command_for(model, "logs", "--no-color", "--tail", "15", member),
                              cwd=model.project_dir, timeout=60).stdout.strip()
            raise ToolkitError(f"{member} did not become the leader of the restored data within {timeout:.0f} s",
                               where=member, fix=f"see its log (`invoke logs {member}`):\n{logs}")
        time.sleep(1)


# ------------------------------------------------------------------ Valkey


def _valkey_cli(model: Model, svc: str) -> str:
    secret = (model.x(svc).get("connect") or {}).get("secret") or ""
    auth = f'REDISCLI_AUTH="$(cat /run/secrets/{shlex.quote(secret)})" ' if secret else ""
    return f"{auth}valkey-cli --no-auth-warning"


def valkey_snapshot(model: Model, svc: str, timeout: float = 600) -> dict:
    """A fresh RDB snapshot (``BGSAVE``), waited for; returns where it lies (dir, dbfilename)."""
    cli = _valkey_cli(model, svc)
    deadline = time.monotonic() + timeout
    started = False
    while not started:
        res = exec_run(model, svc, f"{cli} BGSAVE")
        reply = res.stdout.strip()
        started = res.ok and ("started" in reply or "scheduled" in reply)
        if not started and "in progress" not in reply:
            raise _failed(f"BGSAVE in {svc}", res if not res.ok else runner.Result((), 1, "", reply),
                          f"check {svc} (`invoke logs {svc}`)")
        if not started:
            time.sleep(0.2)
        if time.monotonic() > deadline:
            raise ToolkitError(f"{svc} did not start a snapshot within {timeout:.0f} s", where=svc,
                               fix=f"check {svc} (`invoke logs {svc}`) and run again")
    while True:
        info = exec_run(model, svc, f"{cli} INFO persistence").stdout
        fields = dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line)
        if fields.get("rdb_bgsave_in_progress") == "0" and fields.get("aof_rewrite_scheduled", "0") == "0":
            if fields.get("rdb_last_bgsave_status") != "ok":
                raise ToolkitError(f"{svc}'s snapshot failed (rdb_last_bgsave_status: "
                                   f"{fields.get('rdb_last_bgsave_status')})", where=svc,
                                   fix=f"see `invoke logs {svc}` (a full disk is the usual cause)")
            break
        if time.monotonic() > deadline:
            raise ToolkitError(f"{svc}'s snapshot did not finish within {timeout:.0f} s", where=svc,
                               fix=f"check {svc} (`invoke logs {svc}`) and run again")
        time.sleep(0.2)
    conf = exec_run(model, svc, f"{cli} CONFIG GET dir; {cli} CONFIG GET dbfilename; "
                                f"{cli} CONFIG GET appenddirname; {cli} CONFIG GET appendfilename").stdout.split()
    pairs = dict(zip(conf[0::2], conf[1::2], strict=False))
    return {"dir": pairs.get("dir", "/data"), "dbfilename": pairs.get("dbfilename", "dump.rdb"),
            "appenddirname": pairs.get("appenddirname", "appendonlydir"),
            "appendfilename": pairs.get("appendfilename", "appendonly.aof")}


def valkey_out(model: Model, svc: str, facts: dict, dest: Path) -> runner.Streamed:
    path = f"{facts['dir'].rstrip('/')}/{facts['dbfilename']}"
    args = compose.command_for(model, "exec", "-T", svc, "cat", path)
    res = runner.to_file(args, dest, cwd=model.project_dir)
    if not res.ok:
        raise _failed(f"reading {path} in {svc}", res, f"check {svc} (`invoke logs {svc}`)")
    return res


def valkey_in(model: Model, engine: Engine, source: Path, d: dirslib.DataDir, facts: dict) -> runner.Streamed:
    """The snapshot as the data directory's RDB file, and as the base of a new append-only file:
    with ``appendonly yes`` Valkey loads only its AOF and ignores an RDB lying beside it."""
    owner = helper_ids(engine, model.data_owner(d.service) or (0, 0))
    db, adir, afile = (shlex.quote(facts[k]) for k in ("dbfilename", "appenddirname", "appendfilename"))
    base = shlex.quote(f"{facts['appendfilename']}.1.base.rdb")
    script = (f"cat > /dst/{db} && mkdir -p /dst/{adir} && cp /dst/{db} /dst/{adir}/{base} && "
              f"printf 'file %s seq 1 type b\\n' {base} > /dst/{adir}/{afile}.manifest && "
              f"chown -R {owner[0]}:{owner[1]} /dst/{db} /dst/{adir} && chmod 0600 /dst/{db} /dst/{adir}/* && "
              f"chmod 0700 /dst/{adir}")
    args = enginelib.helper_command(model.helper_image, script, [(d.path, "/dst")],
                                    caps=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
                                    host_userns=engine.kind == Kind.USERNS, stdin=True, labels=helper_labels(model))
    res = runner.from_file(args, source)
    if not res.ok:
        raise _failed(f"writing {model.relpath(d.path)} ({d.service})", res, "check free space and run again")
    return res
