"""Which parts a backup takes, and how: a pure function of the model.

* **PostgreSQL** (the members of a Patroni cluster, :func:`readiness.stack.dbfacts.clusters`):
  one physical base backup (``pg_basebackup``, WAL included) taken from a replica when one
  runs, so the leader only streams. Physical, not logical: a base backup is a consistent copy
  while writes go on (PostgreSQL's own guarantee), it is restored by unpacking it (as fast as
  ``tar``), and it keeps everything, roles and Keycloak's realm included, with no load order
  to get right; a logical dump (``pg_dumpall``) must be replayed statement by statement and
  its indexes rebuilt (measured by ``benchmarks/bench_backup.py``). The cluster's DCS (etcd)
  holds only Patroni's state about that data: it is not backed up, and a restore empties it,
  so that the restored member founds the cluster again.
* **Valkey** (``x-readiness.backup.method: valkey``): a fresh RDB snapshot (``BGSAVE``,
  waited for), the one file Valkey can load whatever its AOF setting.
* **Everything else with a data directory**: its directory through the engine, with the
  service stopped for that moment when it runs (the rest keep running). Services declare
  ``x-readiness.backup.default: false`` when their data is expendable (metrics, logs): they
  are skipped unless ``--only`` names them.
* **Configuration**: ``.env``, every file secret of the stack (certificates too), and the
  toolkit's records of them (``.readiness/baked``, ``.readiness/env-shipped.json``), so that a
  restore on a new machine needs nothing else. Always taken.

A service that is not running is copied as it lies (a stopped database is consistent): a
Patroni cluster whose members are all stopped is copied member by member with its DCS.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ToolkitError
from ...output import EXIT_USAGE
from ...prepare import dirs as dirslib
from ...stack import dbfacts
from ...stack.model import Model

CONFIG = "config"
#: Project-relative files of the toolkit's own records that go with the secrets.
RECORDS = (".readiness/baked", ".readiness/env-shipped.json")


@dataclass(frozen=True)
class Part:
    """One file of a backup and what it restores."""

    name: str                      # file name inside the backup directory
    kind: str                      # config | postgres | valkey | copy
    service: str                   # the service it is taken from (postgres: any member)
    dirs: tuple[dirslib.DataDir, ...] = ()   # the data directories a restore replaces
    members: tuple[str, ...] = ()  # postgres: every member; the first one founds the cluster again
    dcs: tuple[str, ...] = ()      # postgres: the DCS services emptied on restore

    @property
    def services(self) -> tuple[str, ...]:
        """Every service whose data this part replaces."""
        return tuple(dict.fromkeys(s for s in (self.service, *self.members, *self.dcs, *(d.service for d in self.dirs))
                                   if s))


@dataclass
class Choice:
    parts: list[Part] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (service, why)


def _backup_x(model: Model, svc: str) -> dict:
    value = model.x(svc).get("backup")
    return value if isinstance(value, dict) else {}


def choose(model: Model, *, only: list[str] | None = None, skip: list[str] | None = None,
           running: Collection[str] | None = None) -> Choice:
    """The parts of a backup of ``model``; ``running``: the services whose container runs
    (None: treat every service as running, i.e. take each part online)."""
    only, skip = list(only or []), list(skip or [])
    unknown = sorted(set(only + skip) - set(model.services))
    if unknown:
        raise ToolkitError(f"no service named {', '.join(unknown)}", where="--only / --skip",
                           fix=f"choose from: {', '.join(sorted(model.services))}", code=EXIT_USAGE)
    by_service: dict[str, list[dirslib.DataDir]] = {}
    for d in dirslib.data_dirs(model):
        by_service.setdefault(d.service, []).append(d)
    is_running = (lambda svc: True) if running is None else (lambda svc: svc in running)
    choice = Choice(parts=[Part(f"{CONFIG}.tar", CONFIG, "")])
    taken: set[str] = set()

    def wanted(names: tuple[str, ...], default: bool = True) -> bool:
        if any(n in skip for n in names):
            return False
        if only:
            return any(n in only for n in names)
        return default

    for cluster in dbfacts.clusters(model):
        members = tuple(m for m in cluster.members if m in by_service)
        if not members:
            continue
        group = (*members, *cluster.dcs)
        taken.update(group)
        if not wanted(group):
            choice.skipped += [(s, "not chosen (--only/--skip)") for s in group]
            continue
        dirs = tuple(d for s in group for d in by_service.get(s, []))
        if any(is_running(m) for m in members):
            source = next((m for m in members if is_running(m)), members[0])
            choice.parts.append(Part(f"postgres-{cluster.scope or members[0]}.tar", "postgres", source, dirs,
                                     members, cluster.dcs))
        else:  # stopped: consistent on disk, copied as it lies, DCS included
            choice.parts += [Part(_copy_name(d, by_service), "copy", d.service, (d,)) for d in dirs]
    for svc in sorted(by_service):
        if svc in taken:
            continue
        x = _backup_x(model, svc)
        if not wanted((svc,), default=x.get("default", True) is not False):
            why = "--skip" if svc in skip else "not chosen (--only)" if only else \
                str(x.get("why") or "x-readiness.backup.default: false")
            choice.skipped.append((svc, why))
            continue
        if x.get("method") == "valkey" and is_running(svc):
            choice.parts.append(Part(f"valkey-{svc}.rdb", "valkey", svc, tuple(by_service[svc])))
        else:
            choice.parts += [Part(_copy_name(d, by_service), "copy", svc, (d,)) for d in by_service[svc]]
    return choice


def _copy_name(d: dirslib.DataDir, by_service: dict[str, list[dirslib.DataDir]]) -> str:
    dirs = by_service[d.service]
    return f"data-{d.service}.tar" if len(dirs) == 1 else f"data-{d.service}-{dirs.index(d) + 1}.tar"


def config_paths(model: Model) -> list[str]:
    """Project-relative paths of the configuration part that exist: ``.env``, every file
    secret (from Compose's ``secrets:``), the toolkit's records."""
    root = model.project_dir
    out = {".env"} if (root / ".env").exists() else set()
    for spec in model.secrets.values():
        f = spec.get("file")
        if f and Path(f).is_absolute() and root in Path(f).parents and Path(f).exists():
            out.add(str(Path(f).relative_to(root)))
    out.update(r for r in RECORDS if (root / r).exists())
    return sorted(out)
