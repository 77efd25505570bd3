"""Applying an upgrade plan: pull, then a rolling restart with proof between steps.

``invoke upgrade --yes`` moves the pins in ``.env`` only once the new images are on the
engine (a pull that fails changes nothing), then recreates the running services one at a
time, dependencies first (``plan.restart``), each with ``docker compose up --no-deps --wait``
and the caller's proof (health and verify of that service) before the next one starts. The
rest of the stack keeps running on what it ran.

The database tier is never restarted under its leader: the Patroni members are taken as one
group -- the replicas first, each until it streams again, then a planned switchover
(Patroni's ``POST /switchover``) to a replica that already runs the new image, then the old
leader, which comes back as a replica. A commit in flight at the switchover fails like any
failover's, but no member is killed and no acknowledged commit can be lost to it.

At the first failure everything it recreated goes back to the old image (the pins move back
in ``.env``), and the error names the service, why, and the way back from there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import output
from ..errors import ToolkitError
from ..stack import compose
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import runner
from . import diskuse, health, pull, start
from .upgrade import Plan

#: Seconds a recreated service has to be proved working (health and verify) before the upgrade stops.
PROVE_SECONDS = 90.0


class StepFailed(Exception):
    """One step of the rolling restart did not work: the service and why."""

    def __init__(self, service: str, why: str) -> None:
        super().__init__(f"{service}: {why}")
        self.service = service
        self.why = why


@dataclass
class Rollout:
    """What was done, in order: for the JSON document and for the way back."""

    recreated: list[str] = field(default_factory=list)
    switchovers: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # moved, but not running: they start on the new image
    seconds: dict[str, float] = field(default_factory=dict)

    def as_doc(self) -> dict:
        return {"recreated": list(self.recreated), "switchovers": list(self.switchovers),
                "not_running": list(self.skipped), "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}


#: (model, services) -> None when they work, else why not.
Prove = Callable[[Model, list[str]], str | None]


def patroni_members(model: Model) -> list[str]:
    """The services whose ``x-readiness.verify.probe`` is Patroni's: the members of the cluster."""
    return sorted(svc for svc in model.services if (model.x(svc).get("verify") or {}).get("probe") == "patroni")


def member_name(model: Model, svc: str) -> str:
    """The name a member has in Patroni (its hostname, as verify reads it)."""
    return str(model.services[svc].get("hostname") or svc)


def steps_for(model: Model, plan: Plan, running: set[str]) -> list[list[str]]:
    """The rolling restart as steps (pure): one service each, the Patroni members of the plan
    together at the place the first of them has in ``plan.restart``; one-shots and services
    not running are left out (they start on the new image when they next start)."""
    members = set(patroni_members(model))
    out: list[list[str]] = []
    grouped = False
    for svc in plan.restart:
        if svc not in running or health.one_shot(model, svc):
            continue
        if svc in members:
            if not grouped:
                out.append(sorted(m for m in plan.restart if m in members and m in running))
                grouped = True
            continue
        out.append([svc])
    return out


def room_problem(model: Model, plan: Plan, usage: list[diskuse.Usage]) -> str | None:
    """Why there is not room to upgrade, or None (pure): every filesystem holding a Patroni
    member's data must have free at least the database's size again (the largest member), the
    most a new image may write beside it (a migration, a re-clone, WAL kept across a switchover).
    A size or free space that cannot be read is not a refusal: the backup's own check follows."""
    members = set(patroni_members(model))
    sizes = [u.size for u in usage if u.service in members and u.size is not None]
    if not sizes or not plan.moves:
        return None
    need = max(sizes)
    for u in usage:
        if u.service in members and u.free is not None and u.free < need:
            return (f"the upgrade needs free space for the database's size again ({diskuse.human(need)}) beside "
                    f"{model.relpath(u.path)}, and its filesystem has {diskuse.human(u.free)} free")
    return None


def images_to_pull(model: Model, plan: Plan) -> list[pull.Image]:
    """The plan's new images the engine lacks (the model is rendered with the new pins)."""
    moved = {m.new for m in plan.moves}
    return pull.missing_images([i for i in pull.images(model) if i.ref in moved])


def recreate(model: Model, engine: enginelib.Engine, svc: str, timeout: int) -> None:
    """``docker compose up -d --no-deps --wait`` of one service, with the files ``invoke up``
    uses (so nothing else differs), never pulling: the images were pulled first."""
    args = compose.command_for(model, "up", "-d", "--no-deps", "--pull", "never", "--wait", "--wait-timeout",
                               str(timeout), svc, extra_files=start.compat_files(model, engine))
    res = runner.run(args, cwd=model.project_dir, timeout=timeout + 120)
    if not res.ok:
        details, _ = start.diagnose(model, log_lines=10)
        last = (res.stdout + res.stderr).strip().splitlines()
        raise StepFailed(svc, "\n".join([f"did not become healthy within {timeout} s"
                                         + (f" ({last[-1].strip()})" if last else ""), *details]))


def prove(model: Model, services: list[str], check: Prove, seconds: float = PROVE_SECONDS) -> None:
    """Until ``check`` passes for ``services``, at most ``seconds``; else :class:`StepFailed`."""
    deadline = time.monotonic() + seconds
    while True:
        why = check(model, services)
        if why is None:
            return
        if time.monotonic() > deadline:
            raise StepFailed(",".join(services), why)
        time.sleep(2.0)


