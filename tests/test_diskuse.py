"""`invoke status`'s data directory sizes (readiness.run.diskuse), without an engine.

Measured on the host the way ``du`` does (allocated blocks, a hard-linked file once, a
symbolic link not followed); the helper container's ``du -sk`` lines parsed as busybox and
coreutils print them. Through the engine it runs in tests/test_bootstrap.py (non-root and
rootless in CI: the helper's path; root: the host's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from readiness.run import diskuse


def test_size_counts_blocks_once_and_follows_no_link(tmp_path: Path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "big").write_bytes(os.urandom(200_000))
    os.link(d / "sub" / "big", d / "hardlink")
    outside = tmp_path / "outside"
    outside.write_bytes(os.urandom(500_000))
    (d / "link").symlink_to(outside)
    size = diskuse.size_direct(d)
    big = os.lstat(d / "sub" / "big").st_blocks * 512
    assert big >= 200_000
    assert big <= size < big + 64 * 1024  # the file once, plus directories and the link; never the target
    (d / "sub" / "more").write_bytes(os.urandom(100_000))
    assert diskuse.size_direct(d) >= size + 100_000


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory (CI runs this as user ci)")
def test_an_unreadable_directory_is_an_error_not_a_smaller_size(tmp_path: Path):
    d = tmp_path / "data"
    (d / "locked").mkdir(parents=True)
    (d / "locked").chmod(0)
    try:
        with pytest.raises(PermissionError):
            diskuse.size_direct(d)
    finally:
        (d / "locked").chmod(0o755)


def test_helper_lines_are_parsed_per_mount():
    script = diskuse.helper_script(2)
    assert "du -sk /mnt/0" in script and "du -sk /mnt/1" in script
    assert diskuse.parse_helper("0 12\n1 2048\n7 5\nnoise\n", 2) == {0: 12 * 1024, 1: 2048 * 1024}
    assert diskuse.parse_helper("0 \n", 1) == {}  # du failed for that mount: no size, not zero


def test_human_sizes():
    assert [diskuse.human(n) for n in (0, 512, 4096, 39_321_600, 3 * 1024 ** 3)] == \
        ["0 B", "512 B", "4.0 KiB", "37.5 MiB", "3.0 GiB"]
