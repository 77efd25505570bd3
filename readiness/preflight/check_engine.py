"""Preflight checks of the engine itself and of what it will refuse or run slowly.

* ``docker.engine-unreachable``: the engine does not answer;
* ``engine.no-start-interval``: an engine before Docker 25, where ``invoke up`` drops
  ``healthcheck.start_interval``; ``engine.remote``: an engine on another machine;
* ``engine.socket-mismatch``: a service mounts a Docker socket that is not this engine's;
* ``engine.ulimit``: ``ulimits`` the engine cannot apply (runc would refuse to start the
  container), from the engine's own answer (:mod:`readiness.prepare.ulimits`);
* ``host.max-map-count``: a kernel setting of the engine's kernel below what a service wants.

Pure functions of the model and the facts preflight gathered once (:mod:`.facts`).
"""

from __future__ import annotations

import os

from ..prepare import ulimits as ulimitslib
from ..stack.model import Model
from ..system import engine as enginelib
from ..system.engine import Engine
from .facts import ENV_FILE, Facts
from .findings import ERROR, WARNING, Finding


def check_engine(model: Model, facts: Facts) -> list[Finding]:
    if facts.engine_error is not None:
        return [Finding("docker.engine-unreachable", ERROR, facts.engine_error, facts.engine_fix)]
    engine = facts.engine
    out: list[Finding] = []
    if engine is None:
        return out
    if not engine.start_interval:
        users = sorted(svc for svc, spec in model.services.items()
                       if "start_interval" in (spec.get("healthcheck") or {}))
        if users:
            out.append(Finding(
                "engine.no-start-interval", WARNING,
                f"Docker Engine {engine.version_text} predates 25: `invoke up` drops healthcheck.start_interval "
                f"for {', '.join(users)}, so each first probe waits a whole interval (a slower first boot)",
                "upgrade the engine to Docker 25 or newer (Debian: docker.io from trixie, or Docker's packages)"))
    if engine.kind == enginelib.Kind.REMOTE:
        out.append(Finding(
            "engine.remote", WARNING,
            f"the engine ({engine.name}, kernel {engine.kernel}) is not on this machine: bind-mount sources, owners "
            "and host ports are that machine's, and preflight cannot check them from here",
            "run the toolkit on the machine that runs the engine, or unset DOCKER_HOST to use a local engine"))
    return out


DOCKER_SOCKET_TARGETS = ("/var/run/docker.sock", "/run/docker.sock")


def check_docker_socket(model: Model, facts: Facts) -> list[Finding]:
    """A service that mounts the Docker socket must mount the socket of *this* engine.

    ``/var/run/docker.sock`` is a rootful engine's socket: under a rootless engine (socket in
    ``$XDG_RUNTIME_DIR``) it names another engine or nothing, and the service (Traefik's API
    proxy) would see none of the stack's containers.
    """
    engine = facts.engine
    if engine is None or not engine.local or not engine.socket:
        return []
    out = []
    for svc, spec in sorted(model.services.items()):
        for vol in spec.get("volumes") or []:
            if not isinstance(vol, dict) or vol.get("type") != "bind" or vol.get("target") not in DOCKER_SOCKET_TARGETS:
                continue
            source = str(vol.get("source", ""))
            if os.path.realpath(source) != os.path.realpath(engine.socket):
                out.append(Finding(
                    "engine.socket-mismatch", ERROR,
                    f"{svc} mounts {source}, but the {engine.kind} engine listens on {engine.socket}: the service "
                    "would talk to another engine, or to none",
                    f"set DOCKER_SOCKET={engine.socket} in .env", svc, ENV_FILE))
    return out


def check_ulimits(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    """A service whose ``ulimits`` the engine refused: the values it grants, as ``.env`` lines."""
    refused = {svc: v for svc, v in sorted(facts.ulimits.items()) if not v.accepted}
    if not refused:
        return []
    written = ulimitslib.variables(model.project_dir)
    who = f"the {facts.engine.kind} engine" if facts.engine is not None else "the engine"
    out = []
    for svc, verdict in refused.items():
        pairs = verdict.refused
        names = [w.name for w, _ in pairs] or [w.name for w in verdict.wanted]
        asked = ", ".join(w.text() for w, _ in pairs) or ", ".join(w.text() for w in verdict.wanted)
        runc = "runc would refuse to start the container (\"error setting rlimit\")"
        if pairs:
            most = ", ".join(f"{n}={ulimitslib.pair_text(*verdict.granted[n])}" for n in names if n in verdict.granted)
            message = (f"{who} cannot apply {svc}'s ulimits {asked}: its containers get at most {most}, and it "
                       "cannot raise a hard limit above its own (that needs CAP_SYS_RESOURCE, which every rootless "
                       f"engine lacks); {runc}")
        else:
            message = f"{who} refuses {svc}'s ulimits {asked}; {runc}"
        lines, in_file = ulimitslib.env_lines(model, verdict, written) if pairs else ({}, [])
        raise_engine = ulimitslib.engine_limit_fix(names)
        if pairs and verdict.lowered_ok and lines and not in_file:
            fix = (f"set in .env: {' '.join(f'{k}={v}' for k, v in lines.items())} (what this engine grants; "
                   f"`invoke env` writes them into a new .env); or {raise_engine}")
        elif pairs and verdict.lowered_ok:
            fix = (f"lower the ulimits of {svc} in {files.get(svc, 'its compose file')} to "
                   f"{', '.join(in_file)}" + (f" and set in .env: {' '.join(f'{k}={v}' for k, v in lines.items())}"
                                              if lines else "") + f"; or {raise_engine}")
        else:
            fix = (f"{raise_engine}; `docker run --rm --ulimit {verdict.wanted[0].name}=...` shows the engine's answer")
        where = f".env ({', '.join(lines)})" if lines and not in_file else files.get(svc, "")
        out.append(Finding("engine.ulimit", ERROR, message, fix, svc, where))
    return out


def sysctl_fix(engine: Engine | None, name: str, value: int) -> str:
    """Where to set a kernel setting for the kernel this engine's containers run on."""
    if engine is not None and engine.kind == enginelib.Kind.DESKTOP:
        return (f"Docker Desktop runs containers in its own VM: on WSL2 run `wsl -d docker-desktop sysctl -w "
                f"{name}={value}` in PowerShell; on macOS `docker run --rm --privileged --pid=host alpine nsenter -t 1 "
                f"-m -u -n -i sysctl -w {name}={value}`; both are lost when Desktop restarts (runbook §1.2/§1.3)")
    if engine is not None and engine.kind == enginelib.Kind.REMOTE:
        return f"on the engine's machine ({engine.name}): `sudo sysctl -w {name}={value}` (persist in /etc/sysctl.d/)"
    return f"sudo sysctl -w {name}={value} (persist it in /etc/sysctl.d/99-infra.conf)"


def check_sysctl(model: Model, facts: Facts) -> list[Finding]:
    if facts.max_map_count is None:
        return []
    out = []
    where = f" ({facts.engine.kind} engine, kernel {facts.engine.kernel})" if facts.engine else ""
    for svc in sorted(model.services):
        wanted = (model.x(svc).get("host-sysctl") or {}).get("vm.max_map_count")
        if wanted and facts.max_map_count < int(wanted):
            out.append(Finding("host.max-map-count", WARNING,
                               f"vm.max_map_count is {facts.max_map_count}{where}, {svc} wants at least {wanted}",
                               sysctl_fix(facts.engine, "vm.max_map_count", int(wanted)), svc))
    return out
