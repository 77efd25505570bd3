"""Atomic, lossless file writes.

A secret, key or ``.env`` is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target. A crash at any moment leaves either the old file or
the complete new one, never a truncated one. ``create_exclusive`` never replaces an
existing file, so two concurrent runs cannot overwrite each other's secret.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import ToolkitError


def _fail(path: Path, exc: OSError, action: str) -> ToolkitError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    fix = {
        errno.ENOSPC: f"free disk space on the filesystem holding {path.parent}, then run again",
        errno.EROFS: f"{path.parent} is read-only: make it writable or run from a writable clone",
        errno.EACCES: f"make {path.parent} writable for the current user "
        f"(`sudo chown -R $(id -u):$(id -g) {path.parent}`), then run again",
        errno.EPERM: f"make {path.parent} writable for the current user "
        f"(`sudo chown -R $(id -u):$(id -g) {path.parent}`), then run again",
    }.get(exc.errno or 0, "fix the cause above and run again")
    return ToolkitError(f"cannot {action} {path}: {reason}", where=str(path), fix=fix)


def _write_temp(path: Path, data: bytes, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename)."""
    try:
        tmp = _write_temp(path, data, mode)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
    except OSError as exc:
        raise _fail(path, exc, "write") from None


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it already exists; atomic and race-safe.

    Returns True when this call created the file, False when it was already there (its
    content is left untouched). Uses ``link()`` of a complete temp file, which fails with
    EEXIST instead of replacing, so a racing writer can never be overwritten.
    """
    try:
        tmp = _write_temp(path, data, mode)
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if created:
            _fsync_dir(path.parent)
        return created
    except OSError as exc:
        raise _fail(path, exc, "create") from None


def ensure_dir(path: Path, mode: int) -> bool:
    """Create ``path`` (and parents) with ``mode``; returns True if it was created."""
    try:
        if path.is_dir():
            return False
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
        return True
    except OSError as exc:
        raise _fail(path, exc, "create directory") from None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` for the duration of the block.

    Two ``invoke bootstrap`` runs started together serialise here; the second one then
    finds everything in place and changes nothing.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _fail(path, exc, "lock") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another run to release {path} ...", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
