"""End-to-end: ``invoke backup`` and ``invoke restore`` round trip on the session's stack.

Rows in PostgreSQL (the real Patroni cluster), a key in Valkey (real), an object in MinIO's and
a dashboard in Grafana's data directory, and a secret: backed up while the stack runs, dropped,
restored, and each is back with the owner its container needs. MinIO and Grafana are contract
fakes here (tests/e2e/fakes: they cannot be had on this machine), so their "object" and
"dashboard" are files written into their data directories through the engine, as the real
services keep them on disk: what the backup copies and the restore puts back is the directory,
and that is what these assertions read. Runs after test_verify.py and before test_dbtier.py
(conftest orders them), so the database scenarios then run on the restored cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from jsonschemas import validator
from smallfs import small_filesystem

from . import dbclient as db
from . import realdb
from .stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

TABLE = "readiness_backup_rows"
#: Handed from one scenario to the next (file order).
STATE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _real_programs() -> None:
    reason = realdb.unavailable_reason()
    if reason:
        pytest.skip(reason)


def run_json(stack: Stack, *args: str, schema: str, timeout: float = 900
             ) -> tuple[subprocess.CompletedProcess[str], dict]:
    """The task's one JSON document, valid against its schema (or the error schema on failure)."""
    res = stack.invoke(*args, "--json", timeout=timeout)
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not one JSON document: {res.stdout!r}\n{res.stderr}") from None
    errors = sorted(validator(schema if "error" not in doc else "error").iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    return res, doc


def patronictl(stack: Stack, *args: str) -> str:
    res = stack.compose("exec", "-T", "spilo-1", "patronictl", *args, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_backup_while_writes_go_on_then_restore_brings_everything_back(running: Stack):
    stack = running
    token = uuid.uuid4().hex
    db.query(stack, f"CREATE TABLE IF NOT EXISTS {TABLE} (n int, token text)")
    db.query(stack, f"INSERT INTO {TABLE} SELECT g, %s FROM generate_series(1, 5000) g", (token,))
    port, pw = int(stack.env["VALKEY_PORT"]), db.secret(stack, "valkey_password")
    assert db.resp(port, ["AUTH", pw], ["SET", "backup-key", token]) == ["+OK", "+OK"]
    data = stack.root / "data"
    stack.data_sh("mkdir -p /data/minio/backup-bucket /data/grafana/dashboards && "
                  "chown 1000:1000 /data/minio/backup-bucket && chown 472:0 /data/grafana/dashboards")
    stack.data_write(data / "minio/backup-bucket/object.txt", token)
    stack.data_chown(data / "minio/backup-bucket/object.txt", "1000:1000")
    stack.data_write(data / "grafana/dashboards/board.json", json.dumps({"title": token}))
    stack.data_chown(data / "grafana/dashboards/board.json", "472:0")
    owners = {p: stack.data_owner(data / p) for p in ("minio/backup-bucket/object.txt", "grafana/dashboards/board.json",
                                                      "valkey", "spilo-1/pgroot/data", "grafana")}
    secret_before = db.secret(stack, "grafana_admin_password")
    # A dynamic setting changed with patronictl (harmless: how far behind a replica may be and
    # still be promoted): the DCS is not backed up, so only the backup can bring it back.
    patronictl(stack, "edit-config", "--force", "-s", "maximum_lag_on_failover=2097152")

    res, doc = run_json(stack, "backup", schema="backup")
    assert res.returncode == 0, res.stdout + res.stderr
    path = Path(doc["path"])
    manifest = json.loads((path / "manifest.json").read_text())
    kinds = {p["kind"]: p for p in manifest["parts"]}
    assert set(kinds) == {"config", "postgres", "valkey", "copy"}, manifest["parts"]
    assert kinds["postgres"]["from_replica"] is True, "the base backup is taken from a replica when one runs"
    assert {s["service"] for s in manifest["skipped"]} >= {"prometheus", "loki"}
    assert all(p["sha256"] and p["bytes"] > 0 for p in manifest["parts"])
    stack.events.append(f"backup: {sum(p['bytes'] for p in manifest['parts'])} bytes in {manifest['seconds']} s, "
                        f"paused {[(p['service'], p['seconds']) for p in manifest['paused']]}")
    STATE.update(path=str(path), token=token, owners=json.dumps(owners), secret=secret_before)

    # Drop it all: rows, key, object, dashboard; and the setting changed again.
    patronictl(stack, "edit-config", "--force", "-s", "maximum_lag_on_failover=3145728")
    db.query(stack, f"DROP TABLE {TABLE}")
    assert db.resp(port, ["AUTH", pw], ["DEL", "backup-key"]) == ["+OK", ":1"]
    stack.data_sh("rm -rf /data/minio/backup-bucket /data/grafana/dashboards")

    # Without --yes: what it would replace, and nothing changes.
    res = stack.invoke("restore", str(path))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "would replace" in res.stdout and "spilo-1" in res.stdout and "valkey" in res.stdout, res.stdout
    assert stack.data_read(data / "minio/backup-bucket/object.txt") is None

    res, out = run_json(stack, "restore", str(path), "--yes", schema="restore")
    assert res.returncode == 0, res.stdout + res.stderr
    assert out["started"] is True and Path(out["safety_backup"]).is_dir()
    assert db.query(stack, f"SELECT count(*), min(token), max(token) FROM {TABLE}") == [(5000, token, token)]
    assert db.resp(port, ["AUTH", pw], ["GET", "backup-key"]) == ["+OK", f"${token}"]
    assert stack.data_read(data / "minio/backup-bucket/object.txt") == token
    assert json.loads(stack.data_read(data / "grafana/dashboards/board.json") or "{}") == {"title": token}
    after = {p: stack.data_owner(data / p) for p in owners}
    assert after == owners, "every file is back with the owner its container needs"
    assert db.secret(stack, "grafana_admin_password") == secret_before
    cluster = db.wait_for("both members streaming again", lambda: (c := db.cluster(stack)) and len(
        [m for m in c.get("members", []) if m.get("state") in ("streaming", "running")]) == 2 and c, 180)
    assert len(cluster["members"]) == 2
    # The DCS was emptied; Patroni founds the cluster with the dynamic configuration it keeps in
    # the data directory (patroni.dynamic.json, in the base backup): the backup's, not today's.
    config = yaml.safe_load(patronictl(stack, "show-config"))
    assert (config.get("synchronous_mode"), config.get("ttl"), config.get("maximum_lag_on_failover")) == \
        (True, 20, 2097152), f"the restored cluster runs the configuration it was backed up with: {config}"


def test_damaged_partial_and_foreign_backups_are_refused_and_change_nothing(running: Stack, tmp_path: Path):
    stack = running
    path = Path(STATE.get("path") or pytest.skip("needs the round trip's backup"))
    before = stack.ps()
    damaged = stack.root / "backups" / "damaged-copy"
    shutil.copytree(path, damaged)
    part = next(p for p in sorted(damaged.iterdir()) if p.name.startswith("postgres-"))
    with open(part, "r+b") as fh:
        fh.seek(part.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    res = stack.invoke("restore", str(damaged), "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "damaged" in res.stderr and part.name in res.stderr and "SHA-256" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr

    partial = stack.root / "backups" / "partial-copy"
    shutil.copytree(path, partial)
    (partial / "manifest.json").unlink()
    res = stack.invoke("restore", str(partial), "--yes")
    assert res.returncode == 1 and "incomplete" in res.stderr, res.stdout + res.stderr

    foreign = stack.root / "backups" / "foreign-copy"
    shutil.copytree(path, foreign)
    doc = json.loads((foreign / "manifest.json").read_text())
    doc["project"] = "another-stack"
    (foreign / "manifest.json").write_text(json.dumps(doc))
    res = stack.invoke("restore", str(foreign), "--yes")
    assert res.returncode == 1 and "another stack" in res.stderr, res.stdout + res.stderr

    after = stack.ps()
    assert {s: c.get("ID") for s, c in after.items()} == {s: c.get("ID") for s, c in before.items()}, \
        "a refused restore stops, starts or recreates nothing"
    assert db.query(stack, f"SELECT count(*) FROM {TABLE}") == [(5000,)]

    res, listing = run_json(stack, "backups", schema="backups")
    assert res.returncode == 1, "a damaged backup makes `invoke backups` fail"
    rows = {Path(r["path"]).name: r for r in listing["backups"]}
    assert rows["damaged-copy"]["checksums_ok"] is False
    assert rows["partial-copy"]["complete"] is False
    assert rows[path.name]["checksums_ok"] is True
    for name in ("damaged-copy", "partial-copy", "foreign-copy"):
        shutil.rmtree(stack.root / "backups" / name)


def test_sigkill_during_a_backup_leaves_nothing_that_claims_to_be_complete(running: Stack):
    stack = running
    root = stack.root / "backups" / "killed"
    proc = subprocess.Popen(stack.invoke_argv("backup", "--to", str(root), "--skip", "valkey"), cwd=stack.root,
                            env={**os.environ, **stack.invoke_env()}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (root.is_dir() and any(root.iterdir())):
            assert proc.poll() is None, "the backup ended before it could be killed"
            assert time.monotonic() < deadline, "no backup directory appeared"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    (left,) = list(root.iterdir())
    assert not (left / "manifest.json").exists()
    res = stack.invoke("restore", str(left), "--yes")
    assert res.returncode == 1 and "incomplete" in res.stderr, res.stdout + res.stderr
    res, listing = run_json(stack, "backups", "--to", str(root), schema="backups")
    assert [r["complete"] for r in listing["backups"]] == [False]
    shutil.rmtree(root, ignore_errors=True)
    res = stack.invoke("up", "--no-verify", "--timeout", "240")  # the kill may have left a service stopped
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_backup_disk_too_small_is_refused_before_anything_is_written_or_paused(running: Stack, tmp_path: Path):
    """A real 8 MiB filesystem (tmpfs) as the backup's disk; mounting one needs root, so a
    non-root run skips this (the engine-free suite's full-disk test needs root too)."""
    stack = running
    with small_filesystem(tmp_path / "small", 8) as small:
        before = {s: c.get("ID") for s, c in stack.ps().items()}
        res = stack.invoke("backup", "--to", str(small))
        assert res.returncode == 1, res.stdout + res.stderr
        assert "not enough free space" in res.stderr and "--to" in res.stderr, res.stderr
        assert not any(small.iterdir()), "nothing was written"
        assert "stopping" not in res.stdout, "no service was paused"
        assert {s: c.get("ID") for s, c in stack.ps().items()} == before


def test_reset_refuses_while_no_backup_holds_the_data_as_it_is(running: Stack):
    """The restore restarted every container after its backup was taken: no backup is newer."""
    stack = running
    res = stack.invoke("reset", "--service", "grafana", "--yes")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no backup" in res.stderr and "--no-backup" in res.stderr, res.stderr
    assert stack.data_read(stack.root / "data/grafana/dashboards/board.json") is not None
