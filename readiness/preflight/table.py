"""Preflight: read-only checks that say whether the stack can boot, and why not.

Facts about the machine are gathered first -- the engine (one ``docker info``), its
containers (one ``docker ps``), networks (one ``docker network ls``) and the stack's images it
already has (one ``docker image inspect``), run concurrently; then what the data directories
hold (:mod:`readiness.prepare.datastate`: read directly, or by one helper container whose answer is
cached), free space, and a few host files -- then every check is a pure function of the model
and those facts returning :class:`~readiness.preflight.findings.Finding` objects. Nothing here writes to
the stack (only the toolkit's caches under ``.readiness/``).

The checks of stale state (baked secrets, Patroni against its DCS, PostgreSQL versions) are
in :mod:`readiness.checks_state`; those of conflicts with the engine, mounts, resources and
platform in :mod:`readiness.checks_engine`.

What a container will see is the engine's answer (:mod:`readiness.system.engine`): secret and data
directory permissions are judged with the engine's uid mapping, kernel settings are the
engine's kernel's, and the lowest publishable port is the rootless engine's limit.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolkitError
from ..prepare import baked, certs, datastate, dirs
from ..prepare import secrets as secretslib
from ..prepare import ulimits as ulimitslib
from ..prepare.datastate import DirState
from ..stack import compose, envfile
from ..stack.compose import Model
from ..system import engine as enginelib
from ..system import hostfacts, runner
from ..system.engine import Engine
from . import check_host as checks_engine
from . import check_state as checks_state
from .findings import ERROR, WARNING, Finding

ENV_FILE = ".env"
ENV_EXAMPLE = ".env.example"
_CREDENTIAL_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|_PASS$|WEBHOOK)", re.I)
_URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@dataclass(frozen=True)
class Container:
    """One container of the engine, as ``docker ps`` lists it."""

    name: str
    project: str
    working_dir: str
    state: str
    ports: tuple[tuple[str, int], ...]  # (host ip, host port) it publishes


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
    tracked_secrets: list[str] = field(default_factory=list)
    max_map_count: int | None = None
    unprivileged_port_start: int = 0
    #: The stack's images the engine has (reference as the stack writes it -> platform, env).
    images: dict[str, hostfacts.Image] = field(default_factory=dict)
    images_known: bool = False  # False: the engine was not asked (images missing cannot be told)
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


def parse_labels(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in (text or "").split(",") if "=" in item)


def gather(model: Model) -> Facts:
    facts = Facts()
    images = checks_engine.model_images(model)
    commands = {
        "engine": list(enginelib.INFO_COMMAND),
        "networks": ["docker", "network", "ls", "--format", "{{json .}}"],
        # Named fields, not `{{json .}}`: that one makes the CLI compute every container's size
        # (seconds on a vfs engine with a few stacks), which bootstrap would wait for.
        "containers": ["docker", "ps", "--all", "--no-trunc", "--format",
                       '{"Names":{{json .Names}},"Labels":{{json .Labels}},"State":{{json .State}},'
                       '"Ports":{{json .Ports}}}'],
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
        for c in _json_lines(results["containers"].stdout):
            labels = parse_labels(str(c.get("Labels", "")))
            facts.containers.append(Container(
                name=str(c.get("Names", "")), project=labels.get("com.docker.compose.project", ""),
                working_dir=labels.get("com.docker.compose.project.working_dir", ""), state=str(c.get("State", "")),
                ports=parse_ports(str(c.get("Ports", "")))))
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
    secret_dirs = sorted({Path(s.path).parent for s in secretslib.specs(model)})
    facts.tracked_secrets = secretslib.tracked_files(model.project_dir, secret_dirs)
    facts.baked_record = baked.load(model.project_dir)
    paths = checks_state.probe_paths(model, facts, baked.declarations(model))
    local = facts.engine if facts.engine is None or facts.engine.kind != enginelib.REMOTE else None
    facts.data = datastate.probe(model.project_dir, paths, local, secretslib.helper_image(model))
    return facts


def gather_host(model: Model, facts: Facts) -> None:
    """Free space, SELinux, WSL, emulators and Docker Desktop's file sharing (cheap local reads)."""
    engine = facts.engine
    assert engine is not None
    if engine.local and engine.data_root:
        facts.engine_free = hostfacts.free_bytes(Path(engine.data_root))
    if engine.kind != enginelib.REMOTE:
        facts.data_free = [m for p in checks_engine.data_roots(model) if (m := hostfacts.free_bytes(p))]
    kernel = os.uname().release
    facts.wsl = hostfacts.is_wsl(kernel, hostfacts.read_text("/proc/version"))
    if engine.local:
        facts.selinux_enforcing = hostfacts.selinux_enforcing(hostfacts.read_text("/sys/fs/selinux/enforce"))
        facts.binfmt = hostfacts.binfmt_handlers()
    if engine.kind == enginelib.DESKTOP:
        facts.desktop_shares = hostfacts.desktop_shares(engine.client_os, Path.home())


