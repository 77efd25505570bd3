"""`invoke backup` / `restore` / `backups` without an engine: what a backup takes, the manifest
checks a restore makes, which backup covers a reset, and the streams that write parts.

On this repository's own stack as Compose renders it (`docker compose config` needs no engine):
the parts the shipped services give, the defaults (metrics and logs skipped), --only/--skip, and
a stopped Patroni cluster copied member by member with its DCS. Manifests are real files in a
temporary directory; the streams run real programs (`sh`, `head`, `cat`). The engine side
(helper containers, pg_basebackup, BGSAVE) is proven by tests/e2e/test_backup.py.
"""

from __future__ import annotations

import errno
import json
import uuid
from pathlib import Path

import pytest
from conftest import copy_repo, run_invoke
from jsonschemas import validator
from smallfs import small_filesystem

from readiness.errors import ToolkitError
from readiness.run.backup import manifest, plan, restore, take
from readiness.stack import compose
from readiness.system import engine as enginelib
from readiness.system import runner


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, compose_cli):
    dest = copy_repo(tmp_path_factory.mktemp("backup") / "repo")
    assert run_invoke(dest, "env").returncode == 0
    return compose.load(dest)


def kinds(choice: plan.Choice) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in choice.parts:
        out.setdefault(p.kind, []).append(p.name)
    return out


def test_a_running_stack_gives_one_base_backup_one_snapshot_and_a_copy_per_other_service(shipped):
    choice = plan.choose(shipped)
    got = kinds(choice)
    assert got["config"] == ["config.tar"]
    assert choice.parts[0].services == (), "the configuration belongs to no service"
    assert got["postgres"] == ["postgres-infra-pg.tar"]
    assert got["valkey"] == ["valkey-valkey.rdb"]
    assert sorted(got["copy"]) == ["data-alertmanager.tar", "data-grafana.tar", "data-minio.tar",
                                   "data-opensearch.tar"]
    pg = next(p for p in choice.parts if p.kind == "postgres")
    assert pg.members == ("spilo-1", "spilo-2") and pg.dcs == ("etcd",)
    assert {d.service for d in pg.dirs} == {"spilo-1", "spilo-2", "etcd"}, "a restore replaces the DCS's data too"
    assert dict(choice.skipped) == {
        "prometheus": "metrics: expendable by default; --only prometheus takes them",
        "loki": "logs: expendable by default; --only loki takes them"}


def test_only_takes_a_service_skipped_by_default_and_skip_leaves_one_out(shipped):
    only = plan.choose(shipped, only=["prometheus", "spilo-2"])
    assert kinds(only) == {"config": ["config.tar"], "postgres": ["postgres-infra-pg.tar"],
                           "copy": ["data-prometheus.tar"]}
    skipped = plan.choose(shipped, skip=["valkey", "etcd"])
    assert "valkey" not in kinds(skipped) and "postgres" not in kinds(skipped), \
        "skipping the DCS skips its cluster: it cannot be restored without it"
    with pytest.raises(ToolkitError) as exc:
        plan.choose(shipped, only=["grafna"])
    assert "grafna" in exc.value.message and "grafana" in (exc.value.fix or "")


def test_a_stopped_cluster_is_copied_as_it_lies_with_its_dcs(shipped):
    choice = plan.choose(shipped, running=set())
    got = kinds(choice)
    assert "postgres" not in got and "valkey" not in got
    assert {"data-spilo-1.tar", "data-spilo-2.tar", "data-etcd.tar", "data-valkey.tar"} <= set(got["copy"])
    running_replica = plan.choose(shipped, running={"spilo-2", "etcd"})
    assert next(p for p in running_replica.parts if p.kind == "postgres").service == "spilo-2"


def test_the_configuration_part_holds_env_and_every_file_secret(shipped):
    root = shipped.project_dir
    (root / "secrets").mkdir(exist_ok=True)
    (root / "secrets" / "valkey_password").write_text("x")
    paths = plan.config_paths(shipped)
    assert ".env" in paths and "secrets/valkey_password" in paths
    assert all(not p.startswith("/") and (root / p).exists() for p in paths)
    assert "secrets/README.md" not in paths, "only what Compose lists as a secret"


# ------------------------------------------------------------------ manifests


def make_backup(directory: Path, parts: dict[str, bytes], **extra) -> dict:
    directory.mkdir(parents=True)
    entries = []
    for name, data in parts.items():
        (directory / name).write_bytes(data)
        entries.append({"name": name, "kind": "copy", "service": "grafana", "services": ["grafana"],
                        "dirs": [{"service": "grafana", "path": "data/grafana", "target": "/var/lib/grafana"}],
                        "bytes": len(data), "sha256": manifest.sha256_of(directory / name)})
    doc = {"format": 1, "project": "infra-core", "label": "", "created": "2026-12-03T10:00:00Z", "seconds": 1.5,
           "git_commit": None, "pins": {"GRAFANA_IMAGE": "grafana/grafana:13.2.0"},
           "images": {"grafana": "grafana/grafana:13.2.0"},
           "engine": {"kind": "rootful", "version": "26.1.5"}, "running": ["grafana"], "parts": entries,
           "paused": [{"service": "grafana", "seconds": 1.2}], "skipped": [], **extra}
    manifest.write(directory, doc)
    return doc


