"""Full disk and read-only paths (issue #6): a clear error naming the path, nothing lost.

Real mounts, made by the test as root: a 16 KiB tmpfs (``mount -t tmpfs -o size=16k``) and a
read-only bind mount (``mount --bind`` + ``mount -o remount,ro,bind``); every mount is undone
in teardown. Each failing task must exit non-zero with one ``error:`` paragraph that names
the path and no traceback; every file that was there before must keep its bytes; once the
fault is gone, the next run completes and keeps every value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .support import (
    LEDGER,
    assert_clean_failure,
    cert_problems,
    make_mini,
    remove_network,
    run,
    secret_problems,
    snapshot,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs or a bind mount needs root (CI is root)")


@pytest.fixture
def mounts():
    """Mount helper; unmounts everything it mounted, innermost first, whatever happens."""
    done: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
        done.append(target)

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def unchanged(before: dict[str, bytes], project: Path) -> list[str]:
    after = snapshot(project)
    return [k for k, v in before.items() if after.get(k) != v]


def test_full_disk(tmp_path, mounts, docker):
    LEDGER.start("disk.full")
    cases = 0
    project, net = make_mini(tmp_path / "mini")
    try:
        assert run(project, "env").returncode == 0
        secrets_dir = project / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        mounts("-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", target=secrets_dir)

        # 1. secrets: the first files fit, then the tmpfs is full
        res = run(project, "secrets")
        cases += 1
        assert_clean_failure(res, "No space left on device", str(secrets_dir))
        assert not secret_problems(project), "a secret that was written is incomplete"
        assert not [p for p in secrets_dir.iterdir() if p.is_file() and p.stat().st_size == 0], "empty file left"
        kept = snapshot(project)
        assert any(k.startswith("secrets/") for k in kept), "nothing fitted: the test proves less than it should"

        # 2. the same run again, and certs: still clean failures, nothing already written changes
        for task, needle in (("secrets", f"where: {secrets_dir}"), ("certs", f"where: {secrets_dir / 'certs'}")):
            res = run(project, task)
            cases += 1
            assert_clean_failure(res, needle)
            assert not unchanged(kept, project)
            assert not secret_problems(project) and not cert_problems(project)

        # 3. .env on a full filesystem: the project itself on a 16 KiB tmpfs, filled up
        small = tmp_path / "small"
        small.mkdir()
        mounts("-t", "tmpfs", "-o", "size=16k", "tmpfs", target=small)
        for name in ("docker-compose.yml", ".env.example", "infra"):
            src = project / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, small / name)
        env_text = (project / ".env").read_text()
        (small / ".env").write_text("".join(ln for ln in env_text.splitlines(True) if not ln.startswith("WEB_IMAGE=")))
        filler = small / "filler"
        with pytest.raises(OSError), open(filler, "wb", buffering=0) as f:
            while True:
                f.write(b"x" * 1024)
        env_before = (small / ".env").read_bytes()
        res = run(small, "env")
        cases += 1
        assert_clean_failure(res, "No space left on device", str(small / ".env"))
        assert (small / ".env").read_bytes() == env_before, ".env changed on a failed append"

        # 4. room again: the next runs complete and keep every value already written
        subprocess.run(["mount", "-o", "remount,size=1m", str(secrets_dir)], check=True)
        res = run(project, "bootstrap")
        assert res.returncode == 0, res.stdout + res.stderr
        assert not unchanged(kept, project), "a value written before the disk filled up was changed"
        assert not secret_problems(project) and not cert_problems(project)
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=1m", str(small)], check=True)
        res = run(small, "env")
        assert res.returncode == 0, res.stderr
        assert (small / ".env").read_bytes().startswith(env_before) and b"WEB_IMAGE=" in (small / ".env").read_bytes()
    finally:
        remove_network(net)
    LEDGER.done("disk.full", cases, "each run exits 1 with `error: cannot create|write <path>: No space left on "
                "device` (no traceback, no empty or partial file); with room again the next run completes")


def test_read_only_paths(tmp_path, mounts, docker):
    LEDGER.start("disk.readonly")
    cases = 0
    project, net = make_mini(tmp_path / "mini")
    try:
        assert run(project, "bootstrap").returncode == 0
        secrets_dir = project / "secrets"
        # something left to write: one secret and the certificate pair are missing
        (secrets_dir / "api_token").unlink()
        for name in ("cert.pem", "key.pem"):
            (secrets_dir / "certs" / name).unlink()
        before = snapshot(project)

        mounts("--bind", str(secrets_dir), target=secrets_dir)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(secrets_dir)], check=True)
        res = run(project, "secrets")
        cases += 1
        assert_clean_failure(res, "Read-only file system", str(secrets_dir / "api_token"))
        res = run(project, "certs")
        cases += 1
        assert_clean_failure(res, "Read-only file system", str(secrets_dir / "certs"))
        assert not unchanged(before, project)

        env = project / ".env"  # a key to append, on a read-only project
        env.write_text("".join(ln for ln in env.read_text().splitlines(True) if not ln.startswith("WEB_IMAGE=")))
        before = snapshot(project)
        mounts("--bind", str(project), target=project)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(project)], check=True)
        res = run(project, "env")
        cases += 1
        assert_clean_failure(res, "Read-only file system", str(env))
        assert not unchanged(before, project)
        assert env.read_bytes() == before[".env"]
    finally:
        for target in (project, project / "secrets"):  # writable again for the last part
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
    try:
        res = run(project, "bootstrap")
        assert res.returncode == 0, res.stdout + res.stderr
        after = snapshot(project)
        assert all(after.get(k) == v for k, v in before.items() if k != ".env")
        assert after[".env"].startswith(before[".env"])
        assert not secret_problems(project) and not cert_problems(project)
    finally:
        remove_network(net)
    LEDGER.done("disk.readonly", cases, "each run exits 1 with `error: cannot create|lock|write <path>: Read-only "
                "file system` (no traceback); once writable the next run completes")