# ---------------------------------------------------------------- checks (pure functions)


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
    if engine.kind == enginelib.REMOTE:
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


def check_compose_warnings(model: Model) -> list[Finding]:
    return [Finding("compose.warning", ERROR, f"docker compose config warns: {w}",
                    "fix the cause in the compose files or .env; `invoke config` shows it again",
                    file="docker-compose.yml")
            for w in model.warnings]


def check_env(model: Model, facts: Facts) -> list[Finding]:
    out = []
    if facts.env is None:
        out.append(Finding("env.file-missing", ERROR, ".env does not exist",
                           "run `invoke env` (copies .env.example to .env)", file=ENV_FILE))
    else:
        for line, message in facts.env.errors:
            out.append(Finding("env.malformed", ERROR, f"line {line}: {message}",
                               "write the line as KEY=value or delete it", file=f"{ENV_FILE}:{line}"))
    for name in model.missing_required:
        line = next((e.line for e in (facts.env.entries if facts.env else []) if e.key == name), None)
        out.append(Finding("env.required-unset", ERROR, f"required variable {name} is unset or empty",
                           f"set {name}=<value> in .env (see the comment above it in .env.example)",
                           file=f"{ENV_FILE}:{line}" if line else ENV_FILE))
    return out


def check_example_credentials(facts: Facts) -> list[Finding]:
    out = []
    for e in facts.example.entries if facts.example else []:
        value = e.value.strip()
        if not value:
            continue
        looks_like_key = _CREDENTIAL_KEY.search(e.key) and not value.startswith("/run/secrets/")
        if looks_like_key or _URL_WITH_PASSWORD.search(value):
            out.append(Finding("env.example-credential", ERROR,
                               f"{e.key} in .env.example has a value that looks like a credential",
                               "move the value into a file secret under secrets/ (see secrets/README.md) and "
                               "leave only non-sensitive defaults in .env.example",
                               file=f"{ENV_EXAMPLE}:{e.line}"))
    return out


def check_secrets(model: Model, facts: Facts) -> list[Finding]:
    out = []
    # a baked secret missing over existing data is secret.baked-missing (checks_state), not "run invoke secrets"
    refused = {r.baked.name for r in baked.refusals(baked.declarations(model), facts.data)}
    for spec in secretslib.specs(model):
        if spec.certificate or spec.name in refused:
            continue
        rel = model.relpath(spec.path)
        service = ",".join(spec.consumers)
        if not spec.path.is_file():
            out.append(Finding("secret.missing", ERROR, f"secret {spec.name} has no file",
                               "run `invoke secrets` (creates only the missing files)", service, rel))
            continue
        if spec.path.stat().st_size == 0:
            out.append(Finding("secret.empty", ERROR, f"secret {spec.name} is empty",
                               "run `invoke secrets` (fills empty files, keeps the others)", service, rel))
            continue
        engine = facts.engine
        if engine is not None:
            st = spec.path.stat()
            for reader in spec.readers:
                if not reader.can_read(engine, (st.st_uid, st.st_gid, st.st_mode)):
                    who = f"uid {reader.uid}" if reader.uid is not None else "a container user it does not declare"
                    out.append(Finding("secret.unreadable", ERROR,
                                       f"secret {spec.name} is not readable by {who} of {reader.service} "
                                       f"({engine.kind} engine)",
                                       f"chmod {spec.mode(engine):o} {rel} (or `invoke secrets`, which sets it)",
                                       reader.service, rel))
    for path in facts.tracked_secrets:
        out.append(Finding("secret.tracked", ERROR, f"git tracks {path}",
                           f"git rm --cached {path} (then rotate that value)", file=path))
    return out


