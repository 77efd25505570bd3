"""The body of each task, as plain functions that print what they changed.

``tasks.py`` is only the table of tasks; the work is here so that tests and the Nox sessions
call exactly the same code, and each task's name is its step's name. Every step is
idempotent: a second run finds everything in place and says "nothing changed". Steps print
through :mod:`readiness.output` and return what a ``--json`` run prints
(:class:`readiness.cli.Outcome`) or a plain summary dict that ``bootstrap`` collects.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import output
from .cli import Outcome
from .errors import ToolkitError
from .preflight import facts, findings, table
from .prepare import certs as certslib
from .prepare import dirs as dirslib
from .prepare import networks as networkslib
from .prepare import secrets as secretslib
from .stack import compose, envfile, modelcache
from .stack import ports as portslib
from .stack.model import Model
from .system import engine as enginelib
from .system import fsutil, runner

if TYPE_CHECKING:
    from .run.start import Snapshot

_MODELS: dict[Path, Model] = {}
#: What the latest preflight of this process observed, per project: ``up`` reads its state
#: snapshot (containers, images present) instead of asking the engine again.
_FACTS: dict[Path, facts.Facts] = {}


def model(project: Path, *, tolerate_missing: bool = False) -> Model:
    """The rendered model, loaded once per process (every step of a run shares it)."""
    cached = _MODELS.get(project)
    if cached is None or (cached.missing_required and not tolerate_missing):
        cached = _MODELS[project] = compose.load(project, tolerate_missing=tolerate_missing)
    return cached


def forget_model() -> None:
    _MODELS.clear()


def say(task: str, message: str, style: str | None = None) -> None:
    output.say(task, message, style)


def report(task: str, changes: list[str], unchanged: str) -> dict[str, Any]:
    """One line per change, or one line saying that nothing changed (idempotent reruns)."""
    for line in changes:
        say(task, line)
    if not changes:
        say(task, f"{unchanged} (nothing changed)")
    return {"changes": changes}


# ------------------------------------------------------------------ preparing


def env(project: Path, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    unknown = [k for k in keep if not k or not envfile.valid_key(k)]
    if unknown:
        raise ToolkitError(f"not a variable name: {', '.join(map(repr, unknown))}",
                           fix="name the .env key, e.g. --keep GRAFANA_IMAGE", code=output.EXIT_USAGE)
    adapted, reasons = _create_env_for_engine(project)
    result = envfile.ensure(project / ".env", project / ".env.example")
    if adapted:
        say("env", f"created .env from .env.example for this engine: {', '.join(adapted)} ({'; '.join(reasons)})")
    elif result.created:
        say("env", f"created .env from .env.example ({len(result.added)} variables)")
    elif result.added:
        say("env", f"added to .env from .env.example: {', '.join(result.added)}")
    else:
        say("env", ".env has every key of .env.example (nothing changed)")
    forgotten = envfile.refresh_shipped(project, keep)
    for key in keep:
        if key in forgotten:
            say("env", f"{key}: the value in .env is kept as your choice: `env.stale-default` no longer names it "
                       "(until .env agrees with .env.example again)")
        else:
            say("env", f"{key}: not a pin .env kept from .env.example, or one that has not moved: nothing to keep")
    forget_model()
    m = model(project, tolerate_missing=True)
    if m.missing_required:
        raise ToolkitError(
            f"required variable(s) unset or empty: {', '.join(m.missing_required)}",
            where=str(project / ".env"),
            fix="set them in .env (their comments in .env.example say what they are)",
        )
    return {"created": bool(result.created or adapted), "added": list(result.added), "adapted": adapted}


def _create_env_for_engine(project: Path) -> tuple[list[str], list[str]]:
    """A new ``.env`` gets the defaults this engine needs, where the example's would not work.

    Only when ``.env`` does not exist yet (a value the user wrote is never changed). On a
    rootless engine: publishable ports (:func:`publishable_ports`) and the engine's own API
    socket for ``DOCKER_SOCKET`` (the default ``/var/run/docker.sock`` is a rootful engine's,
    or nothing). On any engine that cannot apply a service's ``ulimits`` (no CAP_SYS_RESOURCE:
    rootless, or sandboxed): the values it grants (:func:`engine_ulimits`). Returns the
    ``KEY=value`` lines it chose and why.
    """
    target, example = project / ".env", project / ".env.example"
    if target.exists() or not example.is_file():
        return [], []
    try:
        engine = enginelib.info()
    except ToolkitError:
        return [], []  # no engine to ask: preflight will say what is wrong once there is one
    text = example.read_text(encoding="utf-8")
    chosen: list[str] = []
    reasons: list[str] = []
    if engine.kind == enginelib.Kind.ROOTLESS:
        names = set(portslib.port_variables(project).values())
        text, ports = publishable_ports(text, names, enginelib.unprivileged_port_start(engine))
        if ports:
            reasons.append("ports below 1024 cannot be published without privileges, every URL carries the port")
        socket_line: list[str] = []
        if engine.socket:
            text, socket_line = envfile.set_values(text, {SOCKET_VARIABLE: engine.socket})
        if socket_line:
            reasons.append("the Docker API proxy mounts this engine's own socket")
        chosen += ports + socket_line
    text, limits = envfile.set_values(text, engine_ulimits(project, engine))
    if limits:
        reasons.append("ulimits lowered to the most this engine grants: without CAP_SYS_RESOURCE it cannot raise a "
                       "container's limits above its own")
        chosen += limits
    if chosen:
        with envfile.lock(target):  # the lock of every .env writer (envfile.ensure sweeps under it)
            if fsutil.create_exclusive(target, text.encode(), 0o600):
                return chosen, reasons
    return [], []


def engine_ulimits(project: Path, engine: enginelib.Engine) -> dict[str, str]:
    """The ``.env`` values that give every service the ulimits this engine grants, where it
    refuses the defaults (none when it accepts them all, or gives no answer)."""
    from .prepare import ulimits as ulimitslib

    try:
        m = compose.load(project, tolerate_missing=True)
    except ToolkitError:
        return {}  # the render fails: `invoke env` and preflight say why
    values: dict[str, str] = {}
    for verdict in ulimitslib.probe(m, engine).values():
        if not verdict.accepted and verdict.lowered_ok:
            lines, in_file = ulimitslib.env_lines(m, verdict)
            if not in_file:
                values.update(lines)
    return values


#: The variable naming the engine socket that the stack's Docker API proxy mounts.
SOCKET_VARIABLE = "DOCKER_SOCKET"


def publishable_ports(text: str, names: set[str], start: int) -> tuple[str, list[str]]:
    """``text`` (dotenv) with each port variable in ``names`` below ``start`` raised by 8000
    (80 -> 8080, 443 -> 8443; to ``start + port`` if that is still too low); returns the new
    text and the ``KEY=value`` lines changed. Lines are otherwise kept byte for byte."""
    values = {}
    for m in re.finditer(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)=(\d+)[ \t]*$", text):
        port = int(m.group(2))
        if m.group(1) in names and port < start:
            values[m.group(1)] = str(port + 8000 if port + 8000 >= start else start + port)
    return envfile.set_values(text, values)


def secrets(project: Path) -> dict[str, Any]:
    m = model(project)
    specs = secretslib.specs(m)
    secretslib.refuse_tracked(project, sorted({s.path.parent for s in specs}))
    changes = secretslib.ensure(m, enginelib.info())
    return report("secrets", [f"{m.relpath(ch.path)}: {ch.action}" for ch in changes],
                  f"all {sum(1 for s in specs if not s.certificate)} secret files present")


def certs(project: Path) -> dict[str, Any]:
    m = model(project)
    paths = certslib.cert_paths(m)
    if paths is None:
        say("certs", "the stack declares no certificate secrets (nothing to do)")
        return {"changes": []}
    secretslib.ensure_dirs([paths.cert, paths.key], [])
    names = certslib.required_names(m.all_routed_hosts)
    changed, reasons = certslib.ensure(paths, names)
    if changed:
        line = f"generated {m.relpath(paths.cert)} for {len(names)} names: {'; '.join(reasons)}"
        say("certs", line)
        return {"changes": [line]}
    say("certs", f"{m.relpath(paths.cert)} is valid for all {len(names)} names (nothing changed)")
    return {"changes": []}


def dirs(project: Path, *, repair: bool = False) -> dict[str, Any]:
    m = model(project)
    engine = enginelib.info()
    changes, problems = dirslib.ensure(m, engine, repair=repair)
    summary = report("dirs", [f"{m.relpath(ch.path)}: {ch.action}" for ch in changes],
                     f"all {len(dirslib.data_dirs(m))} data directories present")
    if problems:
        lines = [f"  {m.relpath(d.path)} ({d.service}): {why}" for d, why in problems]
        raise ToolkitError("some bind-mount directories cannot be used by their containers:\n" + "\n".join(lines),
                           fix=f"`invoke dirs --repair` gives each its owner through the {engine.kind} engine "
                               "(no sudo); it changes only the directories listed above")
    return summary


def networks(project: Path) -> dict[str, Any]:
    m = model(project)
    created = networkslib.ensure(m)
    return report("networks", [f"created external network {name}" for name in created],
                  f"all {len(networkslib.external(m))} external networks present")


def config(project: Path) -> dict[str, Any]:
    m = model(project)
    if m.warnings:
        raise ToolkitError("docker compose config printed warnings:\n" + "\n".join(f"  - {w}" for w in m.warnings),
                           where=str(project / compose.COMPOSE_FILE),
                           fix="fix each cause (an unset variable belongs in .env / .env.example)")
    say("config", f"docker compose config: ok, no warning ({len(m.services)} services)")
    return {"services": len(m.services)}


def lint(project: Path) -> dict[str, Any]:
    files = yaml_files(project)
    res = runner.run(["yamllint", "--strict", "-f", "parsable", *map(str, files)], cwd=project)
    if not res.ok:
        raise ToolkitError("yamllint found problems:\n" + res.stdout.strip(), fix="fix the lines listed above")
    say("lint", f"yamllint: {len(files)} YAML files clean")
    return {"files": len(files)}


def yaml_files(project: Path) -> list[Path]:
    """Every YAML file of the stack: the root file and everything under infra/."""
    found = [project / compose.COMPOSE_FILE, project / ".yamllint"]
    found += sorted(p for ext in ("*.yml", "*.yaml") for p in (project / "infra").rglob(ext))
    return [p for p in found if p.is_file()]


def run_preflight_checks(project: Path) -> list[findings.Finding]:
    try:
        m: Model | None = model(project, tolerate_missing=True)
    except ToolkitError:
        m = None
    if not m:
        return table.preflight(project)
    observed = _FACTS[project] = facts.gather(m)
    return table.run_checks(m, observed)


def preflight_step(project: Path) -> Outcome:
    result = run_preflight_checks(project)
    out = output.current()
    out.text(findings.to_text(result, out=out))
    doc = findings.to_doc(result)
    return Outcome(doc, ok=doc["ok"])


def bootstrap(project: Path) -> Outcome:
    """env -> secrets -> certs -> dirs -> networks -> config -> preflight, each reported."""
    steps_done: dict[str, Any] = {"env": env(project)}
    for name, step in (("secrets", secrets), ("certs", certs), ("dirs", dirs), ("networks", networks),
                       ("config", config)):
        steps_done[name] = step(project)
    checks = preflight_step(project)
    doc = {"steps": steps_done, "preflight": checks.doc}
    if checks.ok:
        say("bootstrap", "done: the stack is ready to boot (`invoke up`)", "ok")
    else:
        say("bootstrap", "preflight found errors: fix them, then run `invoke bootstrap` again", "error")
    return Outcome(doc, ok=checks.ok)


# ------------------------------------------------------------------ running


def up(project: Path, timeout: int, *, verify_after: bool = True) -> Outcome:
    from .run import health, start

    prepared = bootstrap(project)
    if not prepared.ok:
        return Outcome({"bootstrap": prepared.doc}, ok=False)
    m = model(project)
    snapshot = up_snapshot(m, _FACTS.get(project))
    started, states = start.up(m, snapshot.engine or enginelib.info(), timeout, snapshot)
    healthy_at = time.time()
    say("up", f"all {len(m.services)} services are up and healthy", "ok")
    doc: dict[str, Any] = {"bootstrap": prepared.doc, "started": sorted(started)}
    from .run import verify as verifylib

    if verify_after and not verifylib.kinds(m):
        say("up", "no service declares x-readiness.verify: nothing to verify (`invoke health` probes the endpoints)")
    elif verify_after:
        # `up` means the stack works: every service does its job, not only answers.
        proved = verify(project, [], since=healthy_at if started else None)
        doc["verify"] = proved.doc
        if not proved.ok:
            say("up", "the stack is up, but some services do not do their job (above); `invoke verify` "
                      "checks again", "error")
            return Outcome(doc, ok=False)
    where = urls_doc(m)
    output.current().text(urls_text(m, where))
    doc["services"] = {c.service: c.detail for c in health.container_checks(m, list(states.values()))}
    doc["urls"] = where
    return Outcome(doc)


def up_snapshot(m: Model, observed: facts.Facts | None) -> Snapshot:
    """What preflight just saw, as ``up`` reads it (:class:`readiness.run.start.Snapshot`):
    this project's service containers and the images the engine lacks; what preflight could
    not learn from the engine stays None, and ``up`` asks itself."""
    from .run import pull, start

    if observed is None or observed.engine is None:
        return start.Snapshot()
    states = {c.service: {"ID": c.id, "State": c.state} for c in observed.containers
              if c.project == m.name and c.service and not c.oneoff} if observed.containers_known else None
    missing = [i for i in pull.images(m) if i.ref not in observed.images] if observed.images_known else None
    return start.Snapshot(observed.engine, states, missing)


def upgrade(project: Path, *, dry_run: bool, yes: bool = False, no_backup: bool = False, timeout: int = 300,
            to: str | None = None) -> Outcome:
    """The plan that moves the stack to the pins the repository ships (``readiness.run.upgrade``);
    with ``yes``, applied (``readiness.run.rollout``) under the upgrade lock, planned again there:
    the checks, a fresh backup, the pins moved in ``.env``, the pull, a rolling restart proved
    step by step, back at the first failure. ``--dry-run`` writes nothing, not even a cache."""
    from .run import rollout

    env_path, example_path = project / ".env", project / ".env.example"
    if not env_path.exists():
        raise ToolkitError(".env does not exist: there is nothing to upgrade from", where=str(env_path),
                           fix="`invoke bootstrap`, then `invoke up`: a first boot takes the pins .env.example ships")
    if not example_path.exists():
        raise ToolkitError(".env.example is missing: what the repository ships cannot be read", where=str(example_path),
                           fix="restore it from git: `git checkout -- .env.example`")
    if yes and timeout < 1:
        raise ToolkitError(f"--timeout must be 1 or more seconds (got {timeout})", fix="e.g. `--timeout 300`",
                           code=output.EXIT_USAGE)
    if not yes or dry_run:
        with modelcache.disabled():  # a cache is a write too
            return _upgrade_plan(project, model(project), dry_run=dry_run)[0]
    with fsutil.file_lock(project / rollout.LOCK):  # two upgrades never roll at once; the plan is made under it
        forget_model()
        m = model(project)
        outcome, plan, record = _upgrade_plan(project, m, dry_run=False, applying=True)
        if plan is None:
            return outcome
        applied = _apply_upgrade(project, m, plan, record, no_backup=no_backup, timeout=timeout, to=to)
    return Outcome({**outcome.doc, **applied}, ok="verify" not in applied or bool(applied["verify"]["ok"]))


def _upgrade_plan(project: Path, m: Model, *, dry_run: bool, applying: bool = False
                  ) -> tuple[Outcome, Any, dict[str, str]]:
    """(the plan's outcome, the plan when it is to be applied now else None, the record)."""
    from .run import upgrade as upgradelib

    record = envfile.load_shipped(project)
    plan = upgradelib.plan(m, envfile.read(project / ".env"), envfile.read(project / ".env.example"), record)
    output.current().text(upgradelib.to_text(plan))
    doc: dict[str, Any] = {"dry_run": dry_run, **plan.as_doc()}
    if plan.refusals:
        return Outcome(doc, ok=False), None, record
    if dry_run or not (plan.moves or plan.other):
        return Outcome(doc), None, record
    if not applying:
        output.current().text("Run again with --yes to apply it: a fresh backup, the pull, then the services above "
                              "recreated one at a time, each proved working before the next.")
        return Outcome(doc, ok=False, code=output.EXIT_USAGE), None, record
    return Outcome(doc), plan, record


def _apply_upgrade(project: Path, m: Model, plan: Any, record: dict[str, str], *, no_backup: bool, timeout: int,
                   to: str | None) -> dict[str, Any]:
    from .run import diskuse, pull, rollout
    from .run.backup import take

    engine = enginelib.info()
    running = rollout.running(m)
    new = {mv.variable: mv.new for mv in plan.moves} | {k: n for k, _, n in plan.other}
    old = {mv.variable: mv.old for mv in plan.moves} | {k: o for k, o, _ in plan.other}
    envfile.pinned_text(project, new)  # .env can take them: refused now, before the backup, if not
    problem = rollout.tier_problem(m, plan, running) or rollout.room_problem(m, plan, diskuse.measure(m, engine))
    if problem:
        raise ToolkitError(problem.message, fix=problem.fix)
    backup_path = None
    if not no_backup:
        say("upgrade", "taking a fresh backup first (`--no-backup` skips it)")
        directory, _ = take.take(m, engine, root=take.resolve_root(project, to), only=[], skip=[])
        backup_path = str(directory)
        problem = rollout.room_problem(m, plan, diskuse.measure(m, engine))  # the backup may share the disk
        if problem:
            raise ToolkitError(problem.message + f" now that the backup ({backup_path}) is written",
                               fix=problem.fix + "; or move the backup off this disk and `invoke upgrade --yes "
                                                 "--no-backup`")
    envfile.write_pins(project, new, {**record, **new})
    forget_model()
    try:
        m2 = model(project)
        pull.pull(m2, rollout.images_to_pull(m2, plan))
    except (ToolkitError, KeyboardInterrupt):
        envfile.write_pins(project, old, record)
        forget_model()
        say("upgrade", "the pull failed: .env holds the old pins again, nothing was recreated", "error")
        raise
    done = rollout.Rollout()
    try:
        rollout.roll(m2, engine, plan, _works(project), timeout=timeout, done=done, running=running)
    except KeyboardInterrupt:
        raise ToolkitError(f"interrupted (Ctrl-C); recreated on the new images so far: "
                           f"{', '.join(done.recreated) or 'none'}; .env holds the new pins",
                           fix="`invoke up` finishes the move (it recreates what still runs an old image), or "
                               "`git checkout` the pins you want back into .env and `invoke up`"
                               + (f"; the backup taken before is {backup_path}" if backup_path else ""),
                           code=output.EXIT_INTERRUPTED) from None
    except rollout.StepFailed as step:
        envfile.write_pins(project, old, record)
        forget_model()
        if done.recreated:
            say("upgrade", f"{step.service} failed: putting {', '.join(done.recreated)} back on the old images",
                "error")
        try:
            not_back = rollout.roll_back(model(project), engine, done.recreated, timeout)
        except ToolkitError:  # the model cannot be rendered again: nothing can be put back from here
            not_back = list(done.recreated)
        raise rollout.failure(step, done.recreated, not_back, backup_path) from None
    result: dict[str, Any] = {"applied": True, "backup": backup_path, **done.as_doc()}
    if not done.recreated:
        say("upgrade", f"{len(new)} pin(s) moved in .env; nothing that uses them runs: `invoke up` starts them on "
                       "the new images", "ok")
        return result
    proved = verify(project, [], since=time.time())
    say("upgrade", f"{len(new)} pin(s) moved; recreated: {', '.join(done.recreated)}", "ok" if proved.ok else "error")
    return {**result, "verify": proved.doc}


def _works(project: Path) -> Any:
    """The proof between steps of an upgrade: the services' containers and endpoints healthy,
    and their verify probes green (only probes of those services)."""
    from .run import health as healthlib
    from .run import verify as verifylib

    def check(m: Model, services: list[str]) -> str | None:
        since = time.time()
        bad = [c for c in healthlib.check_once(m, certslib.root_ca(m)) if c.service in services and not c.ok]
        if bad:
            return "; ".join(f"{c.service} {c.kind} {c.target}: {c.detail}" for c in bad)
        probed = {s for svcs in verifylib.kinds(m).values() for s in svcs}
        if not probed & set(services):
            return None
        verdicts, _ = verifylib.run(m, certslib.root_ca(m), sorted(probed & set(services)), since=since)
        failed = [v for v in verdicts if not v.ok]
        return "; ".join(f"{v.service} {v.check}: {v.got}" for v in failed) or None

    return check


def pins(project: Path, *, check: bool, digests: bool) -> Outcome:
    """The image pins; ``--check`` asks each registry, ``--digests`` pins ``.env.example`` to digests."""
    from .run import pins as pinslib

    result = pinslib.run(project, model(project) if check or not digests else None, check=check, digests=digests)
    return Outcome(result.doc, ok=result.ok, code=result.code)


def verify(project: Path, services: list[str], *, since: float | None = None) -> Outcome:
    """Every service's round trip through its users' interface (``readiness.run.verify``);
    ``since``: when the stack became healthy, right before (``invoke up``)."""
    from .run import verify as verifylib

    m = model(project)
    unknown = sorted(set(services) - set(m.services))
    if unknown:
        raise ToolkitError(f"no service named {', '.join(unknown)}",
                           fix=f"choose from: {', '.join(sorted(m.services))}", code=output.EXIT_USAGE)
    if not verifylib.kinds(m):
        raise ToolkitError("no service of the stack declares x-readiness.verify: there is nothing to verify",
                           where=str(project / compose.COMPOSE_FILE),
                           fix="give each service `x-readiness: {verify: {probe: <kind>}}` (docs/x-readiness.md); "
                               "`invoke health` checks containers and endpoints meanwhile")
    out = output.current()
    say("verify", f"proving {len(verifylib.kinds(m))} kinds of service do their job (one round trip each)")
    verdicts, unverified = verifylib.run(m, certslib.root_ca(m), services or None, since=since)
    out.text(verifylib.to_text(verdicts, unverified, out))
    doc = verifylib.as_doc(verdicts, unverified)
    return Outcome(doc, ok=doc["ok"])


def health(project: Path, *, wait: bool, timeout: float, interval: float) -> Outcome:
    from concurrent.futures import ThreadPoolExecutor

    from .run import health as healthlib

    # `compose ps` does not need the rendered model: run it alongside the render, and load
    # the HTTP client while both subprocesses run; this nearly halves one health check.
    plugin = ("docker", "compose")
    with ThreadPoolExecutor(max_workers=2) as pool:
        early = pool.submit(healthlib.ps_command, plugin, project)
        rendered = pool.submit(model, project)
        healthlib.preload()
        m = rendered.result()
        first = early.result()
    containers = first if m.cli and m.cli.argv == plugin and first is not None else None
    out = output.current()
    previous: list[list[healthlib.Check]] = []

    def progress(checks: list[healthlib.Check]) -> None:
        changed = healthlib.changes(previous[-1] if previous else None, checks)
        previous.append(checks)
        failing = [c for c in checks if not c.ok]
        if changed and failing:
            names = sorted({c.service for c in failing})
            out.say("health", f"attempt {len(previous)}: {len(failing)} check(s) failing: {', '.join(names)}",
                    "starting")

    checks = healthlib.check(m, certslib.root_ca(m), wait=wait, timeout=timeout, interval=interval,
                             containers=containers, on_attempt=progress if wait else None)
    out.text(healthlib.to_text(checks, out))
    doc = healthlib.to_doc(checks)
    return Outcome(doc, ok=doc["ok"])


def status(project: Path) -> Outcome:
    """The containers' states, then each data directory's size and its filesystem's free space."""
    from .run import diskuse
    from .run import health as healthlib

    m = model(project)
    checks = healthlib.container_checks(m, healthlib.ps(m))
    out = output.current()
    out.text(healthlib.to_text(checks, out))
    try:
        engine: enginelib.Engine | None = enginelib.info()
    except ToolkitError:
        engine = None
    usage = diskuse.measure(m, engine)
    out.text(diskuse.to_text(m, usage))
    doc = healthlib.to_doc(checks)
    doc["data"] = [u.as_doc(m) for u in usage]
    return Outcome(doc, ok=doc["ok"])


def urls(project: Path) -> Outcome:
    m = model(project)
    doc = urls_doc(m)
    output.current().text(urls_text(m, doc))
    return Outcome(doc)


def urls_doc(m: Model) -> dict[str, Any]:
    from .run import urls as urlslib

    return urlslib.describe(m)


def urls_text(m: Model, doc: dict[str, Any]) -> str:
    from .run import urls as urlslib

    return urlslib.to_text(doc, output.current())


def down(project: Path, volumes: bool) -> Outcome:
    from .run import start

    start.down(model(project), volumes)
    kept = "" if volumes else "; data, secrets and named volumes kept"
    say("down", f"stack stopped and removed{kept}")
    return Outcome({"removed_volumes": volumes})


def reset(project: Path, *, yes: bool, services: list[str], no_backup: bool = False, to: str | None = None
          ) -> Outcome:
    """Stop the stack and delete data directories (all, or those of ``services``), through the engine;
    refused while no backup is newer than that data, unless ``no_backup``."""
    from .run.backup import take

    m = model(project)
    unknown = sorted(set(services) - set(m.services))
    if unknown:
        raise ToolkitError(f"no service named {', '.join(unknown)}",
                           fix=f"choose from: {', '.join(sorted(m.services))}", code=output.EXIT_USAGE)
    targets = [d for d in dirslib.data_dirs(m) if not services or d.service in services]
    present = [d for d in targets if d.path.is_dir()]
    doomed = [f"{m.relpath(d.path)} ({d.service})" for d in present]
    if not services:  # `down --volumes` also deletes the Compose volumes (named and anonymous)
        doomed += sorted(f"volume {v.get('source') or v.get('target')} ({svc})"
                         for svc, spec in m.services.items() for v in spec.get("volumes") or []
                         if isinstance(v, dict) and v.get("type") == "volume")
    listing = ", ".join(doomed) or "none"
    with fsutil.file_lock(project / take.LOCK):  # no backup or restore meanwhile
        return _reset(m, project, present, listing, yes=yes, services=services, no_backup=no_backup, to=to)


def _reset(m: Model, project: Path, present: list[dirslib.DataDir], listing: str, *, yes: bool, services: list[str],
           no_backup: bool, to: str | None) -> Outcome:
    from .run import start
    from .run.backup import take

    if present and not no_backup:
        uncovered = _uncovered(m, project, present, to)
        if uncovered:
            raise ToolkitError(
                f"no backup under {take.resolve_root(project, to)} holds the data of {', '.join(uncovered)} as it is "
                "now: `invoke reset` would delete it for good", where=str(take.resolve_root(project, to)),
                fix="stop the stack, back it up, then reset: `invoke down && invoke backup && invoke reset --yes` "
                    "(a running service's data changes as it runs, so only a backup taken after it stopped holds "
                    "all of it); or `invoke reset --no-backup --yes` to delete it without one", code=output.EXIT_USAGE)
    if not yes:
        raise ToolkitError(f"`invoke reset` deletes data for good: {listing}",
                           fix="run `invoke reset --yes` to confirm (add `--service NAME` to limit it); secrets, "
                               "certificates and .env are kept", code=output.EXIT_USAGE)
    if services:
        res = runner.run(compose.command_for(m, "rm", "--stop", "--force", *services), cwd=m.project_dir, timeout=300)
        if not res.ok:
            raise ToolkitError(f"docker compose rm failed: {res.stderr.strip()}",
                               fix=enginelib.unreachable_hint(res.stderr) or "see the message above")
    else:
        start.down(m, volumes=True)
    removed = dirslib.remove(m, present)
    for path in removed:
        say("reset", f"removed {m.relpath(path)}")
    say("reset", f"{len(removed)} data director{'y' if len(removed) == 1 else 'ies'} removed; `invoke up` starts "
                 "from empty data (secrets, certificates and .env kept)")
    return Outcome({"removed": [m.relpath(p) for p in removed]})


def backup(project: Path, *, to: str | None, only: list[str], skip: list[str]) -> Outcome:
    """One backup (``readiness.run.backup``); ``--json``: its path and manifest."""
    from .run.backup import take

    m = model(project)
    directory, doc = take.take(m, enginelib.info(), root=take.resolve_root(project, to), only=only, skip=skip)
    return Outcome({"path": str(directory), "manifest": doc})


def restore(project: Path, path: str, *, yes: bool, to: str | None, timeout: int = 600) -> Outcome:
    """Check a backup, say what it replaces; with ``yes``, put it back (``readiness.run.backup.restore``)."""
    from .run import start
    from .run.backup import restore as restorelib
    from .run.backup import take

    m = model(project)
    checked = restorelib.check(m, Path(path).expanduser().resolve())
    listing = "; ".join(checked.replaces)
    if not yes:
        output.current().text("\n".join(["The restore would replace:", *(f"  - {r}" for r in checked.replaces),
                                         "after taking a safety backup of it. Run again with --yes to do it."]))
        return Outcome({"path": str(checked.directory), "would_replace": checked.replaces, "done": False},
                       ok=False, code=output.EXIT_USAGE)
    say("restore", f"backup {checked.directory} checked (every checksum holds); replacing: {listing}")
    engine = enginelib.info()

    def reload() -> Model:
        forget_model()
        return model(project)

    def boot(mm: Model) -> dict[str, Any]:
        start.up(mm, engine, timeout)
        return verify(project, [], since=time.time()).doc  # restarted: Prometheus' older scrapes are stale

    doc = restorelib.restore(m, engine, checked, root=take.resolve_root(project, to), reload=reload, start=boot)
    proved = doc.get("verify")
    if proved is not None and not proved["ok"]:
        say("restore", f"the data is back and the stack runs, but `invoke verify` fails (above); what was there before "
                       f"is in {doc['safety_backup']}", "error")
    return Outcome({**doc, "done": True}, ok=proved is None or bool(proved["ok"]))


def backups(project: Path, *, to: str | None) -> Outcome:
    """Every backup under the backup directory: size, age, whether its checksums hold."""
    from .run.backup import restore as restorelib
    from .run.backup import take

    root = take.resolve_root(project, to)
    rows = restorelib.listing(root)
    out = output.current()
    if not rows:
        out.text(f"no backups under {root} (`invoke backup` makes one)")
    else:
        table_rows = [[Path(r["path"]).name, restorelib.age(r.get("age_seconds")) if r["complete"] else "-",
                       diskuse_human(r.get("bytes")) if r["complete"] else "-",
                       ("ok" if r["checksums_ok"] else "DAMAGED: " + "; ".join(r["damage"])) if r["complete"]
                       else "incomplete: " + r["why"]] for r in rows]
        out.text(out.table(["BACKUP", "AGE", "SIZE", "CHECKSUMS"], table_rows))
    damaged = [r for r in rows if r["complete"] and not r["checksums_ok"]]
    return Outcome({"root": str(root), "backups": rows}, ok=not damaged)


def diskuse_human(n: int | None) -> str:
    from .run import diskuse

    return "?" if n is None else diskuse.human(n)


def _uncovered(m: Model, project: Path, present: list[dirslib.DataDir], to: str | None) -> list[str]:
    """The services among ``present`` whose data no backup holds as it is now (services that
    declare their data expendable, ``x-readiness.backup.default: false``, need none)."""
    from .prepare import datastate
    from .run.backup import manifest, take
    from .run.backup import restore as restorelib

    engine = enginelib.info()
    states = datastate.probe(project, [d.path for d in present], engine, m.helper_image)
    needed = [d for d in present if states[d.path].has_data
              and (m.x(d.service).get("backup") or {}).get("default", True) is not False]
    if not needed:
        return []
    root = take.resolve_root(project, to)
    changed = restorelib.data_changed_at(m, engine, needed)

    def intact(row: dict[str, Any]) -> bool:
        doc = manifest.read(Path(row["path"]))[0]
        return doc is not None and not manifest.damage(Path(row["path"]), doc)

    chosen = restorelib.covering(restorelib.listing(root, hashes=False), changed, m.name, intact)
    return [] if chosen else sorted(changed)


def logs(project: Path, service: str, tail: int, follow: bool) -> int:
    from .run import start

    return start.logs(model(project), service, tail, follow)


def doctor(project: Path, *, tail: int, to: str | None) -> Outcome:
    """One archive for a bug report (``readiness.run.doctor``): the tasks' documents (these
    steps, run here with their output captured), the engine, the model, the Patroni cluster,
    disk use and each service's logs, every secret redacted. Each part is gathered on its own;
    the run succeeds once the archive is written, whatever parts could not be gathered."""
    from .run import doctor as doctorlib

    given = tail
    try:
        tail = int(tail)
    except (TypeError, ValueError):
        tail = 0
    if tail < 1:
        raise ToolkitError(f"--tail must be a whole number of lines, 1 or more (got {given!r})",
                           fix="e.g. `invoke doctor --tail 500`", code=output.EXIT_USAGE)
    documents = {
        "preflight": lambda: preflight_step(project),
        "status": lambda: status(project),
        "health": lambda: health(project, wait=False, timeout=30.0, interval=1.0),  # one look: no --wait
        "verify": lambda: verify(project, []),
    }
    _, doc = doctorlib.run(project, lambda: model(project, tolerate_missing=True), documents, tail=tail, to=to)
    return Outcome(doc)
