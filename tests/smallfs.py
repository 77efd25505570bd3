"""A real, small filesystem for the full-disk tests: a tmpfs of a few MiB, mounted for a block.

Mounting needs root: anyone else (CI's non-root and rootless passes) skips, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_filesystem(path: Path, mib: int) -> Iterator[Path]:
    """``path`` (created) as a tmpfs of ``mib`` MiB for the block; unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])
