"""Benchmark: `invoke backup` and `invoke restore` against a plain `tar` of the same data.

Boots the repository's stack from a fresh clone with the end-to-end suite's images (real
Patroni + PostgreSQL 17, Valkey; tests/e2e/stack.py), fills it with at least ``--gb`` GB
(default 1), nearly all of it PostgreSQL rows (``--rows-kb`` per row), plus a key per Valkey
and a file in MinIO's data directory, then in the same run:

1. **tar**: a plain ``tar -c`` of the data directories the backup reads (one Spilo member,
   Valkey's, MinIO's, Grafana's, OpenSearch's, Alertmanager's), through one helper container
   (they belong to container uids) into a file; and its ``tar -x`` into an empty directory;
2. **backup**: ``invoke backup`` while two writers commit rows through HAProxy: the writers'
   commits per second before and during the backup are printed (what the backup costs them);
3. **restore**: ``invoke restore PATH --yes``, the whole command: the checksum check, a safety
   backup of what it replaces, the stack stopped and started again, ``invoke verify``; and its
   phases (the restore's own ``phases``), so that a miss says where the time goes;
4. **logical**, the road the backup did not take, measured beside it: ``pg_dump -Fc`` of the
   same database from a replica into a file, and its ``pg_restore`` into a new database on the
   leader (what a logical restore has to replay), against the backup's ``pg_basebackup`` part.

Last line::

    backup: <GB> GB in <s> s (<x>x tar); restore <s> s (<y>x tar)

Targets: backup <= 2x tar, restore <= 3x tar. A script, not a test: figures are printed, never
asserted (``--strict`` exits 1 when a target is missed). The stack is always torn down.

    python benchmarks/bench_backup.py [--gb 1] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import dbclient as db  # noqa: E402
from e2e import realdb  # noqa: E402
from e2e.stack import Stack  # noqa: E402
from helper_image import ensure_helper_image  # noqa: E402

TARGETS = {"backup": 2.0, "restore": 3.0}
DIRS = ("spilo-2", "valkey", "minio", "grafana", "opensearch", "alertmanager")


class Writers:
    """Two connections committing small rows until stopped; commits counted per moment."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.stop, self.times, self.lock = stack, threading.Event(), [], threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        import psycopg

        conn = None
        while not self.stop.is_set():
            try:
                conn = conn or psycopg.connect(db.dsn(self.stack, connect_timeout=2), autocommit=True)
                conn.execute("INSERT INTO bench_writes DEFAULT VALUES")
                with self.lock:
                    self.times.append(time.monotonic())
            except Exception:  # noqa: BLE001 - a writer reconnects, as an application would
                conn = None
                time.sleep(0.1)

    def rate(self, start: float, end: float) -> float:
        with self.lock:
            n = sum(1 for t in self.times if start <= t < end)
        return n / max(end - start, 1e-9)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def helper(stack: Stack, script: str, mounts: list[tuple[Path, str]], stdout=None) -> float:
    args = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh"]
    for src, dst in mounts:
        args += ["--mount", f"type=bind,source={src},target={dst}"]
    start = time.perf_counter()
    subprocess.run([*args, ensure_helper_image(), "-c", script], check=True, stdout=stdout, timeout=3600)
    return time.perf_counter() - start


