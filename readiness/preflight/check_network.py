"""Preflight checks of networks, ports and the containers the engine already runs.

* ``network.missing`` / ``network.mismatch``: an external network that does not exist, or
  exists as something else than the plain local bridge network ``invoke networks`` makes;
* ``port.in-use`` / ``port.privileged``: a published host port another process or container
  holds, or one below the lowest port a rootless engine may publish;
* ``project.other-directory``: containers of this Compose project started from another
  directory (a second checkout) -- ``up`` here would take them over.
"""

from __future__ import annotations

import errno
import os
import socket

from ..prepare import networks
from ..stack import ports
from ..stack.model import Model
from .facts import ENV_FILE, Facts
from .findings import ERROR, Finding


def check_networks(model: Model, facts: Facts) -> list[Finding]:
    if facts.networks is None:
        return []
    return [Finding("network.missing", ERROR, f"external network {name} does not exist",
                    f"run `invoke networks` (or `docker network create {name}`)")
            for name in networks.external(model) if name not in facts.networks]


def check_network_kind(model: Model, facts: Facts) -> list[Finding]:
    if facts.networks is None:
        return []
    out = []
    for name in networks.external(model):
        net = facts.networks.get(name)
        if net is None:
            continue  # network.missing
        problems = []
        if net.get("driver") != "bridge":
            problems.append(f"driver {net.get('driver') or '?'}")
        if net.get("scope") != "local":
            problems.append(f"scope {net.get('scope') or '?'}")
        if net.get("internal") == "true":
            problems.append("internal (no published ports, no route out)")
        if not problems:
            continue
        users = sorted(svc for svc, spec in model.services.items()
                       if any(str((model.networks.get(key) or {}).get("name") or key) == name
                              for key in (spec.get("networks") or {})))
        out.append(Finding(
            "network.mismatch", ERROR,
            f"external network {name} exists as {', '.join(problems)}; the stack expects a plain local bridge "
            f"network (what `invoke networks` creates) for {', '.join(users) or 'its services'}",
            f"`docker network inspect {name}` shows who uses it; if nothing does: `docker network rm {name} && "
            f"invoke networks`; otherwise point the stack at another name in .env"))
    return out


def port_taken(host_ip: str, port: int) -> bool:
    """Whether something on this machine already holds ``host_ip:port``.

    Connect first: a listener answers whoever asks, for any port (also below 1024, where a
    non-root bind fails with EACCES before it could say EADDRINUSE) and whatever address it
    listens on (a wildcard listener answers on 127.0.0.1). Then bind, for a socket that is
    bound without listening.
    """
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    target = ports.connect_address(host_ip)
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        pass
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def check_ports(model: Model, facts: Facts) -> list[Finding]:
    out = []
    ours = {port for c in facts.containers if c.project == model.name for _, port in c.ports}
    theirs = {port: c for c in facts.containers if c.project != model.name for _, port in c.ports}
    variables = ports.port_variables(model.project_dir)
    for svc, host_ip, port, target in ports.published_ports(model):
        var = variables.get((svc, target))
        named = f"{var}={port}" if var else f"port {port}"
        where = f"{ENV_FILE} ({var})" if var else ""
        if port < facts.unprivileged_port_start:
            out.append(Finding(
                "port.privileged", ERROR,
                f"{named} is below {facts.unprivileged_port_start}, the lowest port a rootless engine may publish",
                f"set {var or 'the port variable'} to {port + 8000 if port < 1024 else 8000 + port % 1000} (or any "
                f"port >= {facts.unprivileged_port_start}) in .env; or allow it for the whole machine: "
                f"`sudo sysctl -w net.ipv4.ip_unprivileged_port_start={port}` (persist it in /etc/sysctl.d/)",
                svc, where))
            continue
        if port in ours:
            continue
        holder = theirs.get(port)
        if holder is not None:
            project = f" of Compose project {holder.project}" if holder.project else ""
            stop = f"`docker compose -p {holder.project} down`" if holder.project else f"`docker stop {holder.name}`"
            out.append(Finding("port.in-use", ERROR,
                               f"{host_ip}:{port} ({named}) is published by container {holder.name}{project}",
                               f"stop it ({stop}) or choose another port for {var or 'this service'} in .env",
                               svc, where))
        elif port_taken(host_ip, port):
            out.append(Finding("port.in-use", ERROR, f"{host_ip}:{port} ({named}) is already in use by another process",
                               f"stop that process (`sudo ss -ltnp 'sport = :{port}'` shows it) or choose "
                               f"another port for {var or 'this service'} in .env", svc, where))
    return out


def check_project_directory(model: Model, facts: Facts) -> list[Finding]:
    here = os.path.realpath(model.project_dir)
    others: dict[str, list[str]] = {}
    for c in facts.containers:
        if c.project == model.name and c.working_dir and os.path.realpath(c.working_dir) != here:
            others.setdefault(c.working_dir, []).append(c.name)
    out = []
    for directory, names in sorted(others.items()):
        shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(Finding(
            "project.other-directory", ERROR,
            f"Compose project {model.name} already has {len(names)} container(s) started from {directory} "
            f"({shown}): `invoke up` here would take them over (recreate them with this directory's files and data)",
            f"stop that stack first: `invoke down` in {directory} (or `docker compose -p {model.name} down`; its "
            f"data stays); or give this checkout a project name of its own: COMPOSE_PROJECT_NAME={model.name}-2 "
            "in .env (with other ports and network names)", file=directory))
    return out
