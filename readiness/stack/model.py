"""The rendered stack (:class:`Model`), and the check of its ``x-readiness`` fields.

:func:`readiness.stack.compose.load` renders the stack with Compose and builds the model;
every other part of the toolkit reads the stack through it: services, secrets, networks, bind
mounts, ports, labels and routers. The per-service facts Compose has no field for are read
from the ``x-readiness`` extension fields (``docs/x-readiness.md``) and checked once, when the
model is loaded (:func:`validate`), so that a typo ends in a message naming the service and
the key instead of a traceback deep inside a task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from .sources import COMPOSE_FILE, raw_services

#: Docker's default capability set (moby's oci/caps/defaults.go): what a container keeps
#: unless the service drops it.
DEFAULT_CAPS = frozenset({"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                          "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"})


@dataclass(frozen=True)
class ComposeCLI:
    """How to call Compose on this machine: the v2 plugin or a standalone v2 binary."""

    argv: tuple[str, ...]
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


@dataclass
class Model:
    """The rendered stack plus what the toolkit needs to reason about it."""

    project_dir: Path
    rendered: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    cli: ComposeCLI | None = None
    missing_required: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.rendered.get("name", ""))

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.rendered.get("services") or {}

    @property
    def secrets(self) -> dict[str, dict[str, Any]]:
        return self.rendered.get("secrets") or {}

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        return self.rendered.get("networks") or {}

    def x(self, service: str) -> dict[str, Any]:
        """The ``x-readiness`` field of a service (empty when absent)."""
        return self.services.get(service, {}).get("x-readiness") or {}

    def secret_x(self, name: str) -> dict[str, Any]:
        return self.secrets.get(name, {}).get("x-readiness") or {}

    @cached_property
    def secret_consumers(self) -> dict[str, list[str]]:
        """Secret name -> sorted services that mount it."""
        out: dict[str, list[str]] = {name: [] for name in self.secrets}
        for svc, spec in sorted(self.services.items()):
            for ref in spec.get("secrets") or []:
                src = ref.get("source") if isinstance(ref, dict) else ref
                out.setdefault(src, []).append(svc)
        return out

    def service_user(self, service: str) -> tuple[int, int] | None:
        """uid:gid the service's process runs as (``x-readiness.user`` or ``user:``)."""
        value = self.x(service).get("user") or self.services.get(service, {}).get("user")
        return parse_user(value)

    def data_owner(self, service: str) -> tuple[int, int] | None:
        return parse_user(self.x(service).get("data-owner")) or self.service_user(service)

    def data_mode(self, service: str) -> int:
        """``x-readiness.data-mode`` (octal text, default 0750) of the service's data directories."""
        return int(str(self.x(service).get("data-mode", "0750")), 8)

    def has_cap(self, service: str, cap: str) -> bool:
        """Whether the service's process keeps capability ``cap`` (Docker's default set, then
        ``cap_drop``/``cap_add``). Decides, e.g., whether its root may bypass file modes."""
        spec = self.services.get(service, {})
        norm = {str(c).upper().removeprefix("CAP_") for c in spec.get("cap_add") or []}
        dropped = {str(c).upper().removeprefix("CAP_") for c in spec.get("cap_drop") or []}
        if spec.get("privileged") or "ALL" in norm or cap in norm:
            return True
        return cap in DEFAULT_CAPS and "ALL" not in dropped and cap not in dropped

    @property
    def helper_image(self) -> str:
        """The image of the toolkit's helper containers (top-level ``x-readiness.helper-image``)."""
        value = (self.rendered.get("x-readiness") or {}).get("helper-image")
        if not value:
            raise ToolkitError("the stack names no helper image",
                               where=f"{self.project_dir / COMPOSE_FILE} (x-readiness.helper-image)",
                               fix="add `x-readiness: {helper-image: ${HELPER_IMAGE:-busybox:1.37.0}}` at the top "
                               "level of docker-compose.yml")
        return str(value)

    def relpath(self, path: str | Path) -> str:
        p = Path(path)
        try:
            return str(p.relative_to(self.project_dir))
        except ValueError:
            return str(p)

    @cached_property
    def routers(self) -> dict[str, dict[str, list[str]]]:
        """Service -> Traefik router name -> hostnames of its ``Host(`...`)`` rule."""
        out: dict[str, dict[str, list[str]]] = {}
        for svc, spec in sorted(self.services.items()):
            for key, value in sorted((spec.get("labels") or {}).items()):
                m = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.rule", key)
                hosts = re.findall(r"Host\(\s*`([^`]+)`", str(value)) if m else []
                if hosts:
                    out.setdefault(svc, {})[m.group(1)] = sorted(set(hosts))
        return out

    @property
    def routed_hosts(self) -> dict[str, list[str]]:
        """Service -> every hostname its Traefik routers answer."""
        return {svc: sorted({h for hosts in r.values() for h in hosts}) for svc, r in self.routers.items()}

    @property
    def all_routed_hosts(self) -> list[str]:
        return sorted({h for hosts in self.routed_hosts.values() for h in hosts})


