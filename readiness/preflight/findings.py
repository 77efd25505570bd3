"""Findings: what preflight and validate report, in a stable order with stable ids.

Each check is a pure function returning findings; this module sorts and prints them. The
same input always gives byte-identical output, as text for people and ``--json`` for
machines. Ids are listed in :data:`CATALOG`; the runbook has one troubleshooting row per id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..enums import TextEnum


class Severity(TextEnum):
    """How much a finding matters: an error blocks the boot (exit 1), a warning does not."""

    ERROR = "error"
    WARNING = "warning"


#: The two severities by their short names, as every check writes them.
ERROR, WARNING = Severity.ERROR, Severity.WARNING
_SEVERITY_ORDER = {ERROR: 0, WARNING: 1}

#: Every finding id, with a one-line summary (the runbook's troubleshooting table mirrors it).
CATALOG: dict[str, str] = {
    "docker.cli-missing": "The Docker CLI is not installed",
    "docker.engine-unreachable": "The Docker engine does not answer",
    "engine.no-start-interval": "The engine predates Docker 25: healthcheck.start_interval is dropped by `invoke up`",
    "engine.remote": "The engine runs on another machine: bind mounts, owners and ports cannot be checked",
    "engine.socket-mismatch": "A service mounts a Docker socket that is not this engine's (rootless: DOCKER_SOCKET)",
    "engine.ulimit": "The engine cannot apply a service's ulimits (no CAP_SYS_RESOURCE, e.g. rootless): runc refuses",
    "compose.unsupported": "Docker Compose is missing, v1, or older than 2.20 (no include:)",
    "compose.invalid": "docker compose config fails",
    "compose.warning": "docker compose config prints a warning",
    "compose.unescaped-dollar": "A $VAR in command/entrypoint/healthcheck that Compose would interpolate",
    "compose.unpinned-image": "An image without a pinned tag or digest",
    "env.file-missing": ".env does not exist",
    "env.malformed": "A line of .env cannot be parsed",
    "env.required-unset": "A required variable is unset or empty",
    "env.example-credential": ".env.example holds something that looks like a credential",
    "secret.missing": "A secret file is missing",
    "secret.empty": "A secret file is empty",
    "secret.unreadable": "A secret file is not readable by the container user that mounts it",
    "secret.tracked": "git tracks a file under secrets/",
    "secret.baked-missing": "A secret baked into a service's data is missing or empty while that data exists",
    "secret.changed-after-init": "A baked secret differs from the value its service initialised its data with",
    "state.dcs-mismatch": "Patroni members' data and their DCS's (etcd) data disagree: one is empty",
    "state.pg-version": "A data directory was written by a PostgreSQL major its image cannot run",
    "project.other-directory": "Containers of this Compose project were started from another directory",
    "network.mismatch": "An external network exists with another driver or scope, or as internal",
    "mount.missing": "A read-only bind-mount source (configuration) does not exist",
    "mount.wrong-kind": "A read-only bind-mount source is a directory where the service expects a file",
    "resources.cpus": "A service's CPU limit exceeds the CPUs the engine has",
    "resources.memory": "The stack's memory limits add up to more than the engine has",
    "resources.heap": "A JVM heap does not fit (or barely fits) its container's memory limit",
    "disk.engine": "Little free space where the engine keeps images and containers",
    "disk.data": "Little free space on the data directories' filesystem",
    "image.platform": "An image the engine has is built for another architecture",
    "desktop.file-sharing": "The project directory is not shared with Docker Desktop",
    "host.selinux-relabel": "SELinux is enforcing and a bind mount has no relabel option (:z)",
    "host.wsl-windows-drive": "The project lives on a Windows drive under WSL (/mnt/c): modes and owners do not stick",
    "cert.missing": "A TLS certificate file is missing",
    "cert.invalid": "The TLS certificate is invalid, expiring, or does not cover a routed hostname",
    "dir.missing": "A bind-mount source directory is missing",
    "dir.not-writable": "A bind-mount directory is not writable by its container user",
    "dir.protected": "A variable (DATA_ROOT) puts a data directory on a system, home or project path",
    "network.missing": "An external network does not exist",
    "port.in-use": "A published host port is already taken by another process or container",
    "port.privileged": "A published port is below the lowest port a rootless engine may publish",
    "host.max-map-count": "vm.max_map_count is below what OpenSearch needs",
}


@dataclass(frozen=True)
class Finding:
    """One thing preflight found: a stable id, how bad it is, what and where, and the fix.

    ``variable`` names the variable the finding is about, when it is about one: findings are
    de-duplicated by such data (:mod:`readiness.preflight.table`), never by their text. It is not output.
    """

    id: str
    severity: Severity
    message: str
    fix: str
    service: str = ""
    file: str = ""
    variable: str = field(default="", compare=False, repr=False)

    def sort_key(self) -> tuple:
        return (_SEVERITY_ORDER.get(self.severity, 9), self.id, self.service, self.file, self.message)

    def as_doc(self) -> dict[str, str]:
        """The finding as ``--json`` shows it (schemas/preflight.schema.json)."""
        return {"id": self.id, "severity": self.severity, "message": self.message, "fix": self.fix,
                "service": self.service, "file": self.file}


def sort(findings: list[Finding]) -> list[Finding]:
    unique = {f.sort_key(): f for f in findings}
    return [unique[k] for k in sorted(unique)]


def blocking(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def to_doc(findings: list[Finding]) -> dict:
    """The ``--json`` document (schemas/preflight.schema.json)."""
    ordered = sort(findings)
    return {
        "ok": not blocking(ordered),
        "errors": sum(f.severity == ERROR for f in ordered),
        "warnings": sum(f.severity == WARNING for f in ordered),
        "findings": [f.as_doc() for f in ordered],
    }


def to_json(findings: list[Finding]) -> str:
    return json.dumps(to_doc(findings), indent=2, sort_keys=True) + "\n"


def to_text(findings: list[Finding], title: str = "preflight", out=None) -> str:
    """Findings for people; ``out`` (an :class:`readiness.output.Output`) adds colour on a terminal."""
    paint = out.paint if out is not None else (lambda text, style: text)
    symbol = out.symbol if out is not None else (lambda style: "")
    ordered = sort(findings)
    if not ordered:
        return f"{symbol('ok')}{title}: {paint('ok, nothing blocks boot', 'ok')}\n"
    lines = []
    for f in ordered:
        where = " ".join(x for x in (f"[{f.service}]" if f.service else "", f.file) if x)
        head = f"{f.severity.upper():7} {f.id:28} {where}".rstrip()
        lines.append(symbol(f.severity) + paint(head, f.severity))
        lines.append(f"        {f.message}")
        lines.append(f"        fix: {f.fix}")
    errors = sum(f.severity == ERROR for f in ordered)
    warnings = len(ordered) - errors
    verdict = "boot is blocked" if errors else "nothing blocks boot"
    lines.append(f"{title}: {errors} error(s), {warnings} warning(s): " + paint(verdict, "error" if errors else "ok"))
    return "\n".join(lines) + "\n"
