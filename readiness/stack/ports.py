"""The stack's published ports, and where this machine reaches them.

One home for the rule that a port published on a wildcard address (``0.0.0.0``, ``::``, or
none given) is reached on the loopback address of its family (:data:`LOOPBACK`): preflight
asks whether something already holds a port, ``invoke health`` and ``invoke verify`` connect
to it, ``invoke urls`` prints it. Also here: Traefik's HTTPS entry point, the port every routed
URL carries, and the variable that sets each published port (read from the files as written,
so that a finding about a port can name the line of ``.env`` to change).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import sources
from .model import Model

#: Wildcard addresses -> the loopback address of their family: where this machine reaches a
#: port published on them.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def connect_address(host_ip: str) -> str:
    """Where to reach a port published on ``host_ip`` from this machine."""
    return LOOPBACK.get(host_ip, host_ip)


def published_port(model: Model, service: str, container_port: int) -> tuple[str, int] | None:
    """(address to connect to, host port) where ``service`` publishes ``container_port``."""
    for p in model.services.get(service, {}).get("ports") or []:
        if isinstance(p, dict) and int(p.get("target", 0)) == container_port and str(p.get("published", "")).isdigit():
            return connect_address(str(p.get("host_ip") or "")), int(p["published"])
    return None


def https_entry(model: Model) -> tuple[str, int]:
    """(address, host port) of Traefik's websecure entrypoint (container port 443)."""
    for svc in sorted(model.services):
        found = published_port(model, svc, 443)
        if found:
            return found
    return "127.0.0.1", 443


def https_url(host: str, port: int, path: str = "/") -> str:
    """The URL a user types: the port only when it is not 443."""
    return f"https://{host}{'' if port == 443 else f':{port}'}{path}"


def published_ports(model: Model) -> list[tuple[str, str, int, int]]:
    """(service, host_ip, published port, container port) for every single published TCP port, sorted."""
    out = []
    for svc, spec in sorted(model.services.items()):
        for p in spec.get("ports") or []:
            if not isinstance(p, dict) or p.get("protocol", "tcp") != "tcp":
                continue
            published = str(p.get("published") or "")
            if published.isdigit():
                out.append((svc, p.get("host_ip") or "0.0.0.0", int(published), int(p.get("target", 0))))
    return sorted(set(out))


_PORT_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*)):(\d+)(?:/\w+)?$")


def port_variables(project_dir: Path) -> dict[tuple[str, int], str]:
    """(service, container port) -> the variable that sets its published port, from the files as written.

    ``${BIND_ADDRESS:-127.0.0.1}:${HTTPS_PORT:-443}:443`` names HTTPS_PORT for container port
    443, so a finding about a port can say which line of .env to change.
    """
    rendered: dict[tuple[str, int], str] = {}
    for svc, (_, spec) in sources.raw_services(project_dir).items():
        for entry in spec.get("ports") or []:
            m = _PORT_VAR.search(str(entry)) if isinstance(entry, str) else None
            if m:
                rendered[(svc, int(m.group(3)))] = m.group(1) or m.group(2)
    return rendered
