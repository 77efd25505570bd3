"""The stack model, read from Docker Compose itself.

Compose is the single source of truth: services, secrets, bind mounts, networks, ports and
variables all come from ``docker compose config``. This module runs the few ``config`` calls
a task needs (concurrently, once per process) and turns their output into a
:class:`Model`. The per-service facts Compose has no field for are read from the
``x-readiness`` extension fields (``docs/x-readiness.md``).

Why YAML and not ``--format json``: Compose v2.40 drops ``x-*`` fields of services and
secrets from the interpolated JSON output; its YAML output keeps them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..errors import ToolkitError
from ..system import runner
from . import modelcache, sources

#: ``include:`` appeared in Compose 2.20.0; older v2 releases ignore or reject it.
MIN_COMPOSE = (2, 20, 0)
#: Docker's default capability set (moby's oci/caps/defaults.go): what a container keeps
#: unless the service drops it.
DEFAULT_CAPS = frozenset({"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                          "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"})
#: Stand-in value for a required variable that is unset, so preflight can render the rest.
PLACEHOLDER = "__unset__"
COMPOSE_FILE = "docker-compose.yml"

try:  # the C loader is ~10x faster on the rendered model
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml built without libyaml
    _Loader = yaml.SafeLoader


def _parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class ComposeCLI:
    """How to call Compose on this machine: the v2 plugin or a standalone v2 binary."""

    argv: tuple[str, ...]
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def _check_version(argv: tuple[str, ...], result: runner.Result) -> ComposeCLI:
    version = _parse_version(result.stdout.strip() or result.stderr)
    name = " ".join(argv)
    if version is None:
        raise ToolkitError(f"cannot read the version of `{name}`: {result.stdout.strip()!r}",
                           fix=runner.INSTALL_HINTS["docker-compose"])
    if version[0] < 2:
        raise ToolkitError(
            f"`{name}` is Compose v1 ({'.'.join(map(str, version))}), which is end-of-life and "
            "cannot read this stack (it needs `include:`)",
            fix="install Compose v2: " + runner.INSTALL_HINTS["docker-compose"],
        )
    if version < MIN_COMPOSE:
        raise ToolkitError(
            f"`{name}` is Compose {'.'.join(map(str, version))}; this stack needs "
            f"{'.'.join(map(str, MIN_COMPOSE))} or newer for `include:`",
            fix="upgrade Compose: " + runner.INSTALL_HINTS["docker-compose"],
        )
    return ComposeCLI(argv, version)


def detect_compose() -> ComposeCLI:
    """Find Compose v2: the ``docker compose`` plugin first, then a standalone binary."""
    if runner.which("docker"):
        res = runner.run(["docker", "compose", "version", "--short"], timeout=30)
        if res.ok:
            return _check_version(("docker", "compose"), res)
    if runner.which("docker-compose"):
        res = runner.run(["docker-compose", "version", "--short"], timeout=30)
        if not res.ok:  # v1 has no --short
            res = runner.run(["docker-compose", "version"], timeout=30)
        return _check_version(("docker-compose",), res)
    if not runner.which("docker"):
        raise ToolkitError("the Docker CLI is not installed", fix=runner.INSTALL_HINTS["docker"], code=127)
    raise ToolkitError("Docker Compose v2 is not installed (`docker compose version` failed)",
                       fix=runner.INSTALL_HINTS["docker-compose"], code=127)


@dataclass(frozen=True)
class Variable:
    name: str
    required: bool
    default: str | None


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
                   "login", "connect", "verify", "ulimit-fallback"}


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


def _yaml_error_location(message: str) -> tuple[str, str]:
    """Re-parse the file Compose could not parse, to name the exact line."""
    m = re.search(r"failed to parse (\S+?):\s*(.*)", message)
    if not m:
        return "", message
    path = m.group(1)
    try:
        yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return f"{path}:{mark.line + 1}", f"invalid YAML: {exc.problem or exc.context}"
    except (OSError, yaml.YAMLError):
        pass
    return path, m.group(2)


def config_error(result: runner.Result, project_dir: Path) -> ToolkitError:
    """Turn a failed ``docker compose config`` into a one-paragraph error."""
    text = "\n".join(line for line in result.stderr.strip().splitlines() if "level=warning" not in line)
    text = text.strip() or result.stdout.strip() or f"exit status {result.returncode}"
    where, message = _yaml_error_location(text)
    fix = "correct the file named above, then run `invoke config`"
    m = re.search(r"required variable (\w+) is missing a value", text)
    if m:
        fix = f"set {m.group(1)} in {project_dir / '.env'} (run `invoke env` to create it from .env.example)"
        where = where or str(project_dir / ".env")
    if "Cannot connect to the Docker daemon" in text:
        fix = "start the Docker engine, then check with `docker info`"
    return ToolkitError(f"docker compose config failed: {message}", where=where or str(project_dir / COMPOSE_FILE),
                        fix=fix)


def warnings_of(stderr: str) -> list[str]:
    """Compose's warnings (``level=warning msg=...``) as plain messages, in order."""
    out = []
    for line in stderr.splitlines():
        if "level=warning" in line or line.startswith("WARN"):
            m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
            out.append(m.group(1).replace('\\"', '"') if m else line.strip())
    return out


