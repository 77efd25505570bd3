"""What a verification is made of: the verdicts, the context a probe works in, the registry.

A *probe* proves that one service does its job, through the interface its users use, and
returns one :class:`Verdict` per thing it proved (or failed to). A service asks for a probe
with ``x-readiness.verify: {probe: <kind>, ...}`` (docs/x-readiness.md): the list of what is
verified is the stack's own, not a second list here.

A probe never raises: :meth:`Context.attempt` turns any exception into a failing verdict that
names what was tried and what came back, so one broken service never hides the others.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from ...errors import ToolkitError
from ...prepare import secrets as secretslib
from ...stack import compose, ports
from ...stack.model import Model
from ...system import runner
from .. import httpclient

#: Every object a probe creates carries this prefix, and is removed before the probe ends.
PREFIX = "readiness-verify"
#: Seconds one request (or one command) of a probe may take.
TIMEOUT = 5.0


@dataclass(frozen=True)
class Verdict:
    """One thing proved about a service, or not: what was tried, what came back, the fix."""

    service: str
    check: str
    ok: bool
    tried: str
    got: str
    fix: str = ""
    seconds: float = 0.0

    def sort_key(self) -> tuple[str, str]:
        return self.service, self.check


class Failed(Exception):
    """A probe step came back with something other than what a working service answers.

    ``got`` is what came back (never a secret); ``fix`` overrides the probe's general fix.
    """

    def __init__(self, got: str, fix: str = "") -> None:
        super().__init__(got)
        self.got, self.fix = got, fix


def expect(condition: Any, got: str, fix: str = "") -> None:
    """Raise :class:`Failed` with ``got`` unless ``condition`` holds."""
    if not condition:
        raise Failed(got, fix)


def short(text: Any, limit: int = 200) -> str:
    """One line of at most ``limit`` characters (answers can be whole HTML pages)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Context:
    """What every probe may use: the model, the HTTPS client, the secrets, the engine."""

    model: Model
    ca: Path
    #: When the stack was last (re)started, if this run follows a start (``invoke up``): what a
    #: service observed before it (a Prometheus scrape of a container not yet up) is not
    #: evidence against the stack now.
    since: float | None = None
    #: Probe object names end with this, so two runs never touch each other's objects.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    # -------------------------------------------------------------- names and addresses

    def name(self, kind: str = "") -> str:
        """``readiness-verify-<kind>-<token>``: lower case, digits and dashes (valid for S3
        buckets, OpenSearch indices and Valkey keys alike)."""
        return "-".join(p for p in (PREFIX, kind, self.token) if p)

    @cached_property
    def https_entry(self) -> tuple[str, int]:
        return ports.https_entry(self.model)

    def url(self, host: str, path: str = "/") -> str:
        """The URL a user types for ``host`` (the port only when it is not 443)."""
        return ports.https_url(host, self.https_entry[1], path)

    @cached_property
    def http(self):
        """The ``requests`` session of every HTTPS probe (:mod:`readiness.run.httpclient`)."""
        return httpclient.session(self.https_entry[0], self.ca)

    def pool(self) -> httpclient.PinnedPoolManager:
        """A urllib3 pool manager with the same pinning, for libraries built on urllib3."""
        return httpclient.PinnedPoolManager(self.https_entry[0], self.ca, timeout=urllib3_timeout(), retries=False)

    def host(self, service: str, router: str | None = None) -> str:
        """The hostname users reach ``service`` by: ``router``'s, the one ``health`` names, or the first."""
        routers = self.model.routers.get(service, {})
        router = router or (self.model.x(service).get("health") or {}).get("router")
        hosts = routers.get(router, []) if router else self.model.routed_hosts.get(service, [])
        if not hosts:
            raise Failed(f"{service} has no Traefik router with a Host() rule",
                         fix=f"give {service} a traefik.http.routers.<name>.rule=Host(`...`) label")
        return hosts[0]

    def published(self, service: str, container_port: int) -> tuple[str, int]:
        found = ports.published_port(self.model, service, container_port)
        if not found:
            raise Failed(f"{service} publishes no host port for container port {container_port}",
                         fix=f"publish it in {service}'s `ports:` (on 127.0.0.1)")
        return found

    # -------------------------------------------------------------- credentials

    def secret(self, name: str) -> str:
        """The value of a file-backed secret (never printed; an htpasswd secret's plaintext)."""
        spec = next((s for s in secretslib.specs(self.model) if s.name == name), None)
        if spec is None:
            raise Failed(f"the stack has no secret {name}", fix="declare it in the top-level `secrets:`")
        path = spec.sidecar or spec.path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise Failed(f"cannot read {self.model.relpath(path)}: {exc.strerror}",
                         fix="run `invoke secrets` (it creates what is missing), or restore the file") from None

    def login(self, service: str) -> tuple[str, str]:
        """(user, password) from ``x-readiness.login``: the stack's own credentials."""
        login = self.model.x(service).get("login") or {}
        if not login.get("secret"):
            raise Failed(f"{service} declares no x-readiness.login.secret", fix="see docs/x-readiness.md")
        if login.get("user"):
            user = str(login["user"])
        elif login.get("user-secret"):
            user = self.secret(str(login["user-secret"]))
        else:
            user = str(self.model.secret_x(str(login["secret"])).get("htpasswd-user", "admin"))
        return user, self.secret(str(login["secret"]))

    # -------------------------------------------------------------- files and the engine

    def host_path(self, service: str, container_path: str) -> Path:
        """Where a file a service reads through a bind mount lies on this machine."""
        target = PurePosixPath(container_path)
        for vol in self.model.services.get(service, {}).get("volumes") or []:
            if not isinstance(vol, dict) or vol.get("type") != "bind":
                continue
            mount = PurePosixPath(str(vol.get("target", "")))
            if target == mount or mount in target.parents:
                return Path(str(vol["source"])) / target.relative_to(mount)
        raise Failed(f"{container_path} is not bind-mounted into {service}")

    def exec(self, service: str, *argv: str, timeout: float = 30) -> str:
        """``docker compose exec -T service argv...``: stdout, or :class:`Failed` with stderr."""
        assert self.model.cli is not None
        res = runner.run(compose.command(self.model.cli.argv, self.model.project_dir, "exec", "-T", service, *argv),
                         cwd=self.model.project_dir, timeout=timeout)
        if not res.ok:
            raise Failed(f"`{' '.join(argv[:3])}` in {service} exited {res.returncode}: "
                         f"{short(res.stderr or res.stdout)}")
        return res.stdout

    # -------------------------------------------------------------- verdicts

    def attempt(self, service: str, check: str, tried: str, step: Callable[[], str], fix: str) -> Verdict:
        """Run one step of a probe: its return value is what came back; any exception fails it."""
        t0 = time.monotonic()
        try:
            got = step()
            ok, why = True, ""
        except Failed as exc:
            ok, got, why = False, exc.got, exc.fix
        except ToolkitError as exc:
            ok, got, why = False, exc.message, exc.fix
        except Exception as exc:  # noqa: BLE001 - whatever a client library raises is what came back
            ok, got, why = False, describe(exc), ""
        return Verdict(service, check, ok, tried, short(got, 300), "" if ok else (why or fix),
                       round(time.monotonic() - t0, 3))


