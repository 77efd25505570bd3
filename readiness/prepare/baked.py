"""Secrets a service bakes into its data on first start, and what they were baked with.

Some services read a secret only when they initialise their data: Spilo/Patroni set the
``postgres`` and ``standby`` role passwords at initdb, Grafana sets its admin password when it
creates its database, OpenSearch hashes its admin password into the security index,
Keycloak creates its bootstrap admin while its realm does not exist. Once that data exists,
a new file means a service that no longer accepts its own credentials. Which secret is baked
into which service's data is declared beside the service (``x-readiness.baked-secrets``,
docs/x-readiness.md); "its data exists" means a data directory of that service
(:func:`readiness.prepare.dirs.data_dirs`) that is not empty (:mod:`readiness.prepare.datastate`).

Two consequences:

* ``invoke secrets`` (hence ``bootstrap`` and ``up``) refuses to create a baked secret whose
  file is missing or empty while the data exists (:func:`refusals`), naming the secret, the
  data and the two ways out; preflight reports the same as ``secret.baked-missing``;
* a baked secret whose file changed after its service initialised the data is reported as
  ``secret.changed-after-init`` (a warning with the rotation step).

How "changed after its service initialised the data" is decided: ``invoke secrets`` keeps a
salted SHA-256 of each baked secret in ``.readiness/baked/<name>.json`` (git-ignored,
0600; a digest, never the value), **taken while the service's data is still empty** -- that is,
right before the first boot bakes it, since ``invoke up`` runs ``secrets`` first -- and left
alone once the data exists. Preflight compares the file with it. Why this and not the
alternatives:

* recording after a successful ``invoke up`` would record whatever the boot mounted, also a
  value the service ignored (Grafana boots healthy with a changed admin password file), and
  so forget the very change it should report;
* comparing modification times (secret newer than the data's oldest file) breaks on any
  restore or copy that does not keep mtimes, and needs the data's files, which belong to
  container uids;
* writing a marker into the data directory would write into data the toolkit must not touch.

A reset of the service's data empties it, so the next ``invoke secrets`` records the value
the next boot bakes. Data that predates the record (or a record removed by hand to accept
the current file) is recorded as found the first time ``invoke secrets`` sees it.
"""

from __future__ import annotations

import hashlib
import json
import secrets as _secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError
from ..stack import sources
from ..stack.model import Model
from ..system import fsutil
from . import dirs as dirslib
from .datastate import DirState

#: One file per baked secret: ``{"salt": hex, "sha256": hex}`` (a digest, never the value).
RECORD_DIR = ".readiness/baked"


@dataclass(frozen=True)
class Baked:
    """One baked secret: its file, the services that declare it, and the data directories it
    lives in with the services that own them."""

    name: str
    path: Path
    services: tuple[str, ...]
    dirs: tuple[Path, ...]
    owners: tuple[str, ...]


def data_of(model: Model, svc: str, data: list[dirslib.DataDir]) -> list[dirslib.DataDir]:
    """Where ``svc`` keeps its data: its own data directories; for a service with none (Keycloak
    keeps its realm in PostgreSQL), those of the nearest services it depends on that have some
    (``depends_on``, breadth first: Keycloak -> postgres-init -> HAProxy -> the Spilo members)."""
    own = [d for d in data if d.service == svc]
    if own:
        return own
    seen, level = {svc}, [svc]
    while level:
        deps = sorted({dep for s in level for dep in (model.services.get(s, {}).get("depends_on") or {})} - seen)
        found = [d for d in data if d.service in deps]
        if found:
            return found
        seen.update(deps)
        level = deps
    return []


def declarations(model: Model) -> list[Baked]:
    """Every secret some service declares in ``x-readiness.baked-secrets``, sorted by name.

    A name that is not a file secret of the registry is an error (a typo would otherwise
    protect nothing, silently).
    """
    by_secret: dict[str, list[str]] = {}
    for svc in sorted(model.services):
        for name in model.x(svc).get("baked-secrets") or []:
            secret = model.secrets.get(name)
            if not secret or not secret.get("file"):
                file = sources.raw_services(model.project_dir).get(svc, (sources.COMPOSE_FILE, {}))[0]
                raise ToolkitError(
                    f"service {svc} declares baked secret {name!r}, which is not a file secret of the stack",
                    where=f"{file} (services.{svc}.x-readiness.baked-secrets)",
                    fix=f"use a name from the top-level secrets: registry ({', '.join(sorted(model.secrets))})")
            by_secret.setdefault(name, []).append(svc)
    data = dirslib.data_dirs(model)
    out = []
    for name, services in sorted(by_secret.items()):
        dirs = {d.path: d.service for svc in services for d in data_of(model, svc, data)}
        out.append(Baked(name, Path(model.secrets[name]["file"]), tuple(services), tuple(sorted(dirs)),
                         tuple(sorted(set(dirs.values())))))
    return out


