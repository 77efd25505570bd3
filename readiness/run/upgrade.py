"""``invoke upgrade --dry-run``: the plan that moves the stack to the image pins the repository ships now.

``.env`` takes its pins from ``.env.example`` once, and ``invoke env`` never edits a value; a
``git pull`` that moves a pin therefore changes nothing until the user takes it. The pins to
move are exactly the stale defaults (:func:`readiness.stack.envfile.stale_defaults`: values
``.env`` kept from the example that the example has moved since), never a value the user
chose. For each, the plan names the services that run it, the order they restart in (their
``depends_on``, dependencies first, as a rolling restart must go), and what would change the
format of their data: a PostgreSQL major is refused unless its migration is done first, and
the plan says which paths there are.

Only the plan exists so far. Applying it (a fresh backup, the pull, the restart service by
service with health between steps, a Patroni switchover for the database tier, a stop at the
first failure that leaves the old version running) needs ``invoke backup``: until then
``invoke upgrade`` without ``--dry-run`` prints the plan and refuses. Building the plan reads
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
    other: tuple[tuple[str, str, str], ...]  # moved defaults that are not image pins: (key, old, new)
    refusals: tuple[str, ...]  # what must happen before this plan may be applied

    def as_doc(self) -> dict:
        return {"moves": [m.as_doc() for m in self.moves], "restart": list(self.restart),
                "other_defaults": [{"variable": k, "old": o, "new": n} for k, o, n in self.other],
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
    moves, other, refusals = [], [], []
    for key, old, new in envfile.stale_defaults(record, env, example):
        users = tuple(sorted(svc for svc, variable in written.items() if variable == key and svc in model.services))
        if not users:
            other.append((key, old, new))
            continue
        before, after = dbfacts.major(old, None), dbfacts.major(new, None)
        postgres = (before.newest, after.newest) if before and after and before.newest != after.newest else None
        moves.append(Move(key, old, new, users, postgres))
        if postgres:
            refusals.append(
                f"{key} moves PostgreSQL {postgres[0]} -> {postgres[1]} ({', '.join(users)}): the data directories "
                f"must be migrated first, by a logical dump and restore into the new major, or by Spilo's in-place "
                f"major upgrade (pg_upgrade) on the running cluster; then set {key}={new} in .env")
    restart = tuple(restart_order(model, {svc for m in moves for svc in m.services}))
    return Plan(tuple(moves), restart, tuple(other), tuple(refusals))


def to_text(p: Plan) -> str:
    if not p.moves and not p.other:
        return "every pin in .env is the one the repository ships, or one you chose: nothing to upgrade"
    lines = []
    if p.moves:
        lines.append("images to move (.env -> what the repository ships now):")
        for m in p.moves:
            extra = f"; PostgreSQL {m.postgres[0]} -> {m.postgres[1]}: data format changes" if m.postgres else ""
            lines.append(f"  {m.variable}: {m.old} -> {m.new} (services: {', '.join(m.services)}){extra}")
        lines.append(f"restart order (dependencies first): {', '.join(p.restart)}")
    if p.other:
        lines.append("other defaults the repository moved (not an image upgrade; set them in .env to take them):")
        lines += [f"  {k}: {o} -> {n}" for k, o, n in p.other]
    lines += [f"refused: {r}" for r in p.refusals]
    return "\n".join(lines)