def cert_paths(model: Model) -> certs.CertPaths | None:
    by_role = {s.certificate: s.path for s in secretslib.specs(model) if s.certificate}
    if "cert" not in by_role or "key" not in by_role:
        return None
    return certs.CertPaths(cert=by_role["cert"], key=by_role["key"])


def root_ca(model: Model) -> Path:
    """``rootCA.pem`` the stack's certificate must chain to (what clients should trust)."""
    paths = cert_paths(model)
    return paths.ca if paths else model.project_dir / "secrets" / "certs" / certs.CA_FILE


def check_certs(model: Model) -> list[Finding]:
    paths = cert_paths(model)
    if paths is None:
        return []
    missing = [model.relpath(p) for p in (paths.cert, paths.key, paths.ca) if not p.is_file()]
    if missing:
        return [Finding("cert.missing", ERROR, f"missing: {', '.join(missing)}",
                        "run `invoke certs` (mkcert)", "", model.relpath(paths.cert.parent))]
    hosts = [h for h in model.all_routed_hosts if compose.PLACEHOLDER not in h]  # env.required-unset says why
    reasons = certs.problems(paths, certs.required_names(hosts))
    if reasons:
        return [Finding("cert.invalid", ERROR, "; ".join(reasons),
                        "run `invoke certs` (it regenerates the pair and keeps a backup)", "",
                        model.relpath(paths.cert))]
    return []


def check_dirs(model: Model, facts: Facts) -> list[Finding]:
    out = []
    for svc, source, var in dirs.refused(model):
        out.append(Finding("dir.protected", ERROR,
                           f"{var} puts {svc}'s data directory at {source}, a path the toolkit never creates, re-owns "
                           "or deletes (the filesystem root or a directory right below it, a system tree, the project "
                           "or home directory)",
                           f"set {var} in .env to a directory of its own (e.g. /srv/infra-core-data), then `invoke "
                           "dirs`", svc, f"{ENV_FILE} ({var})"))
    for d in dirs.data_dirs(model):
        rel = model.relpath(d.path)
        if not d.path.is_dir():
            out.append(Finding("dir.missing", ERROR, f"bind-mount source for {d.target} does not exist",
                               "run `invoke dirs`", d.service, rel))
        elif facts.engine is not None:
            why = dirs.usable(d, facts.engine)
            if why:
                out.append(Finding("dir.not-writable", ERROR, why, dirs.fix_hint(d), d.service, rel))
    return out


def check_networks(model: Model, facts: Facts) -> list[Finding]:
    from ..prepare import networks

    if facts.networks is None:
        return []
    return [Finding("network.missing", ERROR, f"external network {name} does not exist",
                    f"run `invoke networks` (or `docker network create {name}`)")
            for name in networks.external(model) if name not in facts.networks]


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


def port_taken(host_ip: str, port: int) -> bool:
    """Whether something on this machine already holds ``host_ip:port``.

    Connect first: a listener answers whoever asks, for any port (also below 1024, where a
    non-root bind fails with EACCES before it could say EADDRINUSE) and whatever address it
    listens on (a wildcard listener answers on 127.0.0.1). Then bind, for a socket that is
    bound without listening.
    """
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host_ip, host_ip)
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
    variables = compose.port_variables(model.project_dir)
    for svc, host_ip, port, target in published_ports(model):
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