EXTRA_FILES_ENV = "READINESS_EXTRA_COMPOSE_FILES"


def compose_files(project_dir: Path) -> list[Path]:
    """The root compose file, then any extra files from ``$READINESS_EXTRA_COMPOSE_FILES``.

    The extra files (``os.pathsep``-separated, relative to the project) are overrides, as
    ``docker compose -f a -f b`` merges them; the end-to-end suite uses one to swap images.
    """
    extra = [p for p in os.environ.get(EXTRA_FILES_ENV, "").split(os.pathsep) if p.strip()]
    return [project_dir / COMPOSE_FILE, *((project_dir / p).resolve() for p in extra)]


def command(cli_argv: tuple[str, ...], project_dir: Path, *args: str,
            extra_files: list[Path] | None = None) -> list[str]:
    """A ``docker compose`` command line for this project (the only place that builds one).

    ``extra_files`` are appended after the project's own files (``up`` adds an engine
    compatibility override there; see ``boot.compat_files``).
    """
    files = [arg for f in [*compose_files(project_dir), *(extra_files or [])] for arg in ("-f", str(f))]
    return [*cli_argv, "--project-directory", str(project_dir), *files, *args]


def _base(cli_argv: tuple[str, ...], project_dir: Path) -> list[str]:
    return command(cli_argv, project_dir, "config")


def load(project_dir: Path, cli: ComposeCLI | None = None, *, tolerate_missing: bool = False) -> Model:
    """Render the stack with one ``docker compose config`` call.

    Speed matters (bootstrap runs on every ``invoke up``), so the fast path calls the
    ``docker compose`` plugin directly and skips a separate version call: a Compose too old
    for ``include:`` fails that render, and only then does :func:`detect_compose` run to
    explain why (v1, too old, missing) or to fall back to a standalone v2 binary.

    With ``tolerate_missing`` (preflight), a required variable that is unset does not stop
    the rendering: it is filled with a placeholder for this one call and listed in
    ``Model.missing_required``, so every other check can still run.
    """
    project_dir = project_dir.resolve()
    if not (project_dir / COMPOSE_FILE).is_file():
        raise ToolkitError(f"no {COMPOSE_FILE} in {project_dir}", where=str(project_dir),
                           fix="run the task from the repository root, or set READINESS_PROJECT_DIR")
    if cli is None and not runner.which("docker"):
        cli = detect_compose()
    argv = cli.argv if cli else ("docker", "compose")
    base, cache_key, hit, rendered = _render(project_dir, argv)
    if not rendered.ok and cli is None and not _is_model_error(rendered.stderr):
        cli = detect_compose()  # raises a clear error for a missing, v1 or too-old Compose
        # The render is that CLI's: cached under its key, or a later run would take the cached
        # model for the plugin's and call a `docker compose` that does not work here.
        base, cache_key, hit, rendered = _render(project_dir, cli.argv)
    missing: list[str] = []
    while not rendered.ok and tolerate_missing and len(missing) < 50:
        m = re.search(r"required variable (\w+) is missing a value", rendered.stderr)
        if not m or m.group(1) in missing:
            break
        missing.append(m.group(1))
        rendered = runner.run([*base, "--format", "yaml"], cwd=project_dir,
                              env={name: PLACEHOLDER for name in missing})
    if not rendered.ok:
        raise config_error(rendered, project_dir)
    try:
        model_doc = yaml.load(rendered.stdout, Loader=_Loader) or {}
    except yaml.YAMLError as exc:  # pragma: no cover - Compose output is well-formed
        raise ToolkitError(f"cannot read the output of docker compose config: {exc}") from None
    if hit is None and not missing:
        modelcache.put(project_dir, cache_key, rendered.stdout, rendered.stderr)
    model = Model(project_dir, model_doc, warnings_of(rendered.stderr), cli or ComposeCLI(argv, (0, 0, 0)))
    model.missing_required = sorted(missing)
    validate(model)
    return model