def describe(exc: BaseException) -> str:
    """An exception as what came back: connection refused, a timeout, a TLS error..."""
    text = f"{type(exc).__name__}: {exc}"
    for marker in ("certificate verify failed", "Connection refused", "hostname mismatch", "timed out",
                   "Name or service not known", "NOAUTH", "WRONGPASS", "NOREPLICAS", "OOM",
                   "read-only transaction", "password authentication failed"):
        if marker in text:
            start = text.find(marker)
            return short(text[max(0, start - 40):start + 160])
    return short(re.sub(r"\s+", " ", text))


def urllib3_timeout():
    import urllib3

    return urllib3.Timeout(connect=TIMEOUT, read=TIMEOUT)


#: kind -> (probe, what it proves).
Probe = Callable[[Context, list[str]], list[Verdict]]
PROBES: dict[str, tuple[Probe, str]] = {}


def probe(kind: str, summary: str) -> Callable[[Probe], Probe]:
    """Register ``fn`` as the probe of ``x-readiness.verify.probe: kind``.

    A probe gets every service of its kind at once (most kinds have one service; the members
    of a Patroni cluster are verified together, from one view of the cluster).
    """
    def register(fn: Probe) -> Probe:
        PROBES[kind] = (fn, summary)
        return fn
    return register


def probe_each(kind: str, summary: str) -> Callable[[Callable[[Context, str], list[Verdict]]], Probe]:
    """Register a probe that verifies each service of its kind on its own."""
    def register(fn: Callable[[Context, str], list[Verdict]]) -> Probe:
        def each(ctx: Context, services: list[str]) -> list[Verdict]:
            return [v for svc in services for v in fn(ctx, svc)]
        each.__doc__ = fn.__doc__
        PROBES[kind] = (each, summary)
        return each
    return register


def as_doc(verdicts: list[Verdict], unverified: list[str]) -> dict[str, Any]:
    """The ``--json`` document (schemas/verify.schema.json)."""
    return {"ok": bool(verdicts) and all(v.ok for v in verdicts),
            "verdicts": [asdict(v) for v in sorted(verdicts, key=Verdict.sort_key)],
            "unverified": sorted(unverified)}