def test_a_manifest_is_schema_valid_and_every_change_to_a_part_is_found(tmp_path):
    doc = make_backup(tmp_path / "b", {"data-grafana.tar": b"a" * 5000, "config.tar": b"cfg"})
    assert not sorted(validator("backup-manifest").iter_errors(doc), key=str)
    read, why = manifest.read(tmp_path / "b")
    assert read == doc and why == ""
    assert manifest.damage(tmp_path / "b", read) == []
    part = tmp_path / "b" / "data-grafana.tar"
    data = bytearray(part.read_bytes())
    data[2500] ^= 0xFF
    part.write_bytes(bytes(data))  # same size, one bit flipped
    found = manifest.damage(tmp_path / "b", read)
    assert [(d.part, "SHA-256" in d.what) for d in found] == [("data-grafana.tar", True)]
    assert manifest.damage(tmp_path / "b", read, hashes=False) == [], "sizes alone cannot see a flipped bit"
    (tmp_path / "b" / "config.tar").write_bytes(b"cf")
    assert {d.part for d in manifest.damage(tmp_path / "b", read, hashes=False)} == {"config.tar"}
    (tmp_path / "b" / "config.tar").unlink()
    assert ("config.tar", "missing") in {(d.part, d.what) for d in manifest.damage(tmp_path / "b", read)}


@pytest.mark.parametrize("change, reason", [
    (lambda d: (d / "manifest.json").unlink(), "incomplete"),
    (lambda d: (d / "manifest.json").write_text("{"), "cannot be read"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"format": 9, "parts": []})), "format 1"),
    (lambda d: (d / "manifest.json").write_text(json.dumps(
        {"format": 1, "parts": [{"name": "../../etc/passwd", "bytes": 1, "sha256": "x"}]})), "plain file name"),
])
def test_a_directory_without_a_readable_manifest_is_never_a_backup(tmp_path, change, reason):
    make_backup(tmp_path / "b", {"x.tar": b"x"})
    change(tmp_path / "b")
    doc, why = manifest.read(tmp_path / "b")
    assert doc is None and reason in why


def test_listing_says_which_backups_hold_and_which_are_incomplete(tmp_path):
    make_backup(tmp_path / "infra-core-1", {"x.tar": b"x"})
    make_backup(tmp_path / "infra-core-2", {"x.tar": b"y"})
    (tmp_path / "infra-core-2" / "x.tar").write_bytes(b"z")
    (tmp_path / "infra-core-3").mkdir()
    rows = restore.listing(tmp_path)
    doc = {"ok": False, "root": str(tmp_path), "backups": rows}
    assert not sorted(validator("backups").iter_errors(doc), key=str)
    assert [(Path(r["path"]).name, r["complete"], r.get("checksums_ok")) for r in rows] == [
        ("infra-core-1", True, True), ("infra-core-2", True, False), ("infra-core-3", False, None)]


def test_check_refuses_a_foreign_or_incomplete_backup_before_anything_else(tmp_path, shipped):
    make_backup(tmp_path / "other", {"x.tar": b"x"}, project="someone-else")
    with pytest.raises(ToolkitError) as exc:
        restore.check(shipped, tmp_path / "other")
    assert "another stack" in exc.value.message and "Nothing was changed" in exc.value.message
    (tmp_path / "partial").mkdir()
    with pytest.raises(ToolkitError) as exc:
        restore.check(shipped, tmp_path / "partial")
    assert "incomplete" in exc.value.message and "invoke backups" in (exc.value.fix or "")


def test_a_reset_is_covered_only_by_a_backup_of_this_stack_newer_than_the_data_that_holds_it():
    rows = [{"path": "a", "complete": True, "checksums_ok": True, "created": "2026-12-03T10:00:00Z",
             "project": "infra-core", "services": ["grafana", "minio"]},
            {"path": "b", "complete": True, "checksums_ok": False, "created": "2026-12-03T12:00:00Z",
             "project": "infra-core", "services": ["grafana", "minio"]},
            {"path": "o", "complete": True, "checksums_ok": True, "created": "2026-12-03T13:00:00Z",
             "project": "another-stack", "services": ["grafana", "minio"]},
            {"path": "c", "complete": False, "why": "no manifest"}]
    ten = enginelib.parse_rfc3339("2026-12-03T10:00:00Z")
    assert restore.covering(rows, {"grafana": ten - 60}, "infra-core")["path"] == "a"
    assert restore.covering(rows, {"grafana": ten + 60}, "infra-core") is None, "the data changed after the backup"
    assert restore.covering(rows, {"grafana": None}, "infra-core") is None, "an unknown moment is never covered"
    assert restore.covering(rows, {"grafana": ten - 1, "minio": ten - 1}, "infra-core")["path"] == "a"
    assert restore.covering(rows, {"opensearch": ten - 60}, "infra-core") is None, "no backup holds that service"
    assert restore.covering(rows, {"grafana": ten + 3600}, "another-stack")["path"] == "o"
    assert restore.covering(rows, {"grafana": ten + 3600}, "infra-core") is None, "another stack's backup never counts"
    assert restore.covering(rows, {"grafana": ten - 60}, "infra-core", lambda row: False) is None, \
        "a candidate whose hashes do not hold is not one"


