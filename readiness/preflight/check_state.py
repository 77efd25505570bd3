"""Preflight checks of stale state: data that a boot would read with the wrong key, or that
disagrees with itself.

* ``secret.baked-missing``: a secret baked into a service's data is missing or empty while
  that data exists (``invoke secrets`` refuses to generate it; :mod:`readiness.prepare.baked`);
* ``secret.changed-after-init``: a baked secret differs from the value recorded while the
  service's data was still empty;
* ``state.dcs-mismatch``: the DCS (etcd) holds a Patroni cluster whose members' data is
  gone, or the members' data exists while the DCS's is gone;
* ``state.pg-version``: a data directory written by a PostgreSQL major its image cannot run.

Pure functions of the model and the facts preflight gathered (the data directories' states
come from :mod:`readiness.prepare.datastate`, read once; which directories are read is
:func:`.facts.probe_paths`).
"""

from __future__ import annotations

from pathlib import Path

from ..prepare import baked
from ..prepare import dirs as dirslib
from ..prepare.datastate import DirState
from ..stack import dbfacts, sources
from ..stack.model import Model
from .facts import Facts, postgres_major
from .findings import ERROR, WARNING, Finding


def check_baked(model: Model, facts: Facts) -> list[Finding]:
    declared = baked.declarations(model)
    out = []
    for r in baked.refusals(declared, facts.data):
        out.append(Finding("secret.baked-missing", ERROR, baked.refusal_text(model, r), baked.ways_out(model, r),
                           ",".join(r.baked.services), model.relpath(r.baked.path)))
    for b in declared:
        value = baked.file_state(b.path)
        entry = facts.baked_record.get(b.name)
        if value is None or value == b"?" or entry is None or baked.matches(entry, value):
            continue
        holding = baked.has_data(b, facts.data)
        if not holding:
            continue
        rel = model.relpath(b.path)
        where = ", ".join(model.relpath(p) for p in holding)
        out.append(Finding(
            "secret.changed-after-init", WARNING,
            f"secret {b.name} is not the value {', '.join(b.services)} initialised its data ({where}) with: the "
            "service still expects the old one (its login, or its health check, fails)",
            f"put the old value back in {rel}; or change it inside the service to the file's value (runbook §7, "
            f"{b.name}), then accept the file: `rm {baked.RECORD_DIR}/{b.name}.json` (the next `invoke secrets` "
            "records it)", ",".join(b.services), rel))
    return out


def _known(states: dict[Path, DirState], paths: list[Path]) -> bool:
    return all(states.get(p) is not None and states[p].empty is not None for p in paths)


def check_dcs(model: Model, facts: Facts) -> list[Finding]:
    data = dirslib.data_dirs(model)
    out = []
    for cluster in dbfacts.clusters(model):
        members = [d.path for d in data if d.service in cluster.members]
        dcs = [d.path for d in data if d.service in cluster.dcs]
        if not members or not dcs or not _known(facts.data, members + dcs):
            continue
        member_data = [p for p in members if facts.data[p].has_data]
        dcs_data = [p for p in dcs if facts.data[p].has_data]
        rel = model.relpath
        names = ", ".join(cluster.members)
        dcs_names = ", ".join(cluster.dcs)
        if dcs_data and not member_data:
            reset = " ".join(f"--service {s}" for s in cluster.dcs)
            out.append(Finding(
                "state.dcs-mismatch", ERROR,
                f"{', '.join(map(rel, dcs_data))} ({dcs_names}) holds the Patroni cluster {cluster.scope or ''} "
                f"but the data of every member ({', '.join(map(rel, members))}) is empty: the members would wait "
                "for a leader that no longer exists",
                f"start the cluster afresh: `invoke reset --yes {reset}` (the DCS keeps no data of its own); or "
                f"restore the members' data from a backup", names, rel(dcs_data[0])))
        elif member_data and not dcs_data:
            out.append(Finding(
                "state.dcs-mismatch", WARNING,
                f"{', '.join(map(rel, member_data))} ({names}) holds Patroni data but {', '.join(map(rel, dcs))} "
                f"({dcs_names}) is empty: Patroni re-registers the cluster from whichever member starts first; if "
                "that is a former replica, it becomes the leader and the other member's unreplicated writes are "
                "rewound",
                f"start {dcs_names} and the former leader first (`docker compose up -d {dcs_names} "
                f"{cluster.members[0]}`, wait until healthy), then `invoke up`; or, if the data is disposable, "
                f"`invoke reset --yes {' '.join(f'--service {s}' for s in (*cluster.members, *cluster.dcs))}`",
                names, rel(member_data[0])))
    return out


def check_pg_version(model: Model, facts: Facts) -> list[Finding]:
    out = []
    for d in dirslib.data_dirs(model):
        state = facts.data.get(d.path)
        found = dbfacts.data_major(state.pg_version if state else None)
        major = postgres_major(model, facts, d.service)
        if found is None or major is None or major.runs(found):
            continue
        image = str(model.services[d.service].get("image"))
        var = sources.image_variables(model.project_dir).get(d.service)
        which = "runs only PostgreSQL" if major.exact else "runs PostgreSQL up to"
        fix_image = f"set {var} in .env to an image of PostgreSQL {found}" if var else \
            f"use an image of PostgreSQL {found} for {d.service}"
        upgrade = "upgrade the data first (dump and restore, or pg_upgrade)" if found < major.newest else \
            "data cannot be downgraded"
        out.append(Finding(
            "state.pg-version", ERROR,
            f"{model.relpath(d.path)} was written by PostgreSQL {found} (PG_VERSION); {d.service}'s image {image} "
            f"{which} {major.newest} (from {major.source}): PostgreSQL refuses to start",
            f"{fix_image} ({upgrade}); or, if the data is disposable, `invoke reset --yes --service {d.service}`",
            d.service, model.relpath(d.path)))
    return out
