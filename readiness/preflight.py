"""Preflight: read-only checks that say whether the stack can boot, and why not.

Facts about the machine (engine, networks, ports, files) are gathered first, with the few
Docker calls run concurrently; then every check is a pure function of the model and those
facts returning :class:`~readiness.findings.Finding` objects. Nothing here writes.
"""

from __future__ import annotations

import errno
import platform
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from . import certs, compose, dirs, envfile, runner
from . import secrets as secretslib
from .compose import Model
from .errors import ToolkitError
from .findings import ERROR, WARNING, Finding

ENV_FILE = ".env"
ENV_EXAMPLE = ".env.example"
_CREDENTIAL_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|_PASS$|WEBHOOK)", re.I)
_URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@dataclass
class Facts:
    """What preflight observed about the machine, gathered once."""

    engine_error: str | None = None
    networks: set[str] | None = None
    project_ports: set[tuple[str, int]] = field(default_factory=set)
    env: envfile.EnvFile | None = None
    example: envfile.EnvFile | None = None
    tracked_secrets: list[str] = field(default_factory=list)
    max_map_count: int | None = None


def gather(model: Model) -> Facts:
    facts = Facts()
    results = runner.run_many(
        {
            "engine": ["docker", "version", "--format", "{{.Server.Version}}"],
            "networks": ["docker", "network", "ls", "--format", "{{.Name}}"],
            "ports": ["docker", "ps", "--filter", f"label=com.docker.compose.project={model.name}",
                      "--format", "{{.Ports}}"],
        },
        timeout=30,
    )
    engine = results["engine"]
    if not engine.ok:
        facts.engine_error = (engine.stderr.strip().splitlines() or ["no answer"])[-1]
    else:
        if results["networks"].ok:
            facts.networks = {n.strip() for n in results["networks"].stdout.splitlines() if n.strip()}
        for m in re.finditer(r"([\d.:\[\]a-f]*?):(\d+)->", results["ports"].stdout):
            facts.project_ports.add((m.group(1).strip("[]") or "0.0.0.0", int(m.group(2))))
    facts.env = envfile.read(model.project_dir / ENV_FILE) if (model.project_dir / ENV_FILE).exists() else None
    facts.example = envfile.read(model.project_dir / ENV_EXAMPLE)
    secret_dirs = sorted({Path(s.path).parent for s in secretslib.specs(model)})
    facts.tracked_secrets = secretslib.tracked_files(model.project_dir, secret_dirs)
    try:
        facts.max_map_count = int(Path("/proc/sys/vm/max_map_count").read_text().strip())
    except (OSError, ValueError):
        facts.max_map_count = None
    return facts


# ---------------------------------------------------------------- checks (pure functions)


def check_engine(facts: Facts) -> list[Finding]:
    if facts.engine_error is None:
        return []
    return [Finding("docker.engine-unreachable", ERROR, f"the Docker engine does not answer: {facts.engine_error}",
                    "start the engine (Linux: `sudo systemctl start docker`; macOS/WSL2: start Docker Desktop), "
                    "then check with `docker info`")]


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
    for spec in secretslib.specs(model):
        if spec.certificate:
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
        if dirs.ownership_matters():
            for svc in spec.consumers:
                user = model.service_user(svc) or (0, 0)
                if not dirs.allows(spec.path, *user, 0o4):
                    out.append(Finding("secret.unreadable", ERROR,
                                       f"secret {spec.name} is not readable by uid {user[0]} of {svc}",
                                       f"chmod {spec.mode:o} {rel}", svc, rel))
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


def check_dirs(model: Model) -> list[Finding]:
    out = []
    for d in dirs.data_dirs(model):
        rel = model.relpath(d.path)
        if not d.path.is_dir():
            out.append(Finding("dir.missing", ERROR, f"bind-mount source for {d.target} does not exist",
                               "run `invoke dirs`", d.service, rel))
        elif dirs.ownership_matters() and d.owner and not dirs.writable_by(d.path, *d.owner):
            st = d.path.stat()
            out.append(Finding("dir.not-writable", ERROR,
                               f"owned by {st.st_uid}:{st.st_gid} mode {st.st_mode & 0o777:04o}, "
                               f"not writable by uid {d.owner[0]}", dirs.fix_command(d), d.service, rel))
    return out


def check_networks(model: Model, facts: Facts) -> list[Finding]:
    from . import networks

    if facts.networks is None:
        return []
    return [Finding("network.missing", ERROR, f"external network {name} does not exist",
                    f"run `invoke networks` (or `docker network create {name}`)")
            for name in networks.external(model) if name not in facts.networks]


def published_ports(model: Model) -> list[tuple[str, str, int]]:
    """(service, host_ip, port) for every single published TCP port, sorted."""
    out = []
    for svc, spec in sorted(model.services.items()):
        for p in spec.get("ports") or []:
            if not isinstance(p, dict) or p.get("protocol", "tcp") != "tcp":
                continue
            published = str(p.get("published") or "")
            if published.isdigit():
                out.append((svc, p.get("host_ip") or "0.0.0.0", int(published)))
    return sorted(set(out))


def port_taken(host_ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def check_ports(model: Model, facts: Facts) -> list[Finding]:
    out = []
    ours = {port for _, port in facts.project_ports}
    for svc, host_ip, port in published_ports(model):
        if port in ours:
            continue
        if port_taken(host_ip, port):
            out.append(Finding("port.in-use", ERROR, f"{host_ip}:{port} is already in use by another process",
                               f"stop that process (`sudo ss -ltnp 'sport = :{port}'` shows it) or choose "
                               "another port in .env (see the *_PORT variables)", svc))
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


def check_sysctl(model: Model, facts: Facts) -> list[Finding]:
    if platform.system() != "Linux" or facts.max_map_count is None:
        return []
    out = []
    for svc in sorted(model.services):
        wanted = (model.x(svc).get("host-sysctl") or {}).get("vm.max_map_count")
        if wanted and facts.max_map_count < int(wanted):
            out.append(Finding("host.max-map-count", WARNING,
                               f"vm.max_map_count is {facts.max_map_count}, {svc} wants at least {wanted}",
                               f"sudo sysctl -w vm.max_map_count={wanted} (persist it in /etc/sysctl.d/); "
                               "Docker Desktop/WSL2: set it inside the VM (see the runbook)", svc))
    return out


def run_checks(model: Model, facts: Facts) -> list[Finding]:
    raw = compose.raw_services(model.project_dir)
    files = {svc: file for svc, (file, _) in raw.items()}
    findings = check_engine(facts)
    findings += check_env(model, facts)
    findings += check_example_credentials(facts)
    findings += check_secrets(model, facts)
    findings += check_certs(model)
    findings += check_dirs(model)
    findings += check_networks(model, facts)
    findings += check_ports(model, facts)
    dollars = check_dollars(raw, facts)
    findings += dollars
    findings += check_images(model, files)
    findings += check_sysctl(model, facts)
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