def parse_user(value: Any) -> tuple[int, int] | None:
    """``"472:0"`` -> (472, 0); ``"1000"`` -> (1000, 1000); anything else -> None."""
    if value is None:
        return None
    m = re.fullmatch(r"\s*(\d+)(?::(\d+))?\s*", str(value))
    if not m:
        return None
    uid = int(m.group(1))
    return uid, int(m.group(2)) if m.group(2) is not None else uid


_SERVICE_X_KEYS = {"user", "data-owner", "data-mode", "health", "docker-socket", "host-sysctl", "baked-secrets",
                   "login", "connect", "verify", "ulimit-fallback", "backup"}


def x_problems(model: Model) -> list[tuple[str, str]]:
    """(where, what) for every malformed ``x-readiness`` value of a service (docs/x-readiness.md).

    Checked once when the model is loaded, so that a typo ends in a message naming the service
    and the key instead of a traceback deep inside a task.
    """
    out: list[tuple[str, str]] = []
    for svc in sorted(model.services):
        raw = model.services[svc].get("x-readiness")
        where = f"services.{svc}.x-readiness"
        if raw is None:
            continue
        if not isinstance(raw, dict):
            out.append((where, "must be a mapping"))
            continue
        for key in sorted(set(raw) - _SERVICE_X_KEYS):
            out.append((f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_SERVICE_X_KEYS))})"))
        for key in ("user", "data-owner"):
            if key in raw and parse_user(raw[key]) is None:
                out.append((f"{where}.{key}", f"{raw[key]!r} is not uid[:gid] (numbers, e.g. \"472:0\")"))
        if "data-mode" in raw and not re.fullmatch(r"0?[0-7]{3}", str(raw["data-mode"])):
            out.append((f"{where}.data-mode", f"{raw['data-mode']!r} is not an octal mode such as \"0750\""))
        health = raw.get("health")
        if health is not None:
            if not isinstance(health, dict):
                out.append((f"{where}.health", "must be a mapping (path/expect/router or tcp)"))
            else:
                if "path" in health and not str(health["path"]).startswith("/"):
                    out.append((f"{where}.health.path", f"{health['path']!r} must start with /"))
                expect = health.get("expect", [200])
                if not isinstance(expect, list) or not all(isinstance(e, int) and 100 <= e <= 599 for e in expect):
                    out.append((f"{where}.health.expect", f"{expect!r} must be a list of HTTP statuses"))
                if "router" in health and health["router"] not in model.routers.get(svc, {}):
                    out.append((f"{where}.health.router", f"{health['router']!r} is not a Traefik router of {svc}"))
                if "tcp" in health and not (isinstance(health["tcp"], int) and 0 < health["tcp"] < 65536):
                    out.append((f"{where}.health.tcp", f"{health['tcp']!r} is not a port number"))
        sysctl = raw.get("host-sysctl")
        whole = isinstance(sysctl, dict) and all(type(v) is int for v in sysctl.values())
        if sysctl is not None and not whole:
            out.append((f"{where}.host-sysctl", "must map a kernel setting to a whole number"))
        baked = raw.get("baked-secrets")
        if baked is not None and not (isinstance(baked, list) and all(isinstance(b, str) for b in baked)):
            out.append((f"{where}.baked-secrets", "must be a list of secret names"))
        verify = raw.get("verify")
        if verify is not None and not (isinstance(verify, dict) and isinstance(verify.get("probe"), str)
                                       and all(isinstance(v, str | int | bool) for v in verify.values())):
            out.append((f"{where}.verify", "must be a mapping with a `probe` kind and plain option values "
                        "(e.g. {probe: valkey})"))
        fallback = raw.get("ulimit-fallback")
        if fallback is not None and not (isinstance(fallback, dict) and all(
                isinstance(name, str) and isinstance(lines, dict) and lines
                and all(isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
                        and isinstance(v, str | int) and not isinstance(v, bool) for k, v in lines.items())
                for name, lines in fallback.items())):
            out.append((f"{where}.ulimit-fallback", "must map a ulimit name to the .env lines that go with lowering "
                        "it (e.g. {memlock: {OPENSEARCH_MEMORY_LOCK: \"false\"}})"))
        backup = raw.get("backup")
        if backup is not None and not (isinstance(backup, dict) and set(backup) <= {"method", "default", "why"}
                                       and backup.get("method", "copy") in ("copy", "valkey")
                                       and isinstance(backup.get("default", True), bool)
                                       and isinstance(backup.get("why", ""), str)):
            out.append((f"{where}.backup", "must be a mapping of method (copy or valkey), default (true/false) and "
                        "why (text), e.g. {default: false, why: \"metrics: expendable\"}"))
        out += _shape_problems(model, f"{where}.login", raw.get("login"), _LOGIN_KEYS)
        out += _shape_problems(model, f"{where}.connect", raw.get("connect"), _CONNECT_KEYS)
    return out