_REF = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def unescaped_refs(text: str) -> list[str]:
    """Variables Compose would interpolate in ``text`` whose intent is unclear.

    ``$$`` is a literal dollar for the container; ``${VAR:-x}``/``${VAR:?err}`` (any
    modifier) are deliberate interpolations. A bare ``$VAR`` or ``${VAR}`` is returned.
    """
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            i += 1
            continue
        if text.startswith("$$", i):
            i += 2
            continue
        m = _REF.match(text, i)
        if not m:
            i += 1
            continue
        name = m.group("braced") or m.group("bare")
        if not (m.group("braced") and m.group("rest")):
            out.append(name)
        i = m.end()
    return out


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def check_dollars(raw: dict[str, tuple[str, dict]], facts: Facts) -> list[Finding]:
    declared = set(facts.example.keys()) if facts.example else set()
    out = []
    for svc, (file, spec) in sorted(raw.items()):
        fields = {"command": spec.get("command"), "entrypoint": spec.get("entrypoint"),
                  "healthcheck": (spec.get("healthcheck") or {}).get("test")}
        for field_name, value in fields.items():
            for text in _strings(value):
                for name in unescaped_refs(text):
                    if name in declared:
                        continue
                    out.append(Finding("compose.unescaped-dollar", ERROR,
                                       f"{field_name} uses ${name}, which Compose interpolates (it is blanked "
                                       "when unset)", f"write $${name} for the container's shell, or "
                                       f"declare {name} in .env.example and use ${{{name}:-default}}",
                                       svc, file))
    return out


def check_images(model: Model, files: dict[str, str]) -> list[Finding]:
    out = []
    for svc, spec in sorted(model.services.items()):
        image = str(spec.get("image") or "")
        if not image or "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest":
            out.append(Finding("compose.unpinned-image", ERROR, f"image {image} has no pinned tag",
                               "pin a version tag (or digest) as the default of its *_IMAGE variable",
                               svc, files.get(svc, "")))
    return out


def sysctl_fix(engine: Engine | None, name: str, value: int) -> str:
    """Where to set a kernel setting for the kernel this engine's containers run on."""
    if engine is not None and engine.kind == enginelib.DESKTOP:
        return (f"Docker Desktop runs containers in its own VM: on WSL2 run `wsl -d docker-desktop sysctl -w "
                f"{name}={value}` in PowerShell; on macOS `docker run --rm --privileged --pid=host alpine nsenter -t 1 "
                f"-m -u -n -i sysctl -w {name}={value}`; both are lost when Desktop restarts (runbook §1.2/§1.3)")
    if engine is not None and engine.kind == enginelib.REMOTE:
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


def run_checks(model: Model, facts: Facts) -> list[Finding]:
    raw = compose.raw_services(model.project_dir)
    files = {svc: file for svc, (file, _) in raw.items()}
    findings = check_engine(model, facts)
    findings += check_docker_socket(model, facts)
    findings += check_env(model, facts)
    findings += check_example_credentials(facts)
    findings += check_secrets(model, facts)
    findings += check_certs(model)
    findings += check_dirs(model, facts)
    findings += check_networks(model, facts)
    findings += check_ports(model, facts)
    dollars = check_dollars(raw, facts)
    findings += dollars
    findings += check_images(model, files)
    findings += check_sysctl(model, facts)
    findings += checks_state.check_baked(model, facts)
    findings += checks_state.check_dcs(model, facts)
    findings += checks_state.check_pg_version(model, facts)
    findings += checks_engine.check_project_directory(model, facts)
    findings += checks_engine.check_network_kind(model, facts)
    findings += checks_engine.check_mounts(model, facts, files)
    findings += checks_engine.check_resources(model, facts, files)
    findings += checks_engine.check_ulimits(model, facts, files)
    findings += checks_engine.check_disk(model, facts)
    findings += checks_engine.check_platform(model, facts)
    findings += checks_engine.check_desktop_sharing(model, facts)
    findings += checks_engine.check_selinux(model, facts)
    findings += checks_engine.check_wsl_drive(model, facts)
    # Compose also warns about a variable the $-check already reports: say it once.
    reported = {re.search(r"uses \$(\w+)", f.message).group(1) for f in dollars}
    findings += [f for f in check_compose_warnings(model)
                 if not any(f'"{name}" variable is not set' in f.message for name in reported)]
    return findings


def preflight(project_dir: Path) -> list[Finding]:
    """Everything preflight reports for ``project_dir``; raises only for a toolkit failure."""
    try:
        cli = compose.detect_compose()
    except ToolkitError as exc:
        ident = "docker.cli-missing" if "Docker CLI" in exc.message else "compose.unsupported"
        return [Finding(ident, ERROR, exc.message, exc.fix or "")]
    try:
        model = compose.load(project_dir, cli, tolerate_missing=True)
    except ToolkitError as exc:
        return [Finding("compose.invalid", ERROR, exc.message, exc.fix or "", file=exc.where or "")]
    return run_checks(model, gather(model))
