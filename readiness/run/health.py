"""Is the stack healthy? Two layers, probed concurrently, each failure with its reason.

1. Containers: state and Docker health of every service (``docker compose ps --format json``),
   with the last healthcheck output when one is unhealthy.
2. Endpoints, from the host as a user reaches them: each HTTP service through Traefik at
   ``https://<Host() of its router><x-readiness.health.path>``, TLS verified against
   ``rootCA.pem``, with the name pinned inside the client to the address Traefik's port is
   published on (``BIND_ADDRESS``; 127.0.0.1 for a wildcard), so ``*.localhost`` need not
   resolve on the host -- the pinned client of :mod:`.httpclient`, the one ``invoke verify``
   uses; TCP services at their published address and port.

``wait`` retries (:func:`readiness.system.retry.poll`, bounded by a timeout) until every check
passes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from ..enums import TextEnum
from ..errors import ToolkitError
from ..stack import compose, ports
from ..stack.model import Model
from ..system import runner
from ..system.retry import poll


class CheckKind(TextEnum):
    """What a health check looks at: a container's state, an HTTPS endpoint through Traefik, a TCP port."""

    CONTAINER = "container"
    HTTPS = "https"
    TCP = "tcp"


_KIND_ORDER = {CheckKind.CONTAINER: 0, CheckKind.HTTPS: 1, CheckKind.TCP: 2}


@dataclass(frozen=True)
class Check:
    service: str
    kind: CheckKind
    target: str
    ok: bool
    detail: str

    def sort_key(self) -> tuple:
        return (self.service, _KIND_ORDER.get(self.kind, 9), self.target)


# ------------------------------------------------------------------ containers


def _run_ps(cli_argv: tuple[str, ...], project_dir: Path) -> runner.Result:
    return runner.run(compose.command(cli_argv, project_dir, "ps", "--all", "--format", "json"),
                      cwd=project_dir, timeout=60)


def ps(model: Model) -> list[dict]:
    """Containers of the project as Compose reports them (all states)."""
    assert model.cli is not None
    res = _run_ps(model.cli.argv, model.project_dir)
    if not res.ok:
        raise ToolkitError(f"docker compose ps failed: {res.stderr.strip()}",
                           fix="check that the Docker engine runs (`docker info`)")
    return parse_ps(res.stdout)


def ps_command(cli_argv: tuple[str, ...], project_dir: Path) -> list[dict] | None:
    """``ps`` before the model is known (same command as :func:`ps`); None when it fails."""
    try:
        res = _run_ps(cli_argv, project_dir)
    except ToolkitError:
        return None
    return parse_ps(res.stdout) if res.ok else None


def parse_ps(stdout: str) -> list[dict]:
    """``docker compose ps --format json``: a JSON array (old) or one object per line (new)."""
    text = stdout.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def last_health_output(container: str) -> str:
    res = runner.run(["docker", "inspect", "--format", "{{json .State.Health}}", container], timeout=30)
    if not res.ok:
        return ""
    try:
        log = (json.loads(res.stdout) or {}).get("Log") or []
    except json.JSONDecodeError:
        return ""
    if not log:
        return ""
    last = log[-1]
    output = " ".join(str(last.get("Output", "")).split())
    return f"exit {last.get('ExitCode')}: {output[:300]}"


def one_shot(model: Model, service: str) -> bool:
    """A service meant to run once and exit 0: another service waits for it to complete."""
    for spec in model.services.values():
        dep = (spec.get("depends_on") or {}).get(service) if isinstance(spec.get("depends_on"), dict) else None
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully":
            return True
    return False


def container_checks(model: Model, containers: list[dict]) -> list[Check]:
    by_service: dict[str, dict] = {}
    for c in containers:
        by_service.setdefault(c.get("Service", ""), c)
    out = []
    for svc in sorted(model.services):
        c = by_service.get(svc)
        if c is None:
            out.append(Check(svc, CheckKind.CONTAINER, svc, False, "no container (not started: run `invoke up`)"))
            continue
        state, health = c.get("State", ""), c.get("Health", "")
        name = c.get("Name", svc)
        if one_shot(model, svc):
            ok = state == "exited" and int(c.get("ExitCode", 1)) == 0
            # A one-shot that never ran (its dependencies failed) is "created" with ExitCode 0:
            # do not print "exit code 0" for it, which reads like success.
            detail = ("completed" if ok else f"exited, exit code {c.get('ExitCode')}" if state == "exited"
                      else f"container {state}, has not run to completion")
        elif state != "running":
            ok, detail = False, f"container {state}" + (f", exit code {c.get('ExitCode')}" if state == "exited" else "")
        elif health in ("", None):
            ok, detail = True, "running (no healthcheck)"
        elif health == "healthy":
            ok, detail = True, "healthy"
        else:
            ok = False
            detail = f"container {health}"
            output = last_health_output(name) if health == "unhealthy" else ""
            if output:
                detail += f" (last healthcheck {output})"
        out.append(Check(svc, CheckKind.CONTAINER, name, ok, detail))
    return out


# ------------------------------------------------------------------ endpoints


@dataclass(frozen=True)
class Endpoint:
    service: str
    kind: CheckKind  # HTTPS or TCP
    host: str  # the name a user types (HTTPS), or the address (TCP)
    port: int
    path: str = "/"
    expect: tuple[int, ...] = (200,)
    address: str = "127.0.0.1"  # where the host port is published (what the probe connects to)

    @property
    def target(self) -> str:
        if self.kind == CheckKind.HTTPS:
            return f"https://{self.host}:{self.port}{self.path}"
        return f"{self.host}:{self.port}"