#: ``x-readiness.login`` / ``connect`` keys (docs/x-readiness.md): key -> what its value is.
_LOGIN_KEYS = {"path": "path", "user": "text", "user-secret": "secret", "secret": "secret"}
_CONNECT_KEYS = {"url": "text", "port": "port", "secret": "secret"}


def _shape_problems(model: Model, where: str, value: Any, keys: dict[str, str]) -> list[tuple[str, str]]:
    """What is wrong with a ``login``/``connect`` mapping (``invoke urls`` reads them)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [(where, f"must be a mapping with some of: {', '.join(sorted(keys))}")]
    out = [(f"{where}.{k}", f"unknown key (known: {', '.join(sorted(keys))})") for k in sorted(set(value) - set(keys))]
    for key, kind in sorted(keys.items()):
        if key not in value:
            continue
        v = value[key]
        if kind == "port" and not (type(v) is int and 0 < v < 65536):
            out.append((f"{where}.{key}", f"{v!r} is not a port number"))
        elif kind != "port" and not isinstance(v, str):
            out.append((f"{where}.{key}", f"{v!r} must be a string"))
        elif kind == "path" and not v.startswith("/"):
            out.append((f"{where}.{key}", f"{v!r} must start with /"))
        elif kind == "secret" and v not in model.secrets:
            out.append((f"{where}.{key}", f"{v!r} is not a secret of the stack (top-level `secrets:`)"))
    return out


def validate(model: Model) -> None:
    """Raise the first malformed ``x-readiness`` value as a what/where/fix error."""
    problems = x_problems(model)
    if problems:
        where, what = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        file = raw_services(model.project_dir).get(where.split(".")[1], (COMPOSE_FILE, {}))[0]
        raise ToolkitError(f"malformed x-readiness value: {where}: {what}{more}", where=f"{file} ({where})",
                           fix="correct the value (docs/x-readiness.md lists every key and its form), then run again")
