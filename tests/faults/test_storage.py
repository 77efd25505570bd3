"""Full disk and read-only paths: a clear error naming the path, nothing lost.

Real mounts, made by the test as root: a 16 KiB tmpfs (``mount -t tmpfs -o size=16k``) and a
read-only bind mount (``mount --bind`` + ``mount -o remount,ro,bind``); every mount is undone
in teardown. Each failing task must exit non-zero with one ``error:`` paragraph that names
the path and no traceback; every file that was there before must keep its bytes; once the
fault is gone, the next run completes and keeps every value.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_root  # tests/conftest.py

from .support import (
    LEDGER,
    cert_problems,
    failure_problems,
    make_mini,
    remove_network,
    run,
    secret_problems,
    snapshot,
)


@pytest.fixture
def mounts():
    """Mount helper; unmounts everything it mounted, innermost first, whatever happens."""
    require_root("mounting a tmpfs or a bind mount needs root (CI is root)")
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


FULL = "each run on a full disk exited non-zero with one `error:` paragraph naming the path, no traceback"
READ_ONLY = "each run on a read-only path exited non-zero with one `error:` paragraph naming the path, no traceback"


def test_full_disk(tmp_path, mounts, docker):
    row = LEDGER.row("disk.full")
    project, net = make_mini(tmp_path / "mini")
    try:
        assert run(project, "env").returncode == 0
        secrets_dir = project / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        mounts("-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", target=secrets_dir)

        # 1. secrets: the first files fit, then the tmpfs is full
        res = run(project, "secrets")
        row.cases += 1
        row.check(not failure_problems(res, "No space left on device", str(secrets_dir)), FULL,
                  failure_problems(res, "No space left on device", str(secrets_dir)))
        row.check(not secret_problems(project), "every secret written before the disk filled up is complete",
                  secret_problems(project), keeps_data=True)
        empty = [p.name for p in secrets_dir.iterdir() if p.is_file() and p.stat().st_size == 0]
        row.check(not empty, "no empty file left", empty)
        kept = snapshot(project)
        assert any(k.startswith("secrets/") for k in kept), "nothing fitted: the test proves less than it should"

        # 2. the same run again, and certs: still clean failures, nothing already written changes
        for task, needle in (("secrets", f"where: {secrets_dir}"), ("certs", f"where: {secrets_dir / 'certs'}")):
            res = run(project, task)
            row.cases += 1
            row.check(not failure_problems(res, needle), FULL, failure_problems(res, needle))
            row.check(not unchanged(kept, project), "a failed run changed no file already written",
                      unchanged(kept, project), keeps_data=True)
            problems = secret_problems(project) + cert_problems(project)
            row.check(not problems, "every secret and certificate file present is complete", problems)

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
        row.cases += 1
        row.check(not failure_problems(res, "No space left on device", str(small / ".env")), FULL,
                  failure_problems(res, "No space left on device", str(small / ".env")))
        row.check((small / ".env").read_bytes() == env_before, "a failed append left .env byte for byte as it was",
                  keeps_data=True)

        # 4. room again: the next runs complete and keep every value already written
        subprocess.run(["mount", "-o", "remount,size=1m", str(secrets_dir)], check=True)
        res = run(project, "bootstrap")
        row.check(res.returncode == 0, "with room again the next run exited 0", res.stdout + res.stderr)
        row.check(not unchanged(kept, project), "with room again the next run kept every value written before",
                  unchanged(kept, project), keeps_data=True)
        problems = secret_problems(project) + cert_problems(project)
        row.check(not problems, "with room again every secret and the pair are complete", problems)
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=1m", str(small)], check=True)
        res = run(small, "env")
        row.check(res.returncode == 0, "with room again the next run exited 0", res.stderr)
        data = (small / ".env").read_bytes()
        row.check(data.startswith(env_before) and b"WEB_IMAGE=" in data,
                  "with room again `invoke env` appended the missing key after the bytes .env had", keeps_data=True)
    finally:
        remove_network(net)


def test_read_only_paths(tmp_path, mounts, docker):
    row = LEDGER.row("disk.readonly")
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
        for task, needle in (("secrets", str(secrets_dir / "api_token")), ("certs", str(secrets_dir / "certs"))):
            res = run(project, task)
            row.cases += 1
            row.check(not failure_problems(res, "Read-only file system", needle), READ_ONLY,
                      failure_problems(res, "Read-only file system", needle))
        row.check(not unchanged(before, project), "a failed run changed no file", unchanged(before, project),
                  keeps_data=True)

        env = project / ".env"  # a key to append, on a read-only project
        env.write_text("".join(ln for ln in env.read_text().splitlines(True) if not ln.startswith("WEB_IMAGE=")))
        before = snapshot(project)
        mounts("--bind", str(project), target=project)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(project)], check=True)
        res = run(project, "env")
        row.cases += 1
        # The first write under the project fails: .env itself, or the lock every writer of .env
        # takes first (.readiness/locks/env.lock); either way the path named is in the project.
        row.check(not failure_problems(res, "Read-only file system", str(project)), READ_ONLY,
                  failure_problems(res, "Read-only file system", str(project)))
        row.check(not unchanged(before, project) and env.read_bytes() == before[".env"],
                  "a failed run changed no file", unchanged(before, project), keeps_data=True)
    finally:
        for target in (project, project / "secrets"):  # writable again for the last part
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
    try:
        res = run(project, "bootstrap")
        row.check(res.returncode == 0, "once writable the next run exited 0", res.stdout + res.stderr)
        after = snapshot(project)
        row.check(all(after.get(k) == v for k, v in before.items() if k != ".env")
                  and after[".env"].startswith(before[".env"]),
                  "once writable the next run kept every value and the bytes .env had", keeps_data=True)
        problems = secret_problems(project) + cert_problems(project)
        row.check(not problems, "once writable every secret and the pair are complete", problems)
    finally:
        remove_network(net)
