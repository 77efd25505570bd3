"""Docker Compose itself: which CLI to call, the one builder of its command lines, and the render.

Compose is the single source of truth: services, secrets, bind mounts, networks, ports and
variables all come from ``docker compose config``. :func:`load` runs the few ``config`` calls
a task needs (once per process, or not at all when the render cache holds the answer:
:mod:`.modelcache`) and turns their output into a :class:`~readiness.stack.model.Model`.
:func:`detect_compose` finds the plugin or a standalone v2 binary, and refuses v1 or a
release too old for ``include:``; :func:`command` is the only place a Compose command line is
built.

Why YAML and not ``--format json``: Compose v2.40 drops ``x-*`` fields of services and
secrets from the interpolated JSON output; its YAML output keeps them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ToolkitError
from ..system import runner
from . import modelcache, sources
from .model import ComposeCLI, Model, validate
from .sources import COMPOSE_FILE

#: ``include:`` appeared in Compose 2.20.0; older v2 releases ignore or reject it.
MIN_COMPOSE = (2, 20, 0)
#: Stand-in value for a required variable that is unset, so preflight can render the rest.
PLACEHOLDER = "__unset__"


def _parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


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


def _yaml_error_location(message: str) -> tuple[str, str]:
    """Re-parse the file Compose could not parse, to name the exact line."""
    m = re.search(r"failed to parse (\S+?):\s*(.*)", message)
    if not m:
        return "", message
    path = m.group(1)
    try:
        sources.load_yaml(Path(path).read_text(encoding="utf-8"))
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
    compatibility override there; see ``readiness.run.start.compat_files``).
    """
    files = [arg for f in [*compose_files(project_dir), *(extra_files or [])] for arg in ("-f", str(f))]
    return [*cli_argv, "--project-directory", str(project_dir), *files, *args]


def command_for(model: Model, *args: str, extra_files: list[Path] | None = None) -> list[str]:
    """:func:`command` for the CLI that rendered ``model`` (every task after the render uses it)."""
    assert model.cli is not None
    return command(model.cli.argv, model.project_dir, *args, extra_files=extra_files)


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
        model_doc = sources.load_yaml(rendered.stdout) or {}
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


#: The variable naming the stack a task works on (the tests point it at a copy).
PROJECT_DIR_ENV = "READINESS_PROJECT_DIR"
#: The checkout this package lives in: the stack ``invoke`` works on by default.
CHECKOUT = Path(__file__).resolve().parents[2]


def project_dir(*, fallback: Callable[[], Path] = lambda: CHECKOUT) -> Path:
    """The stack to work on: ``$READINESS_PROJECT_DIR`` when it is set, else ``fallback()``
    (the checkout this package lives in; the pre-commit guard passes the git work tree)."""
    env_dir = os.environ.get(PROJECT_DIR_ENV)
    return Path(env_dir).resolve() if env_dir else fallback()
