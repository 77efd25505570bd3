"""Stale state that breaks a boot or loses data, on a real engine.

Data is written into the data directories the way a container writes it: through the engine,
as the directory's container owner (:func:`engine_sh`), so every test runs as root and as a
non-root user alike -- and, for the non-root user, exercises the helper container that reads
directories the user cannot (:mod:`readiness.prepare.datastate`).

* ``invoke bootstrap`` (and ``invoke secrets``) never replaces a secret baked into data that
  exists: the file stays absent, or unchanged when it is empty; preflight says
  ``secret.baked-missing`` naming the secret, the data directory and the two ways out; both
  ways out bring exit 0 back.
* A baked secret changed after its service initialised the data: ``secret.changed-after-init``.
* Patroni members' data without etcd's, and the reverse: ``state.dcs-mismatch``.
* Data written by another PostgreSQL major: ``state.pg-version``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_invoke, tree_digest
from helper_image import engine_sh, ensure_helper_image
from test_preflight_findings import findings

from readiness.prepare import baked, datastate


def write_data(directory: Path, owner: str, rel: str = "initialised", text: str = "x") -> None:
    """What a first start leaves behind: a file (and its parents) owned by the container user."""
    parent = str(Path(rel).parent)
    mkdir = f"mkdir -p /d/{parent} && " if parent != "." else ""
    engine_sh(directory, f"{mkdir}printf %s {text} > /d/{rel} && chown -R {owner} /d")


def clear_data(directory: Path) -> None:
    engine_sh(directory, "find /d -mindepth 1 -maxdepth 1 -exec rm -rf {} +")


def rewrite(path: Path, data: bytes) -> None:
    """Write a secret file as its owner would (its mode may be 0444: the owner adds u+w first)."""
    mode = path.stat().st_mode & 0o777
    path.chmod(mode | 0o200)
    path.write_bytes(data)
    path.chmod(mode)


def only(project, ident, code=1):
    """Exactly one finding (beside the host's own warnings), with ``ident``; exit ``code``."""
    got, found = findings(project)
    assert got == code and [f["id"] for f in found] == [ident], (got, found)
    return found[0]


#: (fixture, baked secret, declaring service, its data directory, its container owner,
#:  compose file and the text after which the test declares the secret, or None when shipped)
BAKED = [
    ("mini", "web_password", "web", "data/web", "472:0", "infra/01-web/docker-compose.yml", '      user: "472:0"\n'),
    ("repo", "grafana_admin_password", "grafana", "data/grafana", "472:0", None, None),
]


@pytest.fixture(params=BAKED, ids=[b[0] for b in BAKED])
def baked_stack(request, docker):
    fixture, secret, service, data, owner, compose_file, anchor = request.param
    project = request.getfixturevalue(fixture)
    if compose_file:  # the fixture stack declares it here, as the shipped stack does for grafana
        path = project / compose_file
        text = path.read_text()
        assert text.count(anchor) == 1
        path.write_text(text.replace(anchor, anchor + f"      baked-secrets: [{secret}]\n"))
    result = run_invoke(project, "bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(project) == (0, [])
    return project, secret, service, data, owner


def test_bootstrap_never_replaces_a_baked_secret_while_its_data_exists(baked_stack):
    project, secret, service, data, owner = baked_stack
    path = project / "secrets" / secret
    saved, mode = path.read_bytes(), path.stat().st_mode
    write_data(project / data, owner)  # the service's first start
    path.unlink()
    before = tree_digest(project, "secrets", "data")

    refused = run_invoke(project, "bootstrap")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert not path.exists(), "bootstrap generated a baked secret over existing data"
    assert tree_digest(project, "secrets", "data") == before  # nothing else written either
    assert f"secret {secret} is missing" in refused.stderr and data in refused.stderr
    assert "restore" in refused.stderr and f"invoke reset --yes --service {service}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert run_invoke(project, "secrets").returncode == 1 and not path.exists()

    f = only(project, "secret.baked-missing")
    assert f["file"] == f"secrets/{secret}" and f["service"] == service and data in f["message"]
    assert "restore" in f["fix"] and f"invoke reset --yes --service {service}" in f["fix"]

    path.write_bytes(b"")  # an empty file is not regenerated either (a new file: the user's own)
    assert run_invoke(project, "bootstrap").returncode == 1
    assert path.read_bytes() == b""
    assert only(project, "secret.baked-missing")["message"].startswith(f"secret {secret} is empty")

    path.write_bytes(saved)  # way out 1: restore the file
    path.chmod(mode & 0o777)
    assert findings(project) == (0, [])
    assert run_invoke(project, "bootstrap").returncode == 0


def test_reset_is_the_other_way_out(baked_stack):
    project, secret, service, data, owner = baked_stack
    path = project / "secrets" / secret
    write_data(project / data, owner)
    path.unlink()
    assert only(project, "secret.baked-missing")["service"] == service
    reset = run_invoke(project, "reset", "--yes", "--no-backup", "--service", service)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    again = run_invoke(project, "bootstrap")
    assert again.returncode == 0, again.stdout + again.stderr
    assert path.stat().st_size > 0 and f"secrets/{secret}: created" in again.stdout
    assert findings(project) == (0, [])


def test_secret_changed_after_its_service_initialised_the_data(baked_stack):
    project, secret, service, data, owner = baked_stack
    path = project / "secrets" / secret
    saved = path.read_bytes()
    record = project / baked.RECORD_DIR / f"{secret}.json"
    assert record.is_file() and saved.decode() not in record.read_text()  # a digest, never the value
    write_data(project / data, owner)
    rewrite(path, saved[::-1] + b"9")
    f = only(project, "secret.changed-after-init", code=0)  # a warning: the boot itself is not blocked
    assert f["severity"] == "warning" and f["service"] == service and f["file"] == f"secrets/{secret}"
    assert data in f["message"] and "runbook §7" in f["fix"] and f"rm {baked.RECORD_DIR}/{secret}.json" in f["fix"]
    # `invoke secrets` keeps what the data was initialised with: the warning stays
    assert run_invoke(project, "secrets").returncode == 0
    assert only(project, "secret.changed-after-init", code=0)["file"] == f"secrets/{secret}"
    rewrite(path, saved)
    assert findings(project) == (0, [])
    # the rotation done inside the service, the user accepts the new file; the next run records it
    rewrite(path, saved[::-1] + b"9")
    record.unlink()
    assert run_invoke(project, "secrets").returncode == 0
    assert findings(project) == (0, [])


def test_record_follows_the_file_while_the_data_is_empty(mini):
    """Before the first boot the user may still change a baked secret: the record follows."""
    compose = mini / "infra/01-web/docker-compose.yml"
    compose.write_text(compose.read_text().replace('      user: "472:0"\n',
                                                   '      user: "472:0"\n      baked-secrets: [web_password]\n'))
    assert run_invoke(mini, "bootstrap").returncode == 0
    rewrite(mini / "secrets/web_password", b"chosen-by-the-user-before-the-first-boot")
    assert run_invoke(mini, "secrets").returncode == 0
    write_data(mini / "data/web", "472:0")
    assert findings(mini) == (0, [])


def test_patroni_members_without_their_dcs_and_the_reverse(repo):
    assert run_invoke(repo, "bootstrap").returncode == 0
    etcd, members = repo / "data/etcd", [repo / "data/spilo-1", repo / "data/spilo-2"]
    # the DCS keeps the cluster, the members' data is gone: the members would wait forever
    write_data(etcd, "0:0", "data/member/snap/db")
    f = only(repo, "state.dcs-mismatch")
    assert f["severity"] == "error" and f["file"] == "data/etcd" and f["service"] == "spilo-1, spilo-2"
    assert "data/spilo-1" in f["message"] and "invoke reset --yes --service etcd" in f["fix"]
    for d in members:
        write_data(d, "101:103", "pgroot/data/PG_VERSION", "17")
    assert findings(repo) == (0, [])
    # the reverse: the members' data without the DCS's
    clear_data(etcd)
    f = only(repo, "state.dcs-mismatch", code=0)
    assert f["severity"] == "warning" and f["file"] == "data/spilo-1" and "data/etcd" in f["message"]
    assert "docker compose up -d etcd spilo-1" in f["fix"]
    for d in members:
        clear_data(d)
    assert findings(repo) == (0, [])


def test_data_written_by_another_postgres_major(repo):
    assert run_invoke(repo, "bootstrap").returncode == 0
    write_data(repo / "data/etcd", "0:0", "data/member/snap/db")
    write_data(repo / "data/spilo-1", "101:103", "pgroot/data/PG_VERSION", "18")
    f = only(repo, "state.pg-version")
    assert f["service"] == "spilo-1" and f["file"] == "data/spilo-1"
    assert "PostgreSQL 18" in f["message"] and "up to 17" in f["message"] and "SPILO_IMAGE" in f["fix"]
    # an older major is one Spilo still ships and runs: no finding
    write_data(repo / "data/spilo-1", "101:103", "pgroot/data/PG_VERSION", "16")
    assert findings(repo) == (0, [])


def test_unreadable_data_is_read_through_one_helper_and_cached(repo):
    """Directories the user cannot list are read by one helper container, then from the cache.

    Root can list every directory, so here the probe is told that none is readable
    (``readable``), which is what a non-root user meets with data owned by container uids; the
    non-root CI run meets it for real in the tests above.
    """
    from readiness.system import engine as enginelib

    assert run_invoke(repo, "bootstrap").returncode == 0
    spilo, etcd, absent = repo / "data/spilo-1", repo / "data/etcd", repo / "data/absent"
    write_data(spilo, "101:103", "pgroot/data/PG_VERSION", "17")
    engine = enginelib.info()
    states = datastate.probe(repo, [spilo, etcd, absent], engine, ensure_helper_image(), readable=lambda p: False)
    assert states[absent] == datastate.ABSENT
    assert (states[spilo].empty, states[spilo].pg_version) == (False, "17")
    assert (states[etcd].empty, states[etcd].pg_version) == (True, None)
    # the same answers again without a container: the helper image named now does not exist
    cached = datastate.probe(repo, [spilo, etcd], engine, "readiness-test/no-such-image:0", readable=lambda p: False)
    assert cached == {spilo: states[spilo], etcd: states[etcd]}
    # a change of the directory's entries is seen (the cache is keyed on its mtime and ctime)
    write_data(etcd, "0:0", "data/member/snap/db")
    changed = datastate.probe(repo, [etcd], engine, ensure_helper_image(), readable=lambda p: False)
    assert changed[etcd].empty is False
    # no helper can run: unknown, which protecting code reads as "holds data"
    clear_data(etcd)
    unknown = datastate.probe(repo, [etcd], engine, "readiness-test/no-such-image:0", readable=lambda p: False)
    assert unknown[etcd].empty is None and unknown[etcd].has_data and unknown[etcd].error


def test_a_baked_secret_that_is_not_in_the_registry_is_named(mini):
    compose = mini / "infra/01-web/docker-compose.yml"
    compose.write_text(compose.read_text().replace('      user: "472:0"\n',
                                                   '      user: "472:0"\n      baked-secrets: [web_pasword]\n'))
    for task in ("bootstrap", "preflight"):
        result = run_invoke(mini, task)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "baked secret 'web_pasword'" in result.stderr and "web_password" in result.stderr
        assert "infra/01-web/docker-compose.yml (services.web.x-readiness.baked-secrets)" in result.stderr
