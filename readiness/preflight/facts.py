"""What preflight observes about the machine, gathered once: :class:`Facts` and :func:`gather`.

The engine (one ``docker info``), its containers (one ``docker ps``), networks (one ``docker
network ls``) and the stack's images it already has (one ``docker image inspect``) are asked
concurrently; then what the data directories hold (:mod:`readiness.prepare.datastate`: read
directly, or by one helper container whose answer is cached), free space, and a few host
files. Nothing here writes to the stack (only the toolkit's caches under ``.readiness/``).

What a container will see is the engine's answer (:mod:`readiness.system.engine`): secret and
data directory permissions are judged with the engine's uid mapping, kernel settings are the
engine's kernel's, and the lowest publishable port is the rootless engine's limit.

Every check module imports this one and none imports another check or the table: the facts
are the only thing the checks share, so a check is a pure function of the model and them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolkitError
from ..prepare import baked, datastate
from ..prepare import dirs as dirslib
from ..prepare import secrets as secretslib
from ..prepare import ulimits as ulimitslib
from ..prepare.datastate import DirState
from ..stack import dbfacts, envfile
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import hostfacts, runner
from ..system.engine import Engine

ENV_FILE = ".env"
ENV_EXAMPLE = ".env.example"


@dataclass(frozen=True)
class Container:
    """One container of the engine, as ``docker ps`` lists it."""

    name: str
    project: str
    working_dir: str
    state: str
    ports: tuple[tuple[str, int], ...]  # (host ip, host port) it publishes
    id: str = ""  # full id (``--no-trunc``)
    service: str = ""  # its Compose service (label), "" for a container Compose did not create
    oneoff: bool = False  # made by ``compose run``: not one of the project's service containers


@dataclass
class Facts:
    """What preflight observed about the machine, gathered once."""

    engine: Engine | None = None
    engine_error: str | None = None
    engine_fix: str = ""
    networks: dict[str, dict[str, str]] | None = None  # name -> {"driver", "scope", "internal"}
    containers: list[Container] = field(default_factory=list)
    env: envfile.EnvFile | None = None
    example: envfile.EnvFile | None = None
    #: Key -> the default ``.env`` kept from the example (:data:`readiness.stack.envfile.SHIPPED`).
    env_shipped: dict[str, str] = field(default_factory=dict)
    tracked_secrets: list[str] = field(default_factory=list)
    max_map_count: int | None = None
    unprivileged_port_start: int = 0
    #: The stack's images the engine has (reference as the stack writes it -> platform, env).
    images: dict[str, hostfacts.Image] = field(default_factory=dict)
    images_known: bool = False  # False: the engine was not asked (images missing cannot be told)
    containers_known: bool = False  # False: the engine did not list its containers
    data: dict[Path, DirState] = field(default_factory=dict)  # the data directories a check needs
    baked_record: dict[str, dict[str, str]] = field(default_factory=dict)
    engine_free: tuple[Path, int] | None = None  # (measured directory, bytes free) of the engine's data root
    data_free: list[tuple[Path, int]] = field(default_factory=list)  # one per filesystem of the data dirs
    binfmt: set[str] = field(default_factory=set)
    selinux_enforcing: bool | None = None
    wsl: bool = False
    desktop_shares: tuple[str, list[str]] | None = None  # (settings file, shared directories)
    #: Service -> the engine's verdict on its ulimits (services it gave none for are absent).
    ulimits: dict[str, ulimitslib.Verdict] = field(default_factory=dict)


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


_PUBLISHED = re.compile(r"(?P<ip>\[[0-9a-f:]*\]|[0-9.]*|::):(?P<port>\d+)(?:-(?P<end>\d+))?->")


def parse_ports(text: str) -> tuple[tuple[str, int], ...]:
    """``docker ps``' Ports column -> (host ip, host port) pairs (ranges expanded)."""
    out = set()
    for m in _PUBLISHED.finditer(text or ""):
        ip = m.group("ip").strip("[]") or "0.0.0.0"
        start = int(m.group("port"))
        for port in range(start, int(m.group("end") or start) + 1):
            out.add((ip, port))
    return tuple(sorted(out))


def model_images(model: Model) -> list[str]:
    return sorted({str(spec.get("image")) for spec in model.services.values() if spec.get("image")})


def data_roots(model: Model) -> list[Path]:
    """One data directory per filesystem (the first, sorted), to measure free space once each."""
    seen: dict[int | None, Path] = {}
    for d in dirslib.data_dirs(model):
        seen.setdefault(hostfacts.device(d.path), d.path)
    return sorted(seen.values())


def postgres_major(model: Model, facts: Facts, svc: str) -> dbfacts.Major | None:
    image = str(model.services.get(svc, {}).get("image") or "")
    if not image:
        return None
    known = facts.images.get(image)
    return dbfacts.major(image, list(known.env) if known else None)


