"""Boot, stop and inspect the stack with Compose, explaining every failure.

``up`` runs in two phases, because they fail for different reasons and take very different
times on a first boot:

1. **Pull** what the engine lacks (:mod:`.pull`): no time limit of its own, a progress line
   per image, a retry for transient errors, and a refusal naming every image that cannot be
   pulled before any container is created.
2. **Start and wait** (``compose up -d --wait``): ``--timeout`` covers only this health
   wait. While it runs, each service's state change is printed (starting, healthy, failed),
   with a summary line at least every 5 s; when it fails, only the services that failed are
   diagnosed (state, last healthcheck output, last log lines), and those that never started
   because a dependency failed are named in one line.

Ctrl-C stops either phase cleanly: exit 130, no traceback, and a line saying what runs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import output
from ..errors import ToolkitError
from ..prepare import certs
from ..stack import compose, ports
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import fsutil, runner
from ..system.retry import poll
from . import health, pull
from .pull import HEARTBEAT_SECONDS

#: How long ``up`` waits, once Compose reports every container healthy, for Traefik to route
#: to them: it applies a container's route only after the container turns healthy, batched by
#: providersThrottleDuration (Traefik's default 2 s; the shipped stack sets 200 ms, a stack
#: may not). Without this, `invoke health` right after `invoke up`
#: could see a 404 for the last service to become healthy (found by the e2e suite).
ROUTE_SETTLE_SECONDS = 5.0
#: How often the per-service state is polled during the health wait.
POLL_SECONDS = 2.0
COMPAT_FILE = ".readiness/compat/engine-before-25.yml"


# ------------------------------------------------------------------ phase 2: start and wait


def compat_files(model: Model, engine: enginelib.Engine) -> list[Path]:
    """Override files that adapt the stack to an older engine (none on a current one).

    Engines before Docker 25 refuse ``healthcheck.start_interval``; Compose stops before
    creating anything. Rather than refuse to boot, ``up`` drops that one key with Compose's
    own ``!reset`` (preflight warns: ``engine.no-start-interval``).
    """
    if engine.start_interval:
        return []
    users = sorted(svc for svc, spec in model.services.items() if "start_interval" in (spec.get("healthcheck") or {}))
    if not users:
        return []
    lines = ["# Written by `invoke up` for an engine before Docker 25 (no healthcheck.start_interval).", "services:"]
    for svc in users:
        lines += [f"  {json.dumps(svc)}:", "    healthcheck:", "      start_interval: !reset null"]
    path = model.project_dir / COMPAT_FILE
    fsutil.ensure_dir(path.parent, 0o755)
    fsutil.atomic_write(path, ("\n".join(lines) + "\n").encode(), 0o644)
    return [path]


def _states(model: Model) -> dict[str, dict]:
    """Service -> its container, in ``compose ps``'s terms, from one ``docker ps`` of the
    project (:func:`readiness.system.engine.project_containers`: a third of ``compose ps``'s
    time, and ``up`` asks while Compose creates containers)."""
    try:
        return {str(c.get("Service", "")): c for c in enginelib.project_containers(model.name)}
    except ToolkitError:
        return {}


def _state_word(model: Model, svc: str, c: dict | None) -> str:
    if c is None:
        return "not created"
    state, status = str(c.get("State", "")), str(c.get("Health", ""))
    if health.one_shot(model, svc):
        if state == "exited":
            return "completed" if int(c.get("ExitCode", 1) or 0) == 0 else f"failed (exit {c.get('ExitCode')})"
        return "running" if state == "running" else state
    if state == "running":
        return status or "running"
    if state == "exited":
        return f"exited (code {c.get('ExitCode')})"
    return state or "unknown"


_GOOD = {"healthy", "completed"}
_BAD = ("failed", "exited", "unhealthy", "dead")


class WaitProgress:
    """Prints each service's state when it changes, and a summary at least every 5 s."""

    def __init__(self, model: Model, say: Callable[[str, str | None], None]) -> None:
        self.model, self.say = model, say
        self.seen: dict[str, str] = {}
        self.started = self.last_line = time.monotonic()

    def update(self, states: dict[str, dict]) -> None:
        """New states: one line per service whose state changed."""
        for svc in sorted(self.model.services):
            word = _state_word(self.model, svc, states.get(svc))
            if self.seen.get(svc) != word and word != "not created":
                style = "ok" if word in _GOOD or word == "running" and not self._has_check(svc) else \
                    "error" if word.startswith(_BAD) else "starting"
                self.say(f"{svc}: {word}", style)
                self.last_line = time.monotonic()
            self.seen[svc] = word
        self.tick()

    def tick(self) -> None:
        """A summary line when nothing was printed for a while (called often, whatever the engine does)."""
        if time.monotonic() - self.last_line < HEARTBEAT_SECONDS:
            return
        pending = [f"{s} ({w})" for s, w in sorted(self.seen.items()) if not self._ready(s, w)]
        ready = len(self.seen) - len(pending)
        elapsed = time.monotonic() - self.started
        self.say(f"{ready} of {len(self.model.services)} services ready after {elapsed:.0f} s; waiting for "
                 f"{', '.join(pending) or 'the first containers'}", None)
        self.last_line = time.monotonic()

    def _has_check(self, svc: str) -> bool:
        return bool((self.model.services[svc].get("healthcheck") or {}).get("test"))

    def _ready(self, svc: str, word: str) -> bool:
        return word in _GOOD or (word == "running" and not self._has_check(svc))


