"""End-to-end: ``invoke verify`` on the booted stack, and faults that only verify can see.

The probes run against the real programs the suite has (Traefik, Prometheus, Alertmanager,
PostgreSQL behind HAProxy, Patroni, etcd, Valkey) and against the contract fakes of what it
cannot have (Keycloak, MinIO, OpenSearch, Grafana, Loki: fakes/*.py, each following the
upstream document its docstring names). Each fault leaves ``invoke health`` green -- that is
the point of verify -- and makes verify exit 1 naming the service; then it is undone and
verify is green again. Runs after test_stack.py and before test_dbtier.py's failover
(conftest orders the files) on the same stack.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from jsonschemas import validator

from . import dbclient as db
from . import realdb
from .stack import Stack, fake_kind

pytestmark = [pytest.mark.e2e, pytest.mark.docker]


def out(res) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


@pytest.fixture(autouse=True)
def _probes_have_their_peers(stack: Stack) -> None:
    """The probes need the real database tier and the contract fakes (both from the Debian
    root filesystems; required in CI, see realdb.unavailable_reason)."""
    reason = realdb.unavailable_reason()
    if reason:
        pytest.skip(reason)


def verify(stack: Stack, *args: str) -> tuple[int, dict]:
    res = stack.invoke("verify", "--json", *args, timeout=180)
    doc = json.loads(res.stdout)
    errors = sorted(validator("verify").iter_errors(doc), key=str)
    assert not errors, (errors, out(res))
    assert res.returncode == (0 if doc["ok"] else 1), out(res)
    return res.returncode, doc


def failing(doc: dict) -> dict[tuple[str, str], dict]:
    return {(v["service"], v["check"]): v for v in doc["verdicts"] if not v["ok"]}


def health_is_green(stack: Stack) -> None:
    res = stack.invoke("health", "--json", timeout=120)
    assert res.returncode == 0, "the fault must leave health green:\n" + out(res)


@contextmanager
def fault(stack: Stack, on: str, off: str, service: str) -> Iterator[None]:
    """``on`` (a shell command in ``service``'s container), then ``off`` whatever happens."""
    res = stack.compose("exec", "-T", service, "sh", "-c", on, timeout=60)
    assert res.returncode == 0, out(res)
    try:
        yield
    finally:
        res = stack.compose("exec", "-T", service, "sh", "-c", off, timeout=60)
        assert res.returncode == 0, out(res)


# ---------------------------------------------------------------------------------------------


def test_verify_is_green_and_leaves_nothing_behind(running: Stack):
    stack = running
    model = stack.render(with_override=False)
    code, doc = verify(stack)
    assert code == 0, failing(doc)
    declared = {svc for svc, spec in model["services"].items() if (spec.get("x-readiness") or {}).get("verify")}
    assert {v["service"] for v in doc["verdicts"]} == declared
    assert set(doc["unverified"]) == set(model["services"]) - declared
    checks = {(v["service"], v["check"]) for v in doc["verdicts"]}
    # What the issue of record asked for, by service (the probes' names for it).
    for expected in [("haproxy", "write and read back"), ("haproxy", "accepts writes"), ("valkey", "set and get"),
                     ("keycloak", "oidc discovery"), ("keycloak", "admin token"), ("minio", "object round trip"),
                     ("opensearch", "cluster health"), ("opensearch", "index and search"),
                     ("prometheus", "scrape targets"), ("prometheus", "rule groups"),
                     ("alertmanager", "configuration"), ("grafana", "database"),
                     ("grafana", "data source Prometheus"), ("grafana", "data source Loki"),
                     ("loki", "push and query"), ("etcd", "endpoint health"),
                     ("spilo-1", "cluster role"), ("spilo-2", "cluster role")]:
        assert expected in checks, expected
    assert sum(1 for s, c in checks if s == "traefik" and c.startswith("https ")) == \
        len({h for spec in model["services"].values() for h in _hosts(spec)})
    roles = sorted(v["got"].split(",")[0] for v in doc["verdicts"] if v["check"] == "cluster role")
    assert roles == ["leader", "sync_standby"], roles  # synchronous replication, as shipped
    # The fakes really stood in (and the real programs really ran): the fakes logged the calls.
    for svc, spec in model["services"].items():
        if fake_kind(str(spec.get("image", ""))):
            assert f"fake[{fake_kind(spec['image'])}]" in stack.logs(svc), svc
    # Nothing left behind: no probe key in Valkey, no probe table in PostgreSQL.
    port, pw = int(stack.env["VALKEY_PORT"]), db.secret(stack, "valkey_password")
    assert db.resp(port, ["AUTH", pw], ["KEYS", "readiness-verify*"]) == ["+OK", "*0"]
    assert db.query(stack, "SELECT count(*) FROM pg_class WHERE relname LIKE 'readiness_verify%%'") == [(0,)]


def _hosts(spec: dict) -> set[str]:
    import re

    return {h for k, v in (spec.get("labels") or {}).items() if k.endswith(".rule")
            for h in re.findall(r"Host\(\s*`([^`]+)`", str(v))}


def test_verify_one_service_and_refuse_an_unknown_one(running: Stack):
    stack = running
    code, doc = verify(stack, "--service", "valkey")
    assert code == 0 and {v["service"] for v in doc["verdicts"]} == {"valkey"}, doc
    res = stack.invoke("verify", "--service", "no-such-service", timeout=120)
    assert res.returncode == 2 and "no service named no-such-service" in res.stderr, out(res)


def test_a_cache_that_refuses_writes(running: Stack):
    """Valkey answers PING (healthy) but refuses every write: min-replicas-to-write 1, no replica."""
    stack = running
    auth = 'REDISCLI_AUTH="$(cat /run/secrets/valkey_password)" valkey-cli -h 127.0.0.1 '
    with fault(stack, auth + "CONFIG SET min-replicas-to-write 1", auth + "CONFIG SET min-replicas-to-write 0",
               "valkey"):
        health_is_green(stack)
        code, doc = verify(stack)
        assert code == 1
        bad = failing(doc)
        assert set(bad) == {("valkey", "set and get")}, bad
        assert "NOREPLICAS" in bad[("valkey", "set and get")]["got"], bad
    assert verify(stack, "--service", "valkey")[0] == 0


def test_a_database_that_refuses_writes(running: Stack):
    """The leader entry point answers (HAProxy healthy, TCP open) but every new session is
    read-only: default_transaction_read_only on the database clients use."""
    stack = running
    leader = db.wait_for("a leader", lambda: db.leader(stack), timeout=60)
    psql = "psql -U postgres -XAtq -d postgres -c "
    on = psql + shlex.quote("ALTER DATABASE postgres SET default_transaction_read_only = on")
    off = psql + shlex.quote("BEGIN READ WRITE; ALTER DATABASE postgres RESET default_transaction_read_only; COMMIT")
    with fault(stack, on, off, leader):
        health_is_green(stack)
        code, doc = verify(stack)
        assert code == 1
        bad = failing(doc)
        assert set(bad) == {("haproxy", "accepts writes"), ("haproxy", "write and read back")}, bad
        assert "read-only" in bad[("haproxy", "accepts writes")]["got"], bad
        assert "default_transaction_read_only" in bad[("haproxy", "accepts writes")]["fix"], bad
    assert verify(stack, "--service", "haproxy")[0] == 0


def test_a_data_source_failing_its_health_check(running: Stack):
    """Grafana healthy, but its Loki data source fails "Save & test" (the plugin did not load:
    the contract fake's fault file emulates Grafana 13 on a read-only root)."""
    stack = running
    with fault(stack, "touch /var/lib/grafana/.fault-plugin-loki", "rm -f /var/lib/grafana/.fault-plugin-loki",
               "grafana"):
        health_is_green(stack)
        code, doc = verify(stack, "--service", "grafana")
        assert code == 1
        bad = failing(doc)
        assert set(bad) == {("grafana", "data source Loki")}, bad
        assert "not registered" in bad[("grafana", "data source Loki")]["got"], bad
    assert verify(stack, "--service", "grafana")[0] == 0


def test_loki_dropping_pushes(running: Stack):
    """Loki ready and answering, but what it is sent is not stored (the fake's fault file)."""
    stack = running
    with fault(stack, "touch /loki/.fault-drop-pushes", "rm -f /loki/.fault-drop-pushes", "loki"):
        health_is_green(stack)
        code, doc = verify(stack, "--service", "loki")
        assert code == 1
        bad = failing(doc)
        assert set(bad) == {("loki", "push and query")}, bad
        assert "not found" in bad[("loki", "push and query")]["got"], bad
    assert verify(stack, "--service", "loki")[0] == 0