def test_engine_times_and_manifest_times_are_read_as_utc_and_the_zero_time_as_never():
    ten = 1796292000.0  # 2026-12-03T10:00:00Z
    assert enginelib.parse_rfc3339(manifest.utc(ten)) == ten == enginelib.parse_rfc3339("2026-12-03T10:00:00Z")
    assert enginelib.parse_rfc3339("2026-12-03T10:00:00.5Z") == ten + 0.5
    assert enginelib.parse_rfc3339("2026-12-03T11:00:00+01:00") == ten
    assert enginelib.parse_rfc3339("0001-01-01T00:00:00Z") is None
    assert enginelib.parse_rfc3339("yesterday") is None


# ------------------------------------------------------------------ streams


def test_a_stream_is_written_and_hashed_in_one_pass_and_read_back_identically(tmp_path):
    dest = tmp_path / "part"
    res = runner.to_file(["sh", "-c", "head -c 3000000 /dev/urandom; echo done >&2"], dest)
    assert res.ok and res.size == 3_000_000 == dest.stat().st_size
    assert res.sha256 == manifest.sha256_of(dest) and "done" in res.stderr
    assert dest.stat().st_mode & 0o777 == 0o600
    back = tmp_path / "back"
    sent = runner.from_file(["sh", "-c", f"cat > {back}"], dest)
    assert sent.ok and sent.sha256 == res.sha256 and back.read_bytes() == dest.read_bytes()
    failed = runner.to_file(["sh", "-c", "echo oops >&2; exit 3"], tmp_path / "failed")
    assert failed.returncode == 3 and "oops" in failed.stderr
    with pytest.raises(FileExistsError):
        runner.to_file(["true"], dest)  # never over an existing part


def test_a_full_disk_during_a_backup_removes_the_unfinished_backup(tmp_path, monkeypatch):
    """A real full filesystem: a 4 MiB tmpfs (root only: mounting needs it)."""
    with small_filesystem(tmp_path / "small", 4) as small:
        with pytest.raises(OSError) as exc:
            runner.to_file(["head", "-c", str(16 << 20), "/dev/zero"], small / "part")
        assert exc.value.errno == errno.ENOSPC

        class Model:  # the least of a model write_backup needs to reach the part writer
            name = "infra-core"
            project_dir = tmp_path

        def fill(model, engine, part, directory, running, pauses):
            runner.to_file(["head", "-c", str(16 << 20), "/dev/zero"], directory / part.name)

        monkeypatch.setattr(take, "check_room", lambda *a: 0)
        monkeypatch.setattr(take, "_take_part", fill)
        (small / "part").unlink()
        with pytest.raises(ToolkitError) as err:
            take.write_backup(Model(), None, plan.Choice(parts=[plan.Part("config.tar", "config", "")]),
                              small / "backups", running={})
        assert "filled up" in err.value.message
        assert list((small / "backups").iterdir()) == [], "no unfinished backup is left"


@pytest.mark.docker
def test_a_helper_left_running_by_a_killed_run_is_removed_by_the_next_one(docker, tmp_path):
    """A ``docker run`` helper whose client was killed keeps running (a ``tar`` reading into
    nothing). Helpers carry the project's label; the next run removes those of its project,
    and only those, before it starts (under the lock, none of a live run can exist)."""
    from conftest import probe_image

    from readiness.run.backup import parts

    class Model:  # the least of a model the helpers' label needs
        name = f"leftover-{uuid.uuid4().hex[:8]}"

    other = f"{Model.name}-other"
    started = []
    for project in (Model.name, Model.name, other):
        argv = enginelib.helper_command(probe_image(), "exec sleep 600", [], labels={parts.HELPER_LABEL: project})
        res = runner.run([argv[0], argv[1], "-d", *argv[2:]], timeout=60)  # `docker run -d`: its client gone
        assert res.ok, res.stderr
        started.append(res.stdout.strip())
    try:
        removed = parts.remove_leftover_helpers(Model())
        assert sorted(started[0][:12] == r[:12] or started[1][:12] == r[:12] for r in removed) == [True, True]
        alive = runner.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label={parts.HELPER_LABEL}"], timeout=60)
        assert alive.stdout.split() == [started[2]], "the other project's helper is not this run's to remove"
        assert parts.remove_leftover_helpers(Model()) == []
    finally:
        runner.run(["docker", "rm", "-f", *started], timeout=60)
