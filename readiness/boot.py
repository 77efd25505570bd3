"""Boot, stop and inspect the stack with Compose, explaining every failure.

``up`` is ``docker compose up -d --wait``; when it fails, the user gets, per service that
did not become healthy, its state, the last healthcheck output and its last log lines, not
just Compose's "dependency failed to start".
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from . import compose, health, runner
from .compose import Model
from .errors import ToolkitError

#: How long ``up`` waits, once Compose reports every container healthy, for Traefik to route
#: to them: it applies a container's route only after the container turns healthy, batched by
#: providersThrottleDuration (2 s). Without this, `invoke health` right after `invoke up`
#: could see a 404 for the last service to become healthy (found by the e2e suite).
ROUTE_SETTLE_SECONDS = 5.0


def _compose(model: Model, *args: str) -> list[str]:
    assert model.cli is not None
    return compose.command(model.cli.argv, model.project_dir, *args)


def engine_hint(stderr: str) -> str | None:
    if "Cannot connect to the Docker daemon" in stderr or "docker daemon running" in stderr:
        return ("start the Docker engine (Linux: `sudo systemctl start docker`; macOS/WSL2: Docker Desktop), "
                "then run again")
    return None


def diagnose(model: Model, log_lines: int = 15) -> list[str]:
    """One paragraph per service that is not healthy, with evidence."""
    try:
        checks = health.container_checks(model, health.ps(model))
    except ToolkitError as exc:
        return [exc.message]
    out = []
    for c in checks:
        if c.ok:
            continue
        logs = runner.run(_compose(model, "logs", "--no-color", "--tail", str(log_lines), c.service),
                          cwd=model.project_dir, timeout=60)
        tail = "\n".join("      " + line for line in (logs.stdout or logs.stderr).strip().splitlines()[-log_lines:])
        out.append(f"  {c.service}: {c.detail}\n    last log lines:\n{tail or '      (none)'}")
    return out


def _not_routed_yet(check: health.Check) -> bool:
    """Traefik answered, but without a route (404) or a ready backend (502/503) yet."""
    return not check.ok and re.match(r"HTTP (404|502|503)\b", check.detail) is not None


def started_services(model: Model, compose_output: str) -> set[str]:
    """Services whose container ``compose up`` created or (re)started, from its progress lines."""
    names = set(re.findall(r"Container (\S+)\s+(?:Creat|Recreat|Start|Restart)", compose_output))
    return {svc for svc in model.services
            if any(re.fullmatch(rf"{re.escape(model.name)}[-_]{re.escape(svc)}[-_]\d+", n) for n in names)}


def settle_routes(model: Model, timeout: float = ROUTE_SETTLE_SECONDS,
                  services: set[str] | None = None) -> list[health.Check]:
    """Probe the HTTPS endpoints until Traefik routes each of them, or ``timeout``.

    Only the services in ``services`` (all when None): a container that was already running
    keeps its route, so an ``up`` that changed nothing waits for nothing.
    Returns the endpoints that still fail. Not a failure of ``up``: the containers are
    healthy, and `invoke health` is where a wrong route is reported. Only "Traefik answered
    but has no route yet" is waited for; a refused connection or a TLS error is not.
    """
    from .preflight import root_ca

    ca = root_ca(model)
    pending = [ep for ep in health.endpoints(model)
               if ep.kind == "https" and (services is None or ep.service in services)]
    deadline = time.monotonic() + timeout
    last: dict[str, health.Check] = {}
    while pending:
        with ThreadPoolExecutor(max_workers=len(pending)) as pool:
            checks = list(pool.map(lambda ep: health.probe(ep, ca), pending))
        last.update((c.target, c) for c in checks)
        pending = [ep for ep, c in zip(pending, checks, strict=True) if _not_routed_yet(c)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return sorted((c for c in last.values() if not c.ok), key=health.Check.sort_key)


def up(model: Model, timeout: int) -> None:
    res = runner.run(_compose(model, "up", "-d", "--wait", "--wait-timeout", str(timeout)),
                     cwd=model.project_dir, timeout=timeout + 120)
    if res.ok:
        started = started_services(model, res.stdout + res.stderr)
        gateway = {svc for svc in model.services if health.published_port(model, svc, 443)}
        if started & gateway:
            settle_routes(model)  # Traefik itself restarted: every route is being rebuilt
        elif started:
            settle_routes(model, services=started)
        return
    hint = engine_hint(res.stderr)
    if hint:
        raise ToolkitError(f"docker compose up failed: {res.stderr.strip().splitlines()[-1]}", fix=hint)
    details = diagnose(model)
    summary = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    raise ToolkitError(
        f"the stack did not become healthy within {timeout} s ({summary})"
        + ("\n" + "\n".join(details) if details else ""),
        fix="fix the service(s) above, then `invoke up` again; `invoke logs SERVICE` shows more",
    )


def down(model: Model, volumes: bool) -> None:
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    res = runner.run(_compose(model, *args), cwd=model.project_dir, timeout=300)
    if not res.ok:
        raise ToolkitError(f"docker compose down failed: {res.stderr.strip()}",
                           fix=engine_hint(res.stderr) or "see the message above")


def logs(model: Model, service: str, tail: int, follow: bool) -> int:
    service = "" if service == "all" else service
    if service and service not in model.services:
        raise ToolkitError(f"no service named {service!r}",
                           fix=f"choose one of: all, {', '.join(sorted(model.services))}")
    args = ["logs", "--no-color", "--tail", str(tail), *(["--follow"] if follow else [])]
    args += [service] if service else []
    return runner.stream(_compose(model, *args), cwd=model.project_dir)
