"""Boot, stop and inspect the stack with Compose, explaining every failure.

``up`` is ``docker compose up -d --wait``; when it fails, the user gets, per service that
did not become healthy, its state, the last healthcheck output and its last log lines, not
just Compose's "dependency failed to start".
"""

from __future__ import annotations

from . import compose, health, runner
from .compose import Model
from .errors import ToolkitError


def _compose(model: Model, *args: str) -> list[str]:
    assert model.cli is not None
    return compose.command(model.cli.argv, model.project_dir, *args)


def engine_hint(stderr: str) -> str | None:
    if "Cannot connect to the Docker daemon" in stderr or "docker daemon running" in stderr:
        return ("start the Docker engine (Linux: `sudo systemctl start docker`; macOS/WSL2: Docker Desktop), "
                "then run again")
    return None


def diagnose(model: Model, log_lines: int = 15) -> list[str]:
    """One paragraph per service that is not healthy, with evidence."""
    try:
        checks = health.container_checks(model, health.ps(model))
    except ToolkitError as exc:
        return [exc.message]
    out = []
    for c in checks:
        if c.ok:
            continue
        logs = runner.run(_compose(model, "logs", "--no-color", "--tail", str(log_lines), c.service),
                          cwd=model.project_dir, timeout=60)
        tail = "\n".join("      " + line for line in (logs.stdout or logs.stderr).strip().splitlines()[-log_lines:])
        out.append(f"  {c.service}: {c.detail}\n    last log lines:\n{tail or '      (none)'}")
    return out


def up(model: Model, timeout: int) -> None:
    res = runner.run(_compose(model, "up", "-d", "--wait", "--wait-timeout", str(timeout)),
                     cwd=model.project_dir, timeout=timeout + 120)
    if res.ok:
        return
    hint = engine_hint(res.stderr)
    if hint:
        raise ToolkitError(f"docker compose up failed: {res.stderr.strip().splitlines()[-1]}", fix=hint)
    details = diagnose(model)
    summary = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    raise ToolkitError(
        f"the stack did not become healthy within {timeout} s ({summary})"
        + ("\n" + "\n".join(details) if details else ""),
        fix="fix the service(s) above, then `invoke up` again; `invoke logs SERVICE` shows more",
    )


def down(model: Model, volumes: bool) -> None:
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    res = runner.run(_compose(model, *args), cwd=model.project_dir, timeout=300)
    if not res.ok:
        raise ToolkitError(f"docker compose down failed: {res.stderr.strip()}",
                           fix=engine_hint(res.stderr) or "see the message above")


def logs(model: Model, service: str, tail: int, follow: bool) -> int:
    service = "" if service == "all" else service
    if service and service not in model.services:
        raise ToolkitError(f"no service named {service!r}",
                           fix=f"choose one of: all, {', '.join(sorted(model.services))}")
    args = ["logs", "--no-color", "--tail", str(tail), *(["--follow"] if follow else [])]
    args += [service] if service else []
    return runner.stream(_compose(model, *args), cwd=model.project_dir)