class StatePoller:
    """The project's containers (:func:`_states`) in a background thread, so that a busy
    engine (a slow ``ps`` while it creates containers) never delays the progress lines."""

    def __init__(self, model: Model, every: float = POLL_SECONDS) -> None:
        import threading

        self.model, self.every = model, every
        self.latest: dict[str, dict] | None = None
        self._fresh = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # The first poll after one interval: the states before ``up`` are known, and a ``ps``
        # at once would only compete with Compose for the CPU.
        while not self._stop.wait(self.every):
            states = _states(self.model)
            with self._lock:
                self.latest, self._fresh = states, True

    def take(self) -> dict[str, dict] | None:
        """The newest states, once (None when nothing new arrived since the last call)."""
        with self._lock:
            fresh, self._fresh = self._fresh, False
            return self.latest if fresh else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def started_services(before: dict[str, dict], after: dict[str, dict]) -> set[str]:
    """Services whose container ``up`` created or (re)started: a new container id, or a
    container that was not running before (from the engine's container list, not from
    Compose's human-readable progress)."""
    out = set()
    for svc, c in after.items():
        old = before.get(svc)
        if old is None or not _same_id(str(old.get("ID", "")), str(c.get("ID", ""))) or old.get("State") != "running":
            out.add(svc)
    return out


def _same_id(a: str, b: str) -> bool:
    """Container ids, full (``docker ps --no-trunc``) or abbreviated (as ``docker ps`` and
    ``compose ps``'s table print them)."""
    return bool(a and b) and (a.startswith(b) or b.startswith(a))


@dataclass(frozen=True)
class Snapshot:
    """What the preflight right before ``up`` saw, so that ``up`` does not ask again: the
    engine, the project's containers (service -> ``{"ID", "State"}``, as :func:`_states`
    gives them) and the images the engine lacks. A field is None when it was not observed
    (``readiness.steps.up_snapshot`` makes one from preflight's facts)."""

    engine: enginelib.Engine | None = None
    states: dict[str, dict] | None = None
    missing: list[pull.Image] | None = None


def up(model: Model, engine: enginelib.Engine, timeout: int,
       snapshot: Snapshot | None = None) -> tuple[set[str], dict[str, dict]]:
    """Pull what is missing, then start and wait; returns the services it (re)started and
    every container's state at the end (one ``docker ps`` of the project)."""
    snapshot = snapshot or Snapshot()
    try:
        missing = snapshot.missing if snapshot.missing is not None else pull.missing_images(pull.images(model))
        pull.pull(model, missing)
        # Only when nothing was pulled: a pull takes minutes, and containers may change meanwhile.
        return _start_and_wait(model, engine, timeout, snapshot.states if not missing else None)
    except KeyboardInterrupt:
        running = sorted(svc for svc, c in _states(model).items() if c.get("State") == "running")
        raise ToolkitError(
            "interrupted (Ctrl-C)" + (f"; running now: {', '.join(running)}" if running else "; nothing is running"),
            fix="`invoke up` again to finish the boot, or `invoke down` to stop what runs",
            code=output.EXIT_INTERRUPTED) from None


def _start_and_wait(model: Model, engine: enginelib.Engine, timeout: int,
                    before: dict[str, dict] | None = None) -> tuple[set[str], dict[str, dict]]:
    out = output.current()
    before = _states(model) if before is None else before
    out.say("up", f"starting {len(model.services)} services and waiting up to {timeout} s for them to be healthy")
    args = compose.command_for(model, "up", "-d", "--wait", "--wait-timeout", str(timeout),
                    extra_files=compat_files(model, engine))
    progress = WaitProgress(model, lambda text, style: out.say("up", text, style))
    deadline = time.monotonic() + timeout + 300  # Compose enforces --wait-timeout; this only guards a hang
    poller = StatePoller(model)
    try:
        with runner.Lines(args, cwd=model.project_dir) as proc:
            while True:
                finished, _ = proc.next(timeout=0.25)
                if finished:
                    break
                states = poller.take()
                if states is not None:
                    progress.update(states)
                progress.tick()
                if time.monotonic() > deadline:
                    proc.close()
                    break
            res = proc.result()
    finally:
        poller.stop()
    after = _states(model)
    if res.ok and not after:  # the engine did not list them: ask Compose, and say why if it cannot
        after = {str(c.get("Service", "")): c for c in health.ps(model)}
    progress.update(after)
    if res.ok:
        started = started_services(before, after)
        gateway = {svc for svc in model.services if ports.published_port(model, svc, 443)}
        if started:
            out.say("up", f"every container is healthy; checking that Traefik routes to the {len(started)} "
                          "service(s) that (re)started")
        if started & gateway:
            settle_routes(model)  # Traefik itself restarted: every route is being rebuilt
        elif started:
            settle_routes(model, services=started)
        return started, after
    hint = enginelib.unreachable_hint(res.stdout)
    if hint:
        raise ToolkitError(f"docker compose up failed: {res.stdout.strip().splitlines()[-1]}", fix=hint)
    details, waiting = diagnose(model, after)
    summary = next((line for line in reversed(res.stdout.strip().splitlines())
                    if line.strip() and not line.startswith(" ")), f"exit status {res.returncode}")
    text = f"the stack did not become healthy within {timeout} s ({summary.strip()})"
    if details:
        text += "\n" + "\n".join(details)
    if waiting:
        text += f"\n  not started, waiting for a failed dependency: {', '.join(waiting)}"
    raise ToolkitError(text, fix="fix the service(s) above, then `invoke up` again; `invoke logs SERVICE` shows more")


