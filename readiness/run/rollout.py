"""Applying an upgrade plan: pull, then a rolling restart with proof between steps.

``invoke upgrade --yes`` moves the pins in ``.env``, pulls the new images (a pull that fails
moves the pins back: nothing was recreated), then recreates the running services one at a
time, dependencies first (``plan.restart``), each with ``docker compose up --no-deps --wait``
and the caller's proof (health and verify of that service) before the next one starts. The
rest of the stack keeps running on what it ran.

The database tier is never restarted under its leader: the Patroni members are taken as one
group -- the replicas first, each until it streams again, then a planned switchover
(Patroni's ``POST /switchover``) to a replica that already runs the new image, then the old
leader, which comes back as a replica. A commit in flight at the switchover fails like any
failover's, but no member is killed and no acknowledged commit can be lost to it.

At the first failure everything it recreated goes back to the old image, the last recreated
first (the pins move back in ``.env``), a Patroni leader again by a switchover to a member on
the old image; the error names the service, why, and the way back from there. Anything that
goes wrong inside a step (a timeout, an engine that stops answering) is that step's failure.
"""

from __future__ import annotations

import contextlib
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
#: Held from the plan to the end of an applied upgrade: two never roll at once.
LOCK = ".readiness/locks/upgrade.lock"


@dataclass(frozen=True)
class Problem:
    """Why the upgrade may not start, and the way on."""

    message: str
    fix: str


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


def running(model: Model) -> set[str]:
    """The services whose container runs (one ``docker ps``; an engine that does not answer is an
    error here, never an empty stack: an upgrade must not read "nothing runs" from a failure)."""
    return {str(c.get("Service", "")) for c in enginelib.project_containers(model.name) if c.get("State") == "running"}


def tier_problem(model: Model, plan: Plan, up: set[str]) -> Problem | None:
    """Why the database tier cannot be rolled (pure): some of its members run and some do not.
    Its leader would then be restarted with no replica to switch over to, or a member left on
    the old image; all stopped is fine (they start on the new image)."""
    members = [m for m in patroni_members(model) if m in plan.restart]
    stopped = [m for m in members if m not in up]
    if members and stopped and len(stopped) < len(members):
        return Problem(f"the database tier is not whole: {', '.join(stopped)} {'is' if len(stopped) == 1 else 'are'} "
                       f"not running, so its leader cannot be switched over to an upgraded replica",
                       f"`invoke up` to start {', '.join(stopped)} (or `invoke logs {stopped[0]}` for why it stopped), "
                       "then `invoke upgrade --yes` again")
    return None


def room_problem(model: Model, plan: Plan, usage: list[diskuse.Usage]) -> Problem | None:
    """Why there is not room to upgrade the database tier, or None (pure): every filesystem
    holding a Patroni member's data must have free at least the database's size again (the
    largest member), the most a new image may write beside it (a migration, a re-clone, WAL
    kept across a switchover). An upgrade that restarts no member needs none; a size or free
    space that cannot be read is not a refusal (the backup's own check follows)."""
    members = {m for m in patroni_members(model) if m in plan.restart}
    sizes = [u.size for u in usage if u.service in members and u.size is not None]
    if not sizes:
        return None
    need = max(sizes)
    for u in usage:
        if u.service in members and u.free is not None and u.free < need:
            return Problem(f"the upgrade needs free space for the database's size again ({diskuse.human(need)}) "
                           f"beside {model.relpath(u.path)}, and its filesystem has {diskuse.human(u.free)} free",
                           "free disk space (or move DATA_ROOT to a larger disk), then run again")
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


def roll(model: Model, engine: enginelib.Engine, plan: Plan, check: Prove, *, timeout: int, done: Rollout,
         running: set[str]) -> None:
    """The rolling restart on ``model`` (rendered with the new pins) of the ``running``
    services; records into ``done`` as it goes. Whatever fails inside a step is that step's
    :class:`StepFailed`."""
    out = output.current()
    steps = steps_for(model, plan, running)
    done.skipped = sorted(set(plan.restart) - {svc for group in steps for svc in group})
    for group in steps:
        t0 = time.monotonic()
        try:
            if len(group) == 1:
                _one(model, engine, group[0], check, timeout, done)
            else:
                _tier(model, engine, group, check, timeout, done)
        except (ToolkitError, OSError) as exc:
            why = exc.message if isinstance(exc, ToolkitError) else f"{exc.strerror or exc} ({exc.filename})"
            inside = [svc for svc in done.recreated if svc in group]
            raise StepFailed(inside[-1] if inside else group[0], why) from None
        name = "+".join(group)
        done.seconds[name] = time.monotonic() - t0
        out.say("upgrade", f"{', '.join(group)} work{'s' if len(group) == 1 else ''} on the new image "
                           f"({done.seconds[name]:.1f} s)", "ok")


def _one(model: Model, engine: enginelib.Engine, svc: str, check: Prove, timeout: int, done: Rollout) -> None:
    output.current().say("upgrade", f"recreating {svc} on its new image")
    done.recreated.append(svc)
    recreate(model, engine, svc, timeout)
    start.settle_routes(model, services={svc})
    prove(model, [svc], check)


def _tier(model: Model, engine: enginelib.Engine, group: list[str], check: Prove, timeout: int,
          done: Rollout) -> None:
    """The Patroni members (all running): the replicas one at a time, each until it streams,
    then a planned switchover to one of them, then the old leader."""
    out = output.current()
    first = leader(model, group)
    if first is None:
        raise StepFailed(group[0], "the cluster has no running leader: the database tier is not upgraded "
                                   "under a cluster that is not whole")
    replicas = [svc for svc in group if svc != first]
    for svc in replicas:
        out.say("upgrade", f"recreating replica {svc} on its new image")
        done.recreated.append(svc)
        recreate(model, engine, svc, timeout)
        prove(model, group, check)  # it streams again before the next one goes
    if replicas:
        target = candidate(model, group, first, replicas)
        out.say("upgrade", f"switching the leader over from {first} to {target} (planned, no kill)")
        switchover(model, first, target, group)
        done.switchovers.append({"from": first, "to": target})
        prove(model, group, check)
    else:
        out.say("upgrade", f"{first} is the only member: it restarts as the leader (no replica to switch over to)",
                "warning")
    out.say("upgrade", f"recreating {first} on its new image")
    done.recreated.append(first)
    recreate(model, engine, first, timeout)
    prove(model, group, check)


def candidate(model: Model, members: list[str], old: str, among: list[str]) -> str:
    """The member to switch over to: the synchronous standby when there is one among ``among``
    (Patroni refuses another in synchronous mode), else the first."""
    names = {member_name(model, svc): svc for svc in among}
    for m in cluster(model, members).get("members") or []:
        if m.get("role") == "sync_standby" and str(m.get("name")) in names:
            return names[str(m.get("name"))]
    return among[0]


def roll_back(model: Model, engine: enginelib.Engine, services: list[str], timeout: int) -> list[str]:
    """Recreate ``services`` on ``model`` (rendered with the old pins again), the last recreated
    first; a Patroni member that leads is first switched over to a member already on the old
    image, when one runs. Returns those that did not come back healthy."""
    members = patroni_members(model)
    failed = []
    pending = list(services)
    for svc in reversed(services):
        pending.remove(svc)
        try:
            if svc in members and leader(model, members) == svc:
                others = [m for m in members if m != svc and m not in pending]
                if others:
                    with contextlib.suppress(StepFailed, ToolkitError):
                        switchover(model, svc, candidate(model, members, svc, others), members)
            recreate(model, engine, svc, timeout)
        except (StepFailed, ToolkitError, OSError):
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
