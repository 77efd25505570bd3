"""One error type for every expected failure.

A task that cannot go on raises :class:`ToolkitError`; ``tasks.py`` turns it into a
one-paragraph message and a non-zero exit. Nothing the user can cause should surface as a
traceback.
"""

from __future__ import annotations

import errno
import os


class ToolkitError(Exception):
    """An expected failure: what is wrong, where, and the command that fixes it."""

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None, code: int = 1):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix
        self.code = code

    def render(self) -> str:
        """The paragraph printed to stderr."""
        parts = [f"error: {self.message}"]
        if self.where:
            parts.append(f"  where: {self.where}")
        if self.fix:
            parts.append(f"  fix:   {self.fix}")
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.render()


def take_back(path: str | object) -> str:
    """How the user gets a file back that an earlier ``sudo`` run left owned by root."""
    uid, gid = os.getuid(), os.getgid()
    return (f"the current user may not change {path}: if an earlier `sudo` run left it owned by root, take it back "
            f"once with `sudo chown -R {uid}:{gid} {path}` (or, on a rootful engine, without sudo: `docker run "
            f"--rm -v {path}:/d busybox:1.37.0 chown -R {uid}:{gid} /d`); never run the toolkit itself with sudo")


def from_oserror(exc: OSError) -> ToolkitError:
    """An ``OSError`` as what/where/fix: the path, the reason, and the usual way out.

    The common case is a file an earlier ``sudo`` run left owned by root: the user can give it
    back once; the toolkit itself never needs sudo.
    """
    path = exc.filename or ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        fix = take_back(path) if path else "check the permissions of the files named above"
    elif exc.errno == errno.ENOSPC:
        fix = "free disk space, then run again"
    elif exc.errno == errno.EROFS:
        fix = f"{path or 'the path'} is on a read-only filesystem: run from a writable clone"
    elif exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
        fix = "the filesystem does not support file locks (a network filesystem?): run from a local disk"
    else:
        fix = "fix the cause above, then run again"
    return ToolkitError(f"cannot access {path}: {reason}" if path else f"system error: {reason}",
                        where=str(path) or None, fix=fix)