def diagnose(model: Model, states: dict[str, dict] | None = None, log_lines: int = 15) -> tuple[list[str], list[str]]:
    """(one paragraph per service that failed, with evidence; services never started)."""
    containers = list((states if states is not None else _states(model)).values())
    checks = health.container_checks(model, containers)
    failed, waiting = [], []
    for c in checks:
        if c.ok:
            continue
        state = next((x for x in containers if x.get("Service") == c.service), None)
        if state is None or state.get("State") == "created":
            waiting.append(c.service)
            continue
        failed.append(c)

    def paragraph(c: health.Check) -> str:
        logs = runner.run(compose.command_for(model, "logs", "--no-color", "--tail", str(log_lines), c.service),
                          cwd=model.project_dir, timeout=60)
        tail = "\n".join("      " + line for line in (logs.stdout or logs.stderr).strip().splitlines()[-log_lines:])
        return f"  {c.service}: {c.detail}\n    last log lines:\n{tail or '      (none)'}"

    with ThreadPoolExecutor(max_workers=max(1, len(failed))) as pool:
        details = list(pool.map(paragraph, failed))
    return details, sorted(waiting)


def _not_routed_yet(check: health.Check) -> bool:
    """Traefik answered, but without a route (404) or a ready backend (502/503) yet."""
    return not check.ok and re.match(r"HTTP (404|502|503)\b", check.detail) is not None


def settle_routes(model: Model, timeout: float = ROUTE_SETTLE_SECONDS,
                  services: set[str] | None = None) -> list[health.Check]:
    """Probe the HTTPS endpoints until Traefik routes each of them, or ``timeout``.

    Only the services in ``services`` (all when None): a container that was already running
    keeps its route, so an ``up`` that changed nothing waits for nothing.
    Returns the endpoints that still fail. Not a failure of ``up``: the containers are
    healthy, and `invoke health` is where a wrong route is reported. Only "Traefik answered
    but has no route yet" is waited for; a refused connection or a TLS error is not. A line
    names what is still waited for every few seconds (progress, like the rest of ``up``).
    """
    from tenacity import wait_fixed

    ca = certs.root_ca(model)
    pending = [ep for ep in health.endpoints(model)
               if ep.kind == health.CheckKind.HTTPS and (services is None or ep.service in services)]
    last: dict[str, health.Check] = {}
    said = time.monotonic()

    def attempt() -> list[health.Endpoint]:
        """Probe what is still pending; returns what Traefik does not route yet."""
        nonlocal pending
        with ThreadPoolExecutor(max_workers=len(pending)) as pool:
            checks = list(pool.map(lambda ep: health.probe(ep, ca, timeout=2.0), pending))
        last.update((c.target, c) for c in checks)
        pending = [ep for ep, c in zip(pending, checks, strict=True) if _not_routed_yet(c)]
        return pending

    def progress(waiting: list[health.Endpoint], _attempt: int, _seconds: float) -> None:
        nonlocal said
        if time.monotonic() - said >= 2.5:
            names = ", ".join(sorted({ep.service for ep in waiting}))
            output.current().say("up", f"waiting for Traefik to route {names}")
            said = time.monotonic()

    if pending:
        poll(attempt, lambda waiting: not waiting, wait=wait_fixed(0.2), timeout=timeout, before_wait=progress)
    return sorted((c for c in last.values() if not c.ok), key=health.Check.sort_key)


def down(model: Model, volumes: bool) -> None:
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    res = runner.run(compose.command_for(model, *args), cwd=model.project_dir, timeout=300)
    if not res.ok:
        raise ToolkitError(f"docker compose down failed: {res.stderr.strip()}",
                           fix=enginelib.unreachable_hint(res.stderr) or "see the message above")


def logs(model: Model, service: str, tail: int, follow: bool) -> int:
    service = "" if service == "all" else service
    if service and service not in model.services:
        raise ToolkitError(f"no service named {service!r}",
                           fix=f"choose one of: all, {', '.join(sorted(model.services))}", code=output.EXIT_USAGE)
    args = ["logs", "--no-color", "--tail", str(tail), *(["--follow"] if follow else [])]
    args += [service] if service else []
    return runner.stream(compose.command_for(model, *args), cwd=model.project_dir)
