"""The body of each task, as plain functions that print what they changed.

``tasks.py`` is only the table of tasks and their ``pre=`` order; the work is here so that
tests and the Nox sessions call exactly the same code. Every step is idempotent: a second
run finds everything in place and says "nothing changed".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import certs, compose, dirs, envfile, findings, networks, preflight, runner
from . import secrets as secretslib
from .compose import Model
from .errors import ToolkitError

_MODELS: dict[Path, Model] = {}


def project_dir() -> Path:
    """The stack to work on: ``$READINESS_PROJECT_DIR`` or the repository root."""
    env = os.environ.get("READINESS_PROJECT_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def model(project: Path, *, tolerate_missing: bool = False) -> Model:
    """The rendered model, loaded once per process (every task of a run shares it)."""
    cached = _MODELS.get(project)
    if cached is None or (cached.missing_required and not tolerate_missing):
        cached = _MODELS[project] = compose.load(project, tolerate_missing=tolerate_missing)
    return cached


def forget_model() -> None:
    _MODELS.clear()


def say(task: str, message: str) -> None:
    print(f"{task}: {message}", flush=True)


def report(task: str, changes: list[str], unchanged: str) -> None:
    """One line per change, or one line saying that nothing changed (idempotent reruns)."""
    for line in changes:
        say(task, line)
    if not changes:
        say(task, f"{unchanged} (nothing changed)")


def env(project: Path) -> None:
    result = envfile.ensure(project / ".env", project / ".env.example")
    if result.created:
        say("env", f"created .env from .env.example ({len(result.added)} variables)")
    elif result.added:
        say("env", f"added to .env from .env.example: {', '.join(result.added)}")
    else:
        say("env", ".env has every key of .env.example (nothing changed)")
    forget_model()
    m = model(project, tolerate_missing=True)
    if m.missing_required:
        raise ToolkitError(
            f"required variable(s) unset or empty: {', '.join(m.missing_required)}",
            where=str(project / ".env"),
            fix="set them in .env (their comments in .env.example say what they are)",
        )


def secrets(project: Path) -> None:
    m = model(project)
    specs = secretslib.specs(m)
    secretslib.refuse_tracked(project, sorted({s.path.parent for s in specs}))
    changes = secretslib.ensure(m)
    report("secrets", [f"{m.relpath(ch.path)}: {ch.action}" for ch in changes],
           f"all {sum(1 for s in specs if not s.certificate)} secret files present")


def certificates(project: Path) -> None:
    m = model(project)
    paths = preflight.cert_paths(m)
    if paths is None:
        say("certs", "the stack declares no certificate secrets (nothing to do)")
        return
    secretslib.ensure_dirs([paths.cert, paths.key], [])
    names = certs.required_names(m.all_routed_hosts)
    changed, reasons = certs.ensure(paths, names)
    if changed:
        say("certs", f"generated {m.relpath(paths.cert)} for {len(names)} names: {'; '.join(reasons)}")
    else:
        say("certs", f"{m.relpath(paths.cert)} is valid for all {len(names)} names (nothing changed)")


def data_dirs(project: Path) -> None:
    m = model(project)
    changes, problems = dirs.ensure(m)
    report("dirs", [f"{m.relpath(ch.path)}: {ch.action}" for ch in changes],
           f"all {len(dirs.data_dirs(m))} data directories present")
    if problems:
        lines = [f"  {m.relpath(d.path)} ({d.service}): {why}\n    fix: {dirs.fix_command(d)}" for d, why in problems]
        raise ToolkitError("some bind-mount directories cannot be used by their containers:\n" + "\n".join(lines),
                           fix="run the commands above (or run `invoke dirs` as root), then `invoke dirs` again")


def external_networks(project: Path) -> None:
    m = model(project)
    created = networks.ensure(m)
    report("networks", [f"created external network {name}" for name in created],
           f"all {len(networks.external(m))} external networks present")


def config(project: Path) -> None:
    m = model(project)
    if m.warnings:
        raise ToolkitError("docker compose config printed warnings:\n" + "\n".join(f"  - {w}" for w in m.warnings),
                           where=str(project / compose.COMPOSE_FILE),
                           fix="fix each cause (an unset variable belongs in .env / .env.example)")
    say("config", f"docker compose config: ok, no warning ({len(m.services)} services)")


def lint(project: Path) -> None:
    files = yaml_files(project)
    res = runner.run(["yamllint", "--strict", "-f", "parsable", *map(str, files)], cwd=project)
    if not res.ok:
        raise ToolkitError("yamllint found problems:\n" + res.stdout.strip(), fix="fix the lines listed above")
    say("lint", f"yamllint: {len(files)} YAML files clean")


def yaml_files(project: Path) -> list[Path]:
    """Every YAML file of the stack: the root file and everything under infra/."""
    found = [project / compose.COMPOSE_FILE, project / ".yamllint"]
    found += sorted(p for ext in ("*.yml", "*.yaml") for p in (project / "infra").rglob(ext))
    return [p for p in found if p.is_file()]


def run_preflight(project: Path, *, as_json: bool = False) -> int:
    m = None
    try:
        m = model(project, tolerate_missing=True)
    except ToolkitError:
        m = None
    result = preflight.run_checks(m, preflight.gather(m)) if m else preflight.preflight(project)
    sys.stdout.write(findings.to_json(result) if as_json else findings.to_text(result))
    sys.stdout.flush()
    return 1 if findings.blocking(result) else 0


def up(project: Path, timeout: int) -> None:
    import threading

    from . import boot, health

    threading.Thread(target=health.preload, daemon=True).start()  # overlaps `compose up`
    m = model(project)
    say("up", f"docker compose up -d --wait (timeout {timeout} s) ...")
    boot.up(m, timeout)
    say("up", f"all {len(m.services)} services are up and healthy (`invoke health` probes the endpoints)")


def run_health(project: Path, *, as_json: bool, wait: bool, timeout: float, interval: float) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from . import health

    # `compose ps` does not need the rendered model: run it alongside the render, and load
    # the HTTP client while both subprocesses run; this nearly halves one health check.
    plugin = ("docker", "compose")
    with ThreadPoolExecutor(max_workers=2) as pool:
        early = pool.submit(health.ps_command, plugin, project)
        rendered = pool.submit(model, project)
        health.preload()
        m = rendered.result()
        first = early.result()
    containers = first if m.cli and m.cli.argv == plugin and first is not None else None
    checks = health.check(m, preflight.root_ca(m), wait=wait, timeout=timeout, interval=interval,
                          containers=containers)
    sys.stdout.write(health.to_json(checks) if as_json else health.to_text(checks))
    sys.stdout.flush()
    return 0 if checks and all(c.ok for c in checks) else 1


def down(project: Path, volumes: bool) -> None:
    from . import boot

    boot.down(model(project), volumes)
    kept = "" if volumes else "; data, secrets and named volumes kept"
    say("down", f"stack stopped and removed{kept}")


def status(project: Path) -> int:
    from . import health

    m = model(project)
    checks = health.container_checks(m, health.ps(m))
    sys.stdout.write(health.to_text(checks))
    return 0 if all(c.ok for c in checks) else 1


def logs(project: Path, service: str, tail: int, follow: bool) -> int:
    from . import boot

    return boot.logs(model(project), service, tail, follow)