def cluster(model: Model, members: list[str]) -> dict:
    """Patroni's ``GET /cluster``, asked inside the first member that answers."""
    for svc in members:
        res = runner.run(compose.command_for(model, "exec", "-T", svc, "curl", "-fsS", "--max-time", "5",
                                             "http://localhost:8008/cluster"), cwd=model.project_dir, timeout=30)
        if res.ok:
            try:
                return json.loads(res.stdout)
            except ValueError:
                continue
    return {}


def leader(model: Model, members: list[str]) -> str | None:
    """The service whose member holds the leader lock, or None."""
    names = {member_name(model, svc): svc for svc in members}
    for m in cluster(model, members).get("members") or []:
        if m.get("role") == "leader" and m.get("state") == "running":
            return names.get(str(m.get("name")))
    return None


def switchover(model: Model, old: str, new: str, members: list[str], timeout: float = 60.0) -> None:
    """A planned switchover from ``old`` to ``new`` (Patroni REST API, ``POST /switchover``,
    asked of the leader), then until ``new`` leads."""
    body = json.dumps({"leader": member_name(model, old), "candidate": member_name(model, new)})
    res = runner.run(compose.command_for(model, "exec", "-T", old, "curl", "-fsS", "--max-time", "60", "-XPOST",
                                         "-H", "Content-Type: application/json", "-d", body,
                                         "http://localhost:8008/switchover"), cwd=model.project_dir, timeout=90)
    if not res.ok:
        raise StepFailed(old, f"Patroni refused the switchover to {new}: {(res.stdout + res.stderr).strip()[-300:]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leader(model, members) == new:
            return
        time.sleep(1.0)
    raise StepFailed(old, f"{new} did not take the leader lock within {timeout:.0f} s of the switchover")


def roll(model: Model, engine: enginelib.Engine, plan: Plan, check: Prove, *, timeout: int,
         done: Rollout) -> None:
    """The rolling restart on ``model`` (rendered with the new pins); records into ``done`` as it goes."""
    out = output.current()
    running = {svc for svc, c in start._states(model).items() if c.get("State") == "running"}
    steps = steps_for(model, plan, running)
    done.skipped = sorted(set(plan.restart) - {svc for group in steps for svc in group})
    for group in steps:
        t0 = time.monotonic()
        if len(group) == 1:
            svc = group[0]
            out.say("upgrade", f"recreating {svc} on its new image")
            done.recreated.append(svc)
            recreate(model, engine, svc, timeout)
            start.settle_routes(model, services={svc})
            prove(model, [svc], check)
            done.seconds[svc] = time.monotonic() - t0
            out.say("upgrade", f"{svc} works on its new image ({done.seconds[svc]:.1f} s)", "ok")
            continue
        members = patroni_members(model)
        first = leader(model, members)
        if first is None:
            raise StepFailed(group[0], "the cluster has no running leader: the database tier is not upgraded "
                                       "under a cluster that is not whole")
        replicas = [svc for svc in group if svc != first]
        for svc in replicas:
            out.say("upgrade", f"recreating replica {svc} on its new image")
            done.recreated.append(svc)
            recreate(model, engine, svc, timeout)
            prove(model, members, check)  # it streams again before the next one goes
        if first in group:
            if replicas:
                out.say("upgrade", f"switching the leader over from {first} to {replicas[0]} (planned, no kill)")
                switchover(model, first, replicas[0], members)
                done.switchovers.append({"from": first, "to": replicas[0]})
                prove(model, members, check)
            out.say("upgrade", f"recreating {first} on its new image")
            done.recreated.append(first)
            recreate(model, engine, first, timeout)
            prove(model, members, check)
        done.seconds["+".join(group)] = time.monotonic() - t0
        out.say("upgrade", f"database tier ({', '.join(group)}) works on its new image "
                           f"({done.seconds['+'.join(group)]:.1f} s)", "ok")


def roll_back(model: Model, engine: enginelib.Engine, services: list[str], timeout: int) -> list[str]:
    """Recreate ``services`` on ``model`` (rendered with the old pins again); returns those
    that did not come back healthy."""
    failed = []
    for svc in services:
        try:
            recreate(model, engine, svc, timeout)
        except StepFailed:
            failed.append(svc)
    return failed


def failure(step: StepFailed, back: list[str], not_back: list[str], backup: str | None) -> ToolkitError:
    """The error of an upgrade stopped at ``step``: what failed, what went back, the way on."""
    where = f"{step.service}: {step.why}"
    if not_back:
        state = (f"the old images are set in .env again, but {', '.join(not_back)} did not come back healthy on them: "
                 f"`invoke up` recreates them")
    elif back:
        state = f"{', '.join(back)} run their old images again; .env holds the old pins"
    else:
        state = "nothing was recreated; .env holds the old pins"
    fix = f"`invoke logs {step.service.split(',')[0]}` shows why the new image fails"
    if backup:
        fix += f"; the backup taken before is {backup} (`invoke restore {backup} --yes` if the data must go back too)"
    return ToolkitError(f"the upgrade stopped at {where}\n  {state}", fix=fix)