def fill(stack: Stack, gb: float, row_kb: int) -> None:
    rows = int(gb * 1024 * 1024 / row_kb) + 1
    db.query(stack, "CREATE TABLE IF NOT EXISTS bench_rows (n bigint, body text)")
    db.query(stack, "CREATE TABLE IF NOT EXISTS bench_writes (at timestamptz DEFAULT clock_timestamp())")
    batch = 50_000
    start = time.monotonic()
    for first in range(1, rows + 1, batch):
        last = min(rows, first + batch - 1)
        db.query(stack, "INSERT INTO bench_rows SELECT g, repeat(md5(g::text), %s) FROM generate_series(%s, %s) g",
                 (row_kb * 1024 // 32, first, last))
    size = db.query(stack, "SELECT pg_database_size('postgres')")[0][0]
    print(f"filled: {rows} rows, database {size / 1e9:.2f} GB in {time.monotonic() - start:.0f} s", flush=True)
    port, pw = int(stack.env["VALKEY_PORT"]), db.secret(stack, "valkey_password")
    db.resp(port, ["AUTH", pw], *[["SET", f"bench-{i}", "x" * 1000] for i in range(2000)])
    stack.data_sh("mkdir -p /data/minio/bench && head -c 50000000 /dev/urandom > /data/minio/bench/object "
                  "&& chown -R 1000:1000 /data/minio/bench")


def member(stack: Stack, role: str) -> str:
    """A Spilo member in ``role`` (Patroni's ``/primary`` or ``/replica`` answers 200)."""
    for svc in ("spilo-1", "spilo-2"):
        res = stack.compose("exec", "-T", svc, "curl", "-fsS", "-o", "/dev/null", f"http://localhost:8008/{role}",
                            timeout=30)
        if res.returncode == 0:
            return svc
    raise SystemExit(f"no Spilo member answers /{role}")


def logical(stack: Stack, out: Path) -> tuple[float, int, float]:
    """(seconds of ``pg_dump -Fc`` from a replica, its bytes, seconds of ``pg_restore`` of it
    into a new database on the leader); the new database is dropped afterwards."""
    dump = out / "postgres.dump"
    argv = stack.compose_argv("exec", "-T", member(stack, "replica"), "pg_dump", "-Fc", "-U", "postgres", "-d",
                              "postgres")
    start = time.perf_counter()
    with open(dump, "wb") as fh:
        subprocess.run(argv, stdout=fh, check=True, timeout=3600, cwd=stack.root)
    dump_s = time.perf_counter() - start
    leader = member(stack, "primary")
    db.query(stack, "DROP DATABASE IF EXISTS bench_replay")
    db.query(stack, "CREATE DATABASE bench_replay")
    argv = stack.compose_argv("exec", "-T", leader, "pg_restore", "-U", "postgres", "-d", "bench_replay",
                              "--no-owner")
    start = time.perf_counter()
    with open(dump, "rb") as fh:
        subprocess.run(argv, stdin=fh, check=True, timeout=3600, cwd=stack.root, stdout=subprocess.DEVNULL)
    restore_s = time.perf_counter() - start
    size = dump.stat().st_size
    dump.unlink()
    db.query(stack, "DROP DATABASE bench_replay")
    return dump_s, size, restore_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rows-kb", type=int, default=1)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    try:
        reason = realdb.unavailable_reason()
    except realdb.DBTierUnavailable as exc:
        reason = str(exc)
    if reason:
        print(f"bench_backup: cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-backup-", ignore_cleanup_errors=True) as tmp:
        os.environ["CAROOT"] = str(Path(tmp) / "caroot")
        Path(os.environ["CAROOT"]).mkdir()
        stack = Stack.create(Path(tmp), fast_health=False)
        try:
            for step in (["bootstrap"], ["up", "--timeout", "400", "--no-verify"]):
                res = stack.invoke(*step, timeout=900)
                if res.returncode != 0:
                    raise SystemExit(f"invoke {' '.join(step)} failed:\n{res.stdout}{res.stderr}")
            fill(stack, args.gb, args.rows_kb)
            data, out = stack.root / "data", Path(tmp) / "tar"
            out.mkdir()
            with open(out / "data.tar", "wb") as fh:
                tar_c = helper(stack, "cd /data && exec tar -cf - " + " ".join(DIRS), [(data, "/data")], stdout=fh)
            size = (out / "data.tar").stat().st_size
            (out / "x").mkdir()
            tar_x = helper(stack, "cd /x && exec tar -xpf /t/data.tar", [(out, "/t"), (out / "x", "/x")])
            helper(stack, "rm -rf /x/*", [(out / "x", "/x")])
            (out / "data.tar").unlink()
            print(f"tar: {size / 1e9:.2f} GB, -c {tar_c:.1f} s, -x {tar_x:.1f} s", flush=True)

            with Writers(stack) as writers:
                time.sleep(5)
                t0 = time.monotonic()
                res = stack.invoke("backup", "--json", timeout=3600)
                t1 = time.monotonic()
                time.sleep(1)
                before, during = writers.rate(t0 - 5, t0), writers.rate(t0, t1)
            if res.returncode != 0:
                raise SystemExit(f"invoke backup failed:\n{res.stdout}{res.stderr}")
            doc = json.loads(res.stdout)
            backup_s = t1 - t0
            gb = sum(p["bytes"] for p in doc["manifest"]["parts"]) / 1e9
            print(f"backup: {backup_s:.1f} s; writers {before:.0f} commits/s before, {during:.0f} during; "
                  f"paused {[(p['service'], p['seconds']) for p in doc['manifest']['paused']]}", flush=True)
            t0 = time.monotonic()
            res = stack.invoke("restore", doc["path"], "--yes", "--json", timeout=3600)
            restore_s = time.monotonic() - t0
            if res.returncode != 0:
                raise SystemExit(f"invoke restore failed:\n{res.stdout}{res.stderr}")
            phases = json.loads(res.stdout)["phases"]
            rows = db.query(stack, "SELECT count(*) FROM bench_rows")[0][0]
            print(f"restore: {restore_s:.1f} s; {rows} rows back; phases (s): "
                  + ", ".join(f"{k} {v}" for k, v in phases.items()), flush=True)
            part = next(p for p in doc["manifest"]["parts"] if p["kind"] == "postgres")
            dump_s, dump_bytes, replay_s = logical(stack, out)
            print(f"logical: pg_dump -Fc {dump_bytes / 1e6:.0f} MB (compressed) in {dump_s:.1f} s, "
                  f"pg_restore {replay_s:.1f} s; "
                  f"physical: pg_basebackup {part['bytes'] / 1e9:.2f} GB within the backup's {backup_s:.1f} s, "
                  f"put back within the restore's put_back phase ({phases.get('put_back', '?')} s, every part)",
                  flush=True)
        finally:
            problems = stack.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    ratios = {"backup": backup_s / tar_c, "restore": restore_s / tar_x}
    missed = [k for k, v in ratios.items() if v > TARGETS[k]]
    for key, value in ratios.items():
        print(f"  {key:8} {value:.1f}x tar (target <= {TARGETS[key]}x: {'met' if key not in missed else 'NOT met'})")
    print(f"backup: {gb:.2f} GB in {backup_s:.1f} s ({ratios['backup']:.1f}x tar); "
          f"restore {restore_s:.1f} s ({ratios['restore']:.1f}x tar)")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
