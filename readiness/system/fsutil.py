"""Atomic, lossless file writes.

A secret, key or ``.env`` is written to a temporary file in the same directory, flushed and
fsynced, then renamed over the target. A crash at any moment leaves either the old file or
the complete new one, never a truncated one. ``create_exclusive`` never replaces an
existing file, so two concurrent runs cannot overwrite each other's secret.

Where the filesystem supports it (Linux ``O_TMPFILE``: ext4, xfs, btrfs, tmpfs, overlayfs),
the temporary file has no name while it is being written, so a run killed mid-write leaves
nothing behind: ``create_exclusive`` links the complete file straight to its target, and
``atomic_write`` gives it a temporary name only once it is complete. Elsewhere a named
``.<name>.*.tmp`` file is used, which a killed run can leave behind (never the target).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .. import output
from ..errors import ToolkitError


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


def _fill(fd: int, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    if owner is not None:
        st = os.fstat(fd)
        if owner != (st.st_uid, st.st_gid):
            os.fchown(fd, *owner)  # before fchmod: chown clears set-id bits
    os.fchmod(fd, mode)
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _write_temp(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _fill(fd, data, mode, owner)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


_PROC_FD = "/proc/self/fd"


def _write_unnamed(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> int | None:
    """An open fd of a complete, fsynced file with no name yet (``O_TMPFILE``), or None.

    None means the platform or filesystem cannot do it; the caller then uses a named temp
    file. A killed process leaves nothing behind: the kernel frees an unnamed file.
    """
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir(_PROC_FD):
        return None
    try:
        fd = os.open(path.parent, flag | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None  # old kernel or a filesystem without O_TMPFILE
        raise
    try:
        _fill(fd, data, mode, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _name_fd(fd: int, path: Path) -> None:
    """Give the unnamed file behind ``fd`` the name ``path``; FileExistsError if taken.

    ``linkat(AT_SYMLINK_FOLLOW)`` on ``/proc/self/fd/N`` (open(2)'s documented way, no
    privilege needed). A directory fd is passed on purpose: without one CPython calls plain
    ``link()``, which links the /proc symlink itself and fails with EXDEV.
    """
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(f"{_PROC_FD}/{fd}", path.name, dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def fsync(path: Path) -> None:
    """Flush a file, or a directory's entries (after a rename or link in it), to the disk; a
    filesystem that cannot is left as it is (the write itself already succeeded)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    with contextlib.suppress(OSError):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename).

    ``owner`` (uid, gid) is given to the new file before it takes the name, so that
    replacing a file owned by someone else keeps its owner (needs the right to chown).
    """
    try:
        fd = _write_unnamed(path, data, mode, owner)
        if fd is None:
            tmp = _write_temp(path, data, mode, owner)
        else:
            try:
                while True:  # a name only for the complete file, then the atomic rename
                    tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp"))
                    try:
                        _name_fd(fd, Path(tmp))
                        break
                    except FileExistsError:
                        continue
            finally:
                os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync(path.parent)
    except OSError as exc:
        raise _fail(path, exc, "write") from None


def create_exclusive(path: Path, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` with ``data`` unless it already exists; atomic and race-safe.

    Returns True when this call created the file, False when it was already there (its
    content is left untouched). Uses ``link()`` of a complete temp file, which fails with
    EEXIST instead of replacing, so a racing writer can never be overwritten.
    """
    try:
        fd = _write_unnamed(path, data, mode)
        if fd is not None:
            try:
                _name_fd(fd, path)
            except FileExistsError:
                return False
            finally:
                os.close(fd)
            fsync(path.parent)
            return True
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
            fsync(path.parent)
        return created
    except OSError as exc:
        raise _fail(path, exc, "create") from None


def sweep_temps(path: Path) -> list[Path]:
    """Remove the temporary siblings (``.<name>.*.tmp``) that killed writes of ``path`` left.

    A write is killed between naming its complete temporary file and renaming it over
    ``path`` (or, without ``O_TMPFILE``, while writing it): the file stays, and may hold a
    secret. Call this only while holding the lock every writer of ``path`` takes: a live
    writer's temporary file exists for that instant too. Returns what was removed.
    """
    removed = []
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for child in path.parent.iterdir():
            if child.name.startswith(prefix) and child.name.endswith(".tmp") and not child.is_dir():
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()
                    removed.append(child)
    return removed


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
            # A human line (stderr under --json: stdout then holds only the document).
            output.current().line(f"waiting for another run to release {path} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
