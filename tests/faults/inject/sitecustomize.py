"""Test-only fault injection: slows file writes and renames so that a SIGKILL can land mid-write.

This directory is put on ``PYTHONPATH`` by the fault tests only; Python's ``site`` module then
imports this file at start-up. Nothing happens unless ``READINESS_FAULT_SLOW_IO`` is set (the
pause in seconds) and ``READINESS_FAULT_ROOT`` names a directory. Then, for files under that
directory only:

* every ``os.write`` and every write to a file opened with ``open()``/``Path.open()`` is split
  into ``READINESS_FAULT_CHUNKS`` pieces with the pause between them, so a write of a few dozen
  bytes takes long enough to be interrupted half-way (a real disk can be that slow);
* every ``os.replace``/``os.rename`` onto it waits the pause first, which widens the moment
  between two renames (a certificate and its key are two files).

``READINESS_FAULT_LOG`` (optional) receives ``begin <path>`` / ``end <path>`` / ``rename <path>``
lines, so a test can tell whether a kill interrupted a write. Paths only, never data. The
product code knows nothing of this file.
"""

from __future__ import annotations

import builtins
import io
import os
import time

_PAUSE = float(os.environ.get("READINESS_FAULT_SLOW_IO") or 0)
_ROOT = os.environ.get("READINESS_FAULT_ROOT", "")
_CHUNKS = max(1, int(os.environ.get("READINESS_FAULT_CHUNKS") or 4))
_LOG = os.environ.get("READINESS_FAULT_LOG", "")

if _PAUSE > 0 and _ROOT:
    _root = os.path.realpath(_ROOT) + os.sep
    _real_write, _real_open, _real_replace, _real_rename = os.write, io.open, os.replace, os.rename

    def _log(event: str, path: str) -> None:
        if not _LOG:
            return
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _real_write(fd, f"{os.getpid()} {event} {path}\n".encode())
        finally:
            os.close(fd)

    def _fd_path(fd: int) -> str | None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        return path if path.startswith(_root) else None

    def _inside(path) -> str | None:
        try:
            real = os.path.realpath(os.fspath(path))
        except TypeError:  # an fd or something exotic
            return None
        return real if real.startswith(_root) else None

    def _slow_write(raw_write, path: str, data) -> int:
        view = memoryview(data).cast("B")
        step = max(1, -(-len(view) // _CHUNKS))
        done = 0
        _log("begin", path)
        while done < len(view):
            done += raw_write(view[done:done + step])
            if done < len(view):
                time.sleep(_PAUSE)
        _log("end", path)
        return done

    def write(fd: int, data) -> int:
        path = _fd_path(fd)
        if path is None or not len(data):
            return _real_write(fd, data)
        return _slow_write(lambda chunk: _real_write(fd, chunk), path, data)

    class _SlowFile:
        """A file object whose writes go out in pieces (flushed, with pauses between)."""

        def __init__(self, inner, path: str) -> None:
            self._inner, self._path = inner, path

        def write(self, data):
            if not len(data):
                return self._inner.write(data)
            if isinstance(data, str):
                step = max(1, -(-len(data) // _CHUNKS))
                parts = [data[i:i + step] for i in range(0, len(data), step)]
                _log("begin", self._path)
                for i, part in enumerate(parts):
                    self._inner.write(part)
                    self._inner.flush()
                    if i < len(parts) - 1:
                        time.sleep(_PAUSE)
                _log("end", self._path)
                return len(data)

            def raw(chunk):
                n = self._inner.write(chunk)
                self._inner.flush()
                return n

            return _slow_write(raw, self._path, data)

        def __enter__(self):
            self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

        def __iter__(self):
            return iter(self._inner)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    def open(file, mode="r", *args, **kwargs):  # noqa: A001 - replaces the builtin on purpose
        inner = _real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and not isinstance(file, int):
            path = _inside(file)
            if path is not None:
                return _SlowFile(inner, path)
        return inner

    def _slow_rename(real):
        def rename(src, dst, *args, **kwargs):
            path = _inside(dst) if not args and not kwargs else None
            if path is not None:
                time.sleep(_PAUSE)
                _log("rename", path)
            return real(src, dst, *args, **kwargs)

        return rename

    os.write = write
    io.open = builtins.open = open
    os.replace = _slow_rename(_real_replace)
    os.rename = _slow_rename(_real_rename)
