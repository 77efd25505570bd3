"""How much each data directory holds, and what is left on its filesystem (``invoke status``).

A full disk is among the failures users of self-hosted stacks report most: databases stop
accepting writes, and the cause is far from the symptom. ``status`` therefore shows, beside
the containers, the size of every data directory and the free space of the filesystem under
it, so that growth is seen before it stops a service.

Data directories belong to container uids (Grafana 472, Spilo 101, ...) with mode 0750, and a
database keeps subdirectories of mode 0700: root measures them directly; any other user asks
one short-lived helper container (``du -sk``, read-only mounts, only CAP_DAC_READ_SEARCH, no
network), which sees them as the engine's containers do. A size that cannot be had stays
None with the reason, never a guess. Nothing here writes to the data (the helper image is
pulled if the engine lacks it, as for every helper).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError
from ..prepare import dirs as dirslib
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import hostfacts
from ..system.engine import Engine


@dataclass(frozen=True)
class Usage:
    """One data directory: bytes it holds and bytes free on its filesystem (None: unknown)."""

    service: str
    path: Path
    size: int | None
    free: int | None
    error: str = ""

    def as_doc(self, model: Model) -> dict:
        return {"service": self.service, "path": model.relpath(self.path), "bytes": self.size,
                "free_bytes": self.free, "error": self.error}


def size_direct(path: Path) -> int:
    """Bytes allocated below ``path`` (``du``'s way: blocks, each inode once, no symlink
    followed); raises OSError when a directory cannot be read."""
    total, seen = 0, set()

    def gone_ok(exc: OSError) -> None:
        if not isinstance(exc, FileNotFoundError):  # removed meanwhile (a WAL segment, a temp file): du skips it too
            raise exc

    for top, subdirs, files in os.walk(path, onerror=gone_ok):
        for name in [*subdirs, *files]:
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total + os.lstat(path).st_blocks * 512


def helper_script(count: int) -> str:
    """One line ``<index> <KiB>`` per ``/mnt/<index>`` (``du -sk``: busybox and coreutils alike)."""
    return "\n".join(f'echo "{i} $(du -sk /mnt/{i} | cut -f1)"' for i in range(count))


def parse_helper(text: str, count: int) -> dict[int, int]:
    """The helper's lines -> {index: bytes}."""
    out: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) < count:
            out[int(parts[0])] = int(parts[1]) * 1024
    return out


def measure(model: Model, engine: Engine | None, *, direct: bool | None = None) -> list[Usage]:
    """Every data directory of the stack that exists, with its size and free space.

    ``direct``: measure on the host (default: when running as root on a local engine); else
    through one helper container for all of them."""
    found = [d for d in dirslib.data_dirs(model) if d.path.is_dir()]
    remote = engine is not None and engine.kind == enginelib.Kind.REMOTE
    direct = (os.geteuid() == 0 and not remote) if direct is None else direct
    sizes: dict[Path, int] = {}
    errors: dict[Path, str] = {}
    if direct:
        for d in found:
            try:
                sizes[d.path] = size_direct(d.path)
            except OSError as exc:
                errors[d.path] = f"{exc.strerror or exc} ({exc.filename})"
    elif found and remote:
        errors = {d.path: "the engine runs on another machine: its data directories are there" for d in found}
    elif found and engine is None:
        errors = {d.path: "not readable by this user, and the engine does not answer to look through" for d in found}
    elif found:
        mounts = [(d.path, f"/mnt/{i}") for i, d in enumerate(found)]
        try:
            stdout, why = enginelib.look_into(engine, model.helper_image, helper_script(len(found)), mounts)
        except ToolkitError as exc:  # the stack names no helper image
            stdout, why = "", exc.message
        # `du` exits non-zero when a file vanishes under it, yet prints its totals: they count.
        answers = parse_helper(stdout, len(found))
        why = "" if answers else why
        for i, d in enumerate(found):
            if i in answers:
                sizes[d.path] = answers[i]
            else:
                errors[d.path] = why or "the helper container gave no answer"
    out = []
    for d in found:
        free = hostfacts.free_bytes(d.path) if not remote else None
        out.append(Usage(d.service, d.path, sizes.get(d.path), free[1] if free else None, errors.get(d.path, "")))
    return out


def human(n: int) -> str:
    """``512 B``, ``4.0 KiB``, ``37.5 MiB``, ``1.4 GiB``."""
    size, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"


def to_text(model: Model, usage: list[Usage]) -> str:
    """The table ``status`` prints under the containers."""
    if not usage:
        return "data directories: none yet (`invoke dirs` creates them)"
    rows = [("DATA DIRECTORY", "SERVICE", "SIZE", "FREE ON ITS FILESYSTEM")]
    for u in usage:
        size = human(u.size) if u.size is not None else f"unknown: {u.error}"
        rows.append((model.relpath(u.path), u.service, size, human(u.free) if u.free is not None else "unknown"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join([*(r[i].ljust(widths[i]) for i in range(3)), r[3]]).rstrip() for r in rows)