def probe_paths(model: Model, facts: Facts, declared: list[baked.Baked]) -> list[Path]:
    """The data directories whose state a check of this module needs."""
    data = dirslib.data_dirs(model)
    services = {s for c in dbfacts.clusters(model) for s in (*c.members, *c.dcs)}
    services |= {svc for svc in model.services if postgres_major(model, facts, svc) is not None}
    needed = {d.path for d in data if d.service in services}
    return sorted(needed | set(baked.needs_probe(declared, facts.baked_record)))


def gather(model: Model) -> Facts:
    facts = Facts()
    images = model_images(model)
    commands = {
        "engine": list(enginelib.INFO_COMMAND),
        "networks": ["docker", "network", "ls", "--format", "{{json .}}"],
        "containers": ["docker", "ps", "--all", "--no-trunc", "--format", enginelib.PS_FORMAT],
    }
    if images:  # one call for all: it prints the images the engine has and names the others on stderr
        commands["images"] = ["docker", "image", "inspect", "--format", hostfacts.IMAGE_FORMAT, *images]
    results = runner.run_many(commands, timeout=30)
    try:
        facts.engine = enginelib.from_result(results["engine"])
    except ToolkitError as exc:
        facts.engine_error, facts.engine_fix = exc.message, exc.fix or ""
    if facts.engine is not None:
        if results["networks"].ok:
            facts.networks = {str(n.get("Name")): {"driver": str(n.get("Driver", "")), "scope": str(n.get("Scope", "")),
                                                   "internal": str(n.get("Internal", "")).lower()}
                              for n in _json_lines(results["networks"].stdout)}
        facts.containers_known = results["containers"].ok
        for c in _json_lines(results["containers"].stdout):
            labels = enginelib.parse_labels(str(c.get("Labels", "")))
            facts.containers.append(Container(
                name=str(c.get("Names", "")), project=labels.get("com.docker.compose.project", ""),
                working_dir=labels.get("com.docker.compose.project.working_dir", ""), state=str(c.get("State", "")),
                ports=parse_ports(str(c.get("Ports", ""))), id=str(c.get("ID", "")),
                service=labels.get("com.docker.compose.service", ""),
                oneoff=labels.get("com.docker.compose.oneoff", "").lower() == "true"))
        if "images" in results:
            res = results["images"]
            facts.images = hostfacts.parse_images(res.stdout, images)
            # exit 1 with "No such image" for the missing ones is an answer; anything else is not
            facts.images_known = res.ok or "No such image" in res.stderr
        # Docker Desktop's VM or a remote engine: read in a helper container (local: /proc/sys).
        facts.max_map_count = enginelib.read_sysctl(facts.engine, "vm.max_map_count", model.helper_image)
        facts.unprivileged_port_start = enginelib.unprivileged_port_start(facts.engine)
        facts.ulimits = ulimitslib.probe(model, facts.engine)
        gather_host(model, facts)
    facts.env = envfile.read(model.project_dir / ENV_FILE) if (model.project_dir / ENV_FILE).exists() else None
    facts.example = envfile.read(model.project_dir / ENV_EXAMPLE)
    facts.env_shipped = envfile.load_shipped(model.project_dir)
    secret_dirs = sorted({Path(s.path).parent for s in secretslib.specs(model)})
    facts.tracked_secrets = secretslib.tracked_files(model.project_dir, secret_dirs)
    facts.baked_record = baked.load(model.project_dir)
    paths = probe_paths(model, facts, baked.declarations(model))
    local = facts.engine if facts.engine is None or facts.engine.kind != enginelib.Kind.REMOTE else None
    facts.data = datastate.probe(model.project_dir, paths, local, secretslib.helper_image(model))
    return facts


def gather_host(model: Model, facts: Facts) -> None:
    """Free space, SELinux, WSL, emulators and Docker Desktop's file sharing (cheap local reads)."""
    engine = facts.engine
    assert engine is not None
    if engine.local and engine.data_root:
        facts.engine_free = hostfacts.free_bytes(Path(engine.data_root))
    if engine.kind != enginelib.Kind.REMOTE:
        facts.data_free = [m for p in data_roots(model) if (m := hostfacts.free_bytes(p))]
    kernel = os.uname().release
    facts.wsl = hostfacts.is_wsl(kernel, hostfacts.read_text("/proc/version"))
    if engine.local:
        facts.selinux_enforcing = hostfacts.selinux_enforcing(hostfacts.read_text("/sys/fs/selinux/enforce"))
        facts.binfmt = hostfacts.binfmt_handlers()
    if engine.kind == enginelib.Kind.DESKTOP:
        facts.desktop_shares = hostfacts.desktop_shares(engine.client_os, Path.home())