def _render(project_dir: Path, argv: tuple[str, ...]
            ) -> tuple[list[str], str | None, tuple[str, str] | None, runner.Result]:
    """(config command, cache key, cache hit, render) of the stack by the Compose CLI ``argv``:
    the kept render when its key matches, else ``config --format yaml`` run now."""
    base = _base(argv, project_dir)
    cache_key = modelcache.key(project_dir, argv, compose_files(project_dir))
    hit = modelcache.get(project_dir, cache_key)
    if hit is not None:
        return base, cache_key, hit, runner.Result(tuple(base), 0, *hit)
    return base, cache_key, None, runner.run([*base, "--format", "yaml"], cwd=project_dir)


_PORT_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*)):(\d+)(?:/\w+)?$")


def port_variables(project_dir: Path) -> dict[tuple[str, int], str]:
    """(service, container port) -> the variable that sets its published port, from the files as written.

    ``${BIND_ADDRESS:-127.0.0.1}:${HTTPS_PORT:-443}:443`` names HTTPS_PORT for container port
    443, so a finding about a port can say which line of .env to change.
    """
    rendered: dict[tuple[str, int], str] = {}
    for svc, (_, spec) in raw_services(project_dir).items():
        for entry in spec.get("ports") or []:
            m = _PORT_VAR.search(str(entry)) if isinstance(entry, str) else None
            if m:
                rendered[(svc, int(m.group(3)))] = m.group(1) or m.group(2)
    return rendered


def _is_model_error(stderr: str) -> bool:
    """Whether a failed render was about the stack itself (so Compose itself works)."""
    return any(marker in stderr for marker in (
        "failed to parse", "validating ", "required variable", "error while interpolating",
        "yaml:", "service ", "not found", "undefined", "no such file or directory",
    )) and "is not a docker command" not in stderr


#: Variables Compose itself provides for interpolation (from ``-p``, the environment or the
#: top-level ``name:``): referenced by the stack, but never a user's to set in ``.env``.
COMPOSE_BUILTINS = frozenset({"COMPOSE_PROJECT_NAME"})


def variables(model: Model) -> dict[str, Variable]:
    """Every variable the stack references (``docker compose config --variables``), but for
    the ones Compose provides itself (:data:`COMPOSE_BUILTINS`)."""
    assert model.cli is not None
    res = runner.run([*_base(model.cli.argv, model.project_dir), "--variables", "--format", "json"],
                     cwd=model.project_dir)
    if not res.ok:
        raise config_error(res, model.project_dir)
    doc = json.loads(res.stdout or "{}")
    return {name: Variable(name, bool(v.get("Required")), v.get("DefaultValue") or None)
            for name, v in sorted(doc.items()) if name not in COMPOSE_BUILTINS}


def raw_services(project_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Service -> (file relative to the project, its definition as written, uninterpolated).

    Compose's rendered model forgets which file a service came from and has already
    replaced ``$VAR``; findings about what the user *wrote* (an unescaped ``$VAR``) need
    both, so the root file and its ``include:`` entries are read as text with PyYAML.
    """
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for source in sources.walk([project_dir / COMPOSE_FILE], service_refs=False):
        if source.doc is None:
            continue
        path = source.path
        rel = str(path.relative_to(project_dir)) if project_dir in path.parents else str(path)
        for svc, spec in (source.doc.get("services") or {}).items():
            out.setdefault(str(svc), (rel, spec if isinstance(spec, dict) else {}))
    return out
