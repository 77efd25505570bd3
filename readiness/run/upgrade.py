"""``invoke upgrade --dry-run``: the plan that moves the stack to the image pins the repository ships now.

``.env`` takes its pins from ``.env.example`` once, and ``invoke env`` never edits a value; a
``git pull`` that moves a pin therefore changes nothing until the user takes it. The pins to
move are exactly the stale ones (:func:`readiness.stack.envfile.stale_defaults`: image pins
``.env`` kept from the example that the example has moved since), never a value the user
chose. For each, the plan names the services that run it, the order they restart in (their
``depends_on``, dependencies first, as a rolling restart must go), and what it means for
their data: a PostgreSQL image that cannot run the data's major is refused, with the ways
there are; Spilo runs older majors too, so its move keeps the data's major and the major
upgrade stays a step of its own.

Only the plan exists so far. Applying it (a fresh ``invoke backup``, the pull, the restart
service by service with health between steps, a Patroni switchover for the database tier, a
stop at the first failure that leaves the old version running) is not built yet:
``invoke upgrade`` without ``--dry-run`` prints the plan and refuses, with the steps by hand. Building the plan reads
``.env``, ``.env.example``, the record and the model; it writes nothing and asks no registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stack import dbfacts, envfile, sources
from ..stack.model import Model


@dataclass(frozen=True)
class Move:
    """One image pin to move: its variable, old and new value, the services that run it."""

    variable: str
    old: str
    new: str
    services: tuple[str, ...]
    postgres: tuple[int, int] | None = None  # PostgreSQL major (old, new) when it changes

    def as_doc(self) -> dict:
        return {"variable": self.variable, "old": self.old, "new": self.new, "services": list(self.services),
                "postgres_major": list(self.postgres) if self.postgres else None}


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]
    restart: tuple[str, ...]  # every service of a move, dependencies first
    other: tuple[tuple[str, str, str], ...]  # moved pins no service runs (the toolkit's helper): (key, old, new)
    unknown: tuple[tuple[str, str, str], ...]  # no record: pins .env and the example disagree on
    notes: tuple[str, ...]  # what the plan means for data, that does not stop it
    refusals: tuple[str, ...]  # what must happen before this plan may be applied

    def as_doc(self) -> dict:
        def pins(rows: tuple[tuple[str, str, str], ...]) -> list[dict]:
            return [{"variable": k, "old": o, "new": n} for k, o, n in rows]

        return {"moves": [m.as_doc() for m in self.moves], "restart": list(self.restart),
                "other_images": pins(self.other), "unknown": pins(self.unknown), "notes": list(self.notes),
                "refusals": list(self.refusals)}


def restart_order(model: Model, services: set[str]) -> list[str]:
    """``services`` in ``depends_on`` order (a dependency before what depends on it, through
    services outside the set too), ties by name: deterministic."""
    placed: list[str] = []
    seen: set[str] = set()

    def visit(svc: str, path: tuple[str, ...]) -> None:
        if svc in seen or svc in path:
            return  # done, or a cycle (Compose refuses those; nothing to order then)
        for dep in sorted(model.services.get(svc, {}).get("depends_on") or {}):
            visit(dep, (*path, svc))
        seen.add(svc)
        placed.append(svc)

    for svc in sorted(model.services):
        visit(svc, ())
    return [svc for svc in placed if svc in services]


def plan(model: Model, env: envfile.EnvFile, example: envfile.EnvFile, record: dict[str, str]) -> Plan:
    """The upgrade plan from what ``.env`` holds against what the repository ships (pure)."""
    written = sources.image_variables(model.project_dir)
    moves, other, notes, refusals = [], [], [], []
    for key, old, new in envfile.stale_defaults(record, env, example):
        users = tuple(sorted(svc for svc, variable in written.items() if variable == key and svc in model.services))
        if not users:
            other.append((key, old, new))
            continue
        before, after = dbfacts.major(old, None), dbfacts.major(new, None)
        postgres = (before.newest, after.newest) if before and after and before.newest != after.newest else None
        moves.append(Move(key, old, new, users, postgres))
        where = f"{key} ({', '.join(users)})"
        if before and not after:
            refusals.append(f"{where}: {new} does not say which PostgreSQL major it runs, and the data is "
                            f"PostgreSQL {before.newest}: pin a tag that names the major")
        elif before and after and not after.runs(before.newest):
            way = ("restore a backup taken with that major" if after.newest < before.newest else
                   "migrate it first: a logical dump and restore into the new major, or pg_upgrade")
            refusals.append(f"{where}: {new} runs PostgreSQL {after.newest}, which cannot run the data's "
                            f"PostgreSQL {before.newest}: {way}")
        elif postgres:
            notes.append(f"{where}: {new} runs PostgreSQL up to {after.newest} ({after.source}); the data stays "
                         f"on PostgreSQL {before.newest}: its major upgrade is a step of its own (Spilo's in-place "
                         f"upgrade on the running cluster, or a dump and restore)")
    restart = tuple(restart_order(model, {svc for m in moves for svc in m.services}))
    unknown = tuple(envfile.unrecorded_pins(record, env, example))
    return Plan(tuple(moves), restart, tuple(other), unknown, tuple(notes), tuple(refusals))


def to_text(p: Plan) -> str:
    lines = []
    if p.unknown:
        lines.append("no record says which of .env's pins came from .env.example (`invoke env` keeps one from "
                     "this version on); these differ from what the repository ships, kept or chosen:")
        lines += [f"  {k}: {o} (the repository ships {n})" for k, o, n in p.unknown]
    if not p.moves and not p.other:
        lines.append("no pin .env kept from .env.example has moved since: nothing to upgrade")
        return "\n".join(lines)
    if p.moves:
        lines.append("images to move (.env -> what the repository ships now):")
        for m in p.moves:
            extra = f"; PostgreSQL {m.postgres[0]} -> {m.postgres[1]}: data format changes" if m.postgres else ""
            lines.append(f"  {m.variable}: {m.old} -> {m.new} (services: {', '.join(m.services)}){extra}")
        lines.append(f"restart order (dependencies first): {', '.join(p.restart)}")
    if p.other:
        lines.append("images no service runs (the toolkit's own) that the repository moved; set them in .env:")
        lines += [f"  {k}: {o} -> {n}" for k, o, n in p.other]
    lines += [f"note: {n}" for n in p.notes]
    lines += [f"refused: {r}" for r in p.refusals]
    return "\n".join(lines)
