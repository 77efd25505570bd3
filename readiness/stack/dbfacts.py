"""PostgreSQL and Patroni facts, derived from the rendered model (no list of images in code
beyond the fallbacks named below).

* A **Patroni cluster** is a set of services whose environment names a DCS of the stack:
  ``ETCD3_HOSTS``/``ETCD_HOSTS`` (Spilo) or ``PATRONI_ETCD3_HOSTS``/``PATRONI_ETCD_HOSTS``
  (Patroni's own variables, and the ``_HOST`` singulars), holding ``host:port`` pairs; a host
  that is a service of the stack (by name, ``hostname``, ``container_name`` or network alias)
  is that cluster's DCS. Members sharing a DCS and a scope (``SCOPE``/``PATRONI_SCOPE``) form
  one cluster.
* The **PostgreSQL major an image runs** comes from the image itself when the engine has it
  (``PG_MAJOR`` in its environment: the official images, exactly that major; otherwise a
  ``/usr/lib/postgresql/<N>/bin`` entry of its ``PATH``: Spilo, which also ships older majors
  and runs the one the data was written by), else from its name (``spilo-<N>``,
  ``postgres:<N>``, ``postgis/postgis:<N>-...``, ``...timescaledb...:...pg<N>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .model import Model

#: Environment variables that hold a Patroni member's DCS endpoints (Spilo's and Patroni's).
DCS_VARIABLES = ("ETCD3_HOSTS", "ETCD3_HOST", "ETCD_HOSTS", "ETCD_HOST", "PATRONI_ETCD3_HOSTS",
                 "PATRONI_ETCD3_HOST", "PATRONI_ETCD_HOSTS", "PATRONI_ETCD_HOST")
SCOPE_VARIABLES = ("SCOPE", "PATRONI_SCOPE")
_HOST_PORT = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]*):\d+")


@dataclass(frozen=True)
class Cluster:
    scope: str
    members: tuple[str, ...]
    dcs: tuple[str, ...]


def environment(spec: dict[str, Any]) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # Compose renders a mapping; a list is accepted for hand-made models
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def service_names(model: Model) -> dict[str, str]:
    """Every name a service answers to on its networks -> the service."""
    out: dict[str, str] = {}
    for svc, spec in sorted(model.services.items()):
        names = [svc, spec.get("hostname"), spec.get("container_name")]
        for net in (spec.get("networks") or {}).values():
            names += list((net or {}).get("aliases") or [])
        for name in names:
            if name:
                out.setdefault(str(name), svc)
    return out


def clusters(model: Model) -> list[Cluster]:
    names = service_names(model)
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for svc, spec in sorted(model.services.items()):
        env = environment(spec)
        hosts = {m.group(1) for var in DCS_VARIABLES for m in _HOST_PORT.finditer(env.get(var, ""))}
        dcs = tuple(sorted({names[h] for h in hosts if h in names} - {svc}))
        if not dcs:
            continue
        scope = next((env[v] for v in SCOPE_VARIABLES if env.get(v)), "")
        groups.setdefault((scope, dcs), []).append(svc)
    return [Cluster(scope, tuple(members), dcs) for (scope, dcs), members in sorted(groups.items())]


@dataclass(frozen=True)
class Major:
    """The PostgreSQL major an image runs, and whether it runs older data too (Spilo)."""

    newest: int
    exact: bool
    source: str  # where it was read: "PG_MAJOR of the image", "its name", ...

    def runs(self, data_major: int) -> bool:
        return data_major == self.newest or (not self.exact and data_major < self.newest)


_NAME_PATTERNS = (
    (re.compile(r"(?:^|/)spilo-(\d+)(?::|@|$)"), False),
    (re.compile(r"(?:^|/)postgres:(\d+)(?:[.-]|$)"), True),
    (re.compile(r"(?:^|/)postgis:(\d+)(?:[.-]|$)"), True),
    (re.compile(r"timescaledb[^:/]*:[^@]*?pg(\d+)"), True),
)


def major(image: str, image_env: list[str] | None) -> Major | None:
    """What PostgreSQL major ``image`` runs; ``image_env`` is its ``Config.Env`` when the engine has it."""
    env = dict(item.split("=", 1) for item in image_env or [] if "=" in item)
    if env.get("PG_MAJOR", "").isdigit():
        return Major(int(env["PG_MAJOR"]), True, "PG_MAJOR of the image")
    m = re.search(r"/usr/lib/postgresql/(\d+)/bin", env.get("PATH", ""))
    if m:
        return Major(int(m.group(1)), False, "the PATH of the image")
    for pattern, exact in _NAME_PATTERNS:
        m = pattern.search(image)
        if m:
            return Major(int(m.group(1)), exact, "its name")
    return None


def data_major(pg_version: str | None) -> int | None:
    """``"17"`` -> 17, ``"9.6"`` -> 9 (versions before 10 had two-part majors; any old one is older)."""
    m = re.match(r"(\d+)", pg_version or "")
    return int(m.group(1)) if m else None