def endpoints(model: Model) -> list[Endpoint]:
    out = []
    address, port443 = ports.https_entry(model)
    for svc in sorted(model.services):
        spec = model.x(svc).get("health") or {}
        if "path" in spec:
            expect = tuple(int(s) for s in spec.get("expect", [200]))
            routers = model.routers.get(svc, {})
            hosts = routers.get(spec["router"], []) if "router" in spec else model.routed_hosts.get(svc, [])
            for host in hosts[:1]:
                out.append(Endpoint(svc, CheckKind.HTTPS, host, port443, str(spec["path"]), expect, address))
        if "tcp" in spec:
            found = ports.published_port(model, svc, int(spec["tcp"]))
            if found:
                out.append(Endpoint(svc, CheckKind.TCP, found[0], found[1], address=found[0]))
    return out


def preload() -> None:
    """Import the HTTP client and retry library now (callers overlap this with subprocesses)."""
    import requests  # noqa: F401
    import tenacity  # noqa: F401

    from . import httpclient  # noqa: F401


def probe(ep: Endpoint, ca: Path, timeout: float = 5.0) -> Check:
    if ep.kind == CheckKind.TCP:
        try:
            with socket.create_connection((ep.host, ep.port), timeout=timeout):
                return Check(ep.service, CheckKind.TCP, ep.target, True, "accepting connections")
        except OSError as exc:
            return Check(ep.service, CheckKind.TCP, ep.target, False, f"connection failed: {exc.strerror or exc}")
    import requests

    from . import httpclient

    try:
        # The name goes in the URL (SNI, certificate check); the pinned client connects to the
        # address Traefik's port is published on. The Host header is the bare name users type.
        session = httpclient.session(ep.address, ca)
        resp = session.get(f"https://{ep.host}:{ep.port}{ep.path}", headers={"Host": ep.host},
                           timeout=timeout, allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        return Check(ep.service, CheckKind.HTTPS, ep.target, False, f"TLS error: {_short(exc)}")
    except requests.exceptions.ConnectionError as exc:
        return Check(ep.service, CheckKind.HTTPS, ep.target, False, f"connection refused or reset: {_short(exc)}")
    except requests.exceptions.Timeout:
        return Check(ep.service, CheckKind.HTTPS, ep.target, False, f"no answer within {timeout:.0f} s")
    except OSError as exc:
        return Check(ep.service, CheckKind.HTTPS, ep.target, False, f"cannot probe: {exc}")
    if resp.status_code in ep.expect:
        return Check(ep.service, CheckKind.HTTPS, ep.target, True, f"HTTP {resp.status_code}")
    return Check(ep.service, CheckKind.HTTPS, ep.target, False,
                 f"HTTP {resp.status_code} (expected {', '.join(map(str, ep.expect))})")


def _short(exc: Exception) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "Connection refused", "hostname mismatch", "Name or service"):
        if marker in text:
            start = text.find(marker)
            return text[start:start + 120].split("'")[0].rstrip(" ()\"")
    return text[:160]


# ------------------------------------------------------------------ together


def check_once(model: Model, ca: Path, containers: list[dict] | None = None) -> list[Check]:
    """One round of every check; ``containers`` is a ``ps`` result already in hand."""
    eps = endpoints(model)
    with ThreadPoolExecutor(max_workers=max(2, len(eps) + 1)) as pool:
        listed = pool.submit(ps, model) if containers is None else None
        probes = [pool.submit(probe, ep, ca) for ep in eps]
        checks = container_checks(model, listed.result() if listed else containers or [])
        checks += [f.result() for f in probes]
    return sorted(checks, key=Check.sort_key)


def check(model: Model, ca: Path, *, wait: bool = False, timeout: float = 120.0, interval: float = 0.5,
          on_attempt: Callable[[list[Check]], None] | None = None,
          containers: list[dict] | None = None) -> list[Check]:
    """All checks; with ``wait``, retried with backoff (capped at ``interval``) until they pass.

    ``containers`` (a ``ps`` result already in hand) serves the first round only.
    """
    if not wait:
        return check_once(model, ca, containers)
    from tenacity import wait_exponential

    first = [containers]

    def attempt() -> list[Check]:
        checks = check_once(model, ca, first.pop() if first else None)
        if on_attempt:
            on_attempt(checks)
        return checks

    return poll(attempt, lambda checks: all(c.ok for c in checks), wait=wait_exponential(multiplier=0.05, max=interval),
                timeout=timeout)


def to_text(checks: list[Check], out=None) -> str:
    """A table for people (``out``, a :class:`readiness.output.Output`, fits it to the terminal)."""
    from ..output import Output

    out = out or Output()
    rows = [[c.service, c.kind, "healthy" if c.ok else "UNHEALTHY", f"{c.target}: {c.detail}"] for c in checks]
    table = out.table(["SERVICE", "CHECK", "STATUS", "DETAIL"], rows, ["ok" if c.ok else "error" for c in checks])
    bad = sum(not c.ok for c in checks)
    summary = f"health: {len(checks) - bad}/{len(checks)} checks pass" + ("" if not bad else f", {bad} failing")
    return table + out.paint(summary, "error" if bad or not checks else "ok") + "\n"


def to_doc(checks: list[Check]) -> dict:
    return {"ok": bool(checks) and all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def to_json(checks: list[Check]) -> str:
    return json.dumps(to_doc(checks), indent=2, sort_keys=True) + "\n"


def changes(before: list[Check] | None, after: list[Check]) -> list[Check]:
    """The checks whose verdict or detail differs from the previous attempt (all on the first)."""
    old = {(c.service, c.kind, c.target): (c.ok, c.detail) for c in before or []}
    return [c for c in after if old.get((c.service, c.kind, c.target)) != (c.ok, c.detail)]