def file_state(path: Path) -> bytes | None:
    """The secret file's bytes; None when it is missing or empty (what `invoke secrets` would generate)."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return b"?"  # present but unreadable: not ours to regenerate (secret.unreadable says why)
    return data or None


def has_data(baked: Baked, states: dict[Path, DirState]) -> list[Path]:
    """The data directories of ``baked`` that hold data (or cannot be looked into)."""
    return [d for d in baked.dirs if states.get(d, DirState(True, None)).has_data]


# ---------------------------------------------------------------------------- the record


def record_path(project_dir: Path, name: str) -> Path:
    return project_dir / RECORD_DIR / f"{name}.json"


def load(project_dir: Path) -> dict[str, dict[str, str]]:
    """The recorded digests, by secret name (unreadable or malformed entries count as absent)."""
    out: dict[str, dict[str, str]] = {}
    try:
        files = sorted((project_dir / RECORD_DIR).glob("*.json"))
    except OSError:
        return out
    for path in files:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("salt"), str) and isinstance(doc.get("sha256"), str):
            out[path.stem] = {"salt": doc["salt"], "sha256": doc["sha256"]}
    return out


def digest(value: bytes, salt: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + value).hexdigest()


def matches(entry: dict[str, str] | None, value: bytes) -> bool:
    try:
        return entry is not None and digest(value, entry["salt"]) == entry["sha256"]
    except ValueError:  # a salt that is not hex: a damaged entry, as if absent
        return False


def entry_for(value: bytes) -> dict[str, str]:
    salt = _secrets.token_hex(16)
    return {"salt": salt, "sha256": digest(value, salt)}


def to_record(every: list[Baked], states: dict[Path, DirState],
              record: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The record after this run (pure but for the salt): a baked secret's digest is (re)taken
    while none of its data exists, kept once data exists, and taken as found when data exists
    but nothing was recorded."""
    out = dict(record)
    for b in every:
        value = file_state(b.path)
        if value is None or value == b"?" or matches(out.get(b.name), value):
            continue
        if not has_data(b, states) or b.name not in out:
            out[b.name] = entry_for(value)
    return out


def save(project_dir: Path, old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> None:
    """Write the entries that changed (one 0600 file per secret, atomically)."""
    changed = sorted(name for name in new if new[name] != old.get(name))
    if not changed:
        return
    fsutil.ensure_dir(project_dir / RECORD_DIR, 0o700)
    for name in changed:
        fsutil.atomic_write(record_path(project_dir, name),
                            (json.dumps(new[name], indent=1, sort_keys=True) + "\n").encode(), 0o600)


def needs_probe(every: list[Baked], record: dict[str, dict[str, str]]) -> list[Path]:
    """Data directories whose state decides something this run: those of a baked secret that
    is missing or empty (refuse?) or differs from its record (record, or report?)."""
    out: set[Path] = set()
    for b in every:
        value = file_state(b.path)
        if value == b"?":
            continue
        if value is None or not matches(record.get(b.name), value):
            out.update(b.dirs)
    return sorted(out)


# ---------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Refusal:
    """A baked secret that must not be generated: its file is missing or empty, its data exists."""

    baked: Baked
    holding: tuple[Path, ...]  # data directories that hold data
    empty_file: bool


def refusals(every: list[Baked], states: dict[Path, DirState]) -> list[Refusal]:
    out = []
    for b in every:
        if file_state(b.path) is not None:
            continue
        holding = has_data(b, states)
        if holding:
            out.append(Refusal(b, tuple(holding), b.path.exists()))
    return out


def reset_services(model: Model, services: tuple[str, ...]) -> list[str]:
    """The services whose data a reset of ``services`` must take along (Patroni members: their DCS)."""
    from ..stack.dbfacts import clusters

    out = set(services)
    for cluster in clusters(model):
        if out & set(cluster.members):
            out |= set(cluster.dcs)
    return sorted(out)


def ways_out(model: Model, r: Refusal) -> str:
    """The two ways out of a refusal, as one fix line."""
    rel = model.relpath(r.baked.path)
    reset = " ".join(f"--service {s}" for s in reset_services(model, r.baked.owners or r.baked.services))
    return (f"restore {rel} from your backup (the value {', '.join(r.baked.services)} initialised its data with), "
            f"or, to start that data afresh, delete it: `invoke reset --yes {reset}` (this destroys the data), "
            "then run the task again")


def refusal_text(model: Model, r: Refusal) -> str:
    state = "is empty" if r.empty_file else "is missing"
    where = ", ".join(model.relpath(p) for p in r.holding)
    return (f"secret {r.baked.name} {state}, but {', '.join(r.baked.services)} already initialised its data "
            f"({where}) with it: a new value would lock the service out of its own data")
