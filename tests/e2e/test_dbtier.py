"""End-to-end: the database tier and the cache with their real programs.

etcd, two Spilo members (Patroni 4 + PostgreSQL 17, behind a stand-in for Spilo's
configuration step), HAProxy 3.2 and Valkey 8.1 from Debian, each in a local image that
carries the upstream image's paths, users and entrypoint contract (realdb.py), so the shipped
``entrypoint``, ``command`` and ``healthcheck`` run unchanged. The tests run after
test_stack.py on the same stack (conftest orders them) and end with a failover, so they come
last. From the host, only the ports the stack publishes on 127.0.0.1 are used.

Nothing is mocked. Skipped, with the reason, where the Debian root filesystems can neither be
found nor built (an error in CI: see rootfs.py).
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import subprocess
import time
import uuid

import pytest
import yaml

from . import dbclient as db
from . import realdb
from .stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

REAL = ("etcd", "spilo-1", "spilo-2", "haproxy", "postgres-init", "valkey")
TABLE = "readiness_e2e_rows"
#: Handed from the failover scenario to the rejoin scenario (they run in file order).
STATE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _real_programs() -> None:
    reason = realdb.unavailable_reason()  # raises in CI: there the real tier is required
    if reason:
        pytest.skip(reason)


def out(res) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


def exec_(stack: Stack, svc: str, *argv: str) -> str:
    res = stack.compose("exec", "-T", svc, *argv, timeout=60)
    assert res.returncode == 0, out(res)
    return res.stdout


def proc1(stack: Stack, svc: str) -> tuple[str, str]:
    """(real uid:gid, command line) of the container's PID 1."""
    status = exec_(stack, svc, "cat", "/proc/1/status")
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
    gid = re.search(r"^Gid:\s+(\d+)", status, re.M).group(1)
    cmdline = exec_(stack, svc, "cat", "/proc/1/cmdline").replace("\0", " ").strip()
    return f"{uid}:{gid}", cmdline


def member_ip(stack: Stack, member: str) -> str:
    return exec_(stack, "haproxy", "getent", "hosts", member).split()[0]


def replica_has(stack: Stack, member: str, token: str) -> bool:
    return db.member_psql(stack, member, f"SELECT count(*) FROM {TABLE} WHERE token = '{token}'") == "1"


# ---------------------------------------------------------------------------------------------


def test_real_programs_run_the_shipped_lines(running: Stack):
    """Only the image (and the probe interval) differs from the shipped services; the real
    programs run as the upstream images' users with the repository's configuration."""
    stack = running
    shipped, swapped = stack.render(with_override=False), stack.render(with_override=True)
    override = yaml.safe_load(stack.override.read_text())["services"]
    for svc in REAL:
        spec, new = shipped["services"][svc], swapped["services"][svc]
        assert new["image"].startswith("readiness-e2e/real-"), (svc, new["image"])
        assert set(override[svc]) <= {"image", "healthcheck"}, (svc, override[svc])
        for key in ("entrypoint", "command", "user", "environment"):
            assert new.get(key) == spec.get(key), f"{svc}.{key} differs from the shipped value"
        if "healthcheck" in spec:
            assert {k: v for k, v in new["healthcheck"].items() if k != "interval"} == \
                {k: v for k, v in spec["healthcheck"].items() if k != "interval"}, svc

    # The programs themselves, as PID 1 under the upstream images' users.
    assert re.search(r"etcd Version: 3\.\d+", exec_(stack, "etcd", "/usr/local/bin/etcd", "--version"))
    assert proc1(stack, "etcd") == ("0:0", "/usr/local/bin/etcd")
    for member in db.MEMBERS:
        ids, cmd = proc1(stack, member)
        assert (ids, cmd) == ("101:103", "/usr/bin/python3 /usr/bin/patroni /run/postgres.yml"), member
        assert exec_(stack, member, "stat", "-c", "%u:%g", "/home/postgres/pgdata/pgroot").strip() == "101:103"
    assert re.match(r"PostgreSQL 17\.", db.query(stack, "SELECT version()")[0][0])
    ids, cmd = proc1(stack, "haproxy")
    assert ids == "99:99" and cmd.startswith("haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg"), (ids, cmd)
    assert re.search(r"HAProxy version 3\.[1-9]", exec_(stack, "haproxy", "haproxy", "-v"))
    cfg = exec_(stack, "haproxy", "sha256sum", "/usr/local/etc/haproxy/haproxy.cfg").split()[0]
    assert cfg == hashlib.sha256((stack.root / "infra/02-postgres/haproxy/haproxy.cfg").read_bytes()).hexdigest()
    # Valkey: the shipped `sh -c 'exec docker-entrypoint.sh valkey-server ...'` went through the
    # entrypoint's chown + setpriv: the server is PID 1 as 999:999 and owns its AOF in /data.
    ids, cmd = proc1(stack, "valkey")
    assert ids == "999:999" and cmd.startswith("valkey-server "), (ids, cmd)
    assert exec_(stack, "valkey", "stat", "-c", "%u:%g", "/data/appendonlydir").strip() == "999:999"


def test_two_members_and_one_leader(running: Stack):
    """Patroni elected one leader through etcd; the other member streams from it and is its
    synchronous standby (a commit waits for it); HAProxy routes the published port to the
    leader only."""
    stack = running
    doc = db.wait_for("one leader and one streaming synchronous standby",
                      lambda: (d := db.cluster(stack)) and sorted(db.roles(d).values()) ==
                      [("leader", "running"), ("sync_standby", "streaming")] and d, timeout=120)
    assert sorted(db.roles(doc)) == list(db.MEMBERS)
    assert doc["scope"] == shipped_scope(stack)
    leader = db.leader(stack)
    replica = next(m for m in db.MEMBERS if m != leader)
    # The lock lives in the real etcd, under Patroni's namespace and the stack's scope.
    key = f"/service/{doc['scope']}/leader"
    assert exec_(stack, "etcd", "/usr/local/bin/etcdctl", "get", key, "--print-value-only").strip() == leader
    # HAProxy's leader check (HEAD /primary on 8008): leader UP, replica DOWN (waited for:
    # a check of the new state may not have run yet).
    db.wait_for(f"HAProxy: {leader} UP, {replica} DOWN",
                lambda: db.haproxy_servers(stack) == {leader: "UP", replica: "DOWN"}, timeout=30)
    # Through the published port: a writable server, and it is the leader's address.
    (in_recovery, addr), = db.query(stack, "SELECT pg_is_in_recovery(), host(inet_server_addr())")
    assert in_recovery is False and addr == member_ip(stack, leader)
    assert db.member_psql(stack, replica, "SELECT pg_is_in_recovery()") == "t"
    assert db.query(stack, "SHOW ssl")[0][0] == "on"
    # Synchronous replication, as the shipped SPILO_CONFIGURATION asks: the leader waits for
    # the replica's flush before it acknowledges a commit.
    assert db.query(stack, "SELECT application_name, state, sync_state FROM pg_stat_replication") == \
        [(replica, "streaming", "sync")]
    assert replica in db.query(stack, "SHOW synchronous_standby_names")[0][0]
    assert db.query(stack, "SHOW synchronous_commit")[0][0] == "on"


def shipped_scope(stack: Stack) -> str:
    return stack.render(with_override=False)["services"]["spilo-1"]["environment"]["SCOPE"]


def test_row_written_through_haproxy_is_read_on_the_replica(running: Stack):
    stack = running
    token = uuid.uuid4().hex
    db.query(stack, f"CREATE TABLE IF NOT EXISTS {TABLE} (token text PRIMARY KEY, at timestamptz DEFAULT now())")
    db.query(stack, f"INSERT INTO {TABLE} (token) VALUES (%s)", (token,))
    replica = next(m for m in db.MEMBERS if m != db.leader(stack))
    db.wait_for(f"row {token} on the replica {replica}", lambda: replica_has(stack, replica, token), timeout=30)
    # A replica is read-only: the same write there is refused.
    res = stack.compose("exec", "-T", replica, "psql", "-U", "postgres", "-XAtq", "-c",
                        f"INSERT INTO {TABLE} (token) VALUES ('x')", timeout=60)
    assert res.returncode != 0 and "read-only transaction" in res.stderr, out(res)
    # Without TLS the published port is refused (Spilo's pg_hba: hostnossl ... reject).
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(db.dsn(stack).replace("sslmode=require", "sslmode=disable")).close()


def test_postgres_init_created_keycloak_role_and_database_idempotently(running: Stack):
    """The one-shot ran its shipped SQL through HAProxy against the real leader; a second run
    exits 0 and leaves the role and the database as they were."""
    stack = running
    assert stack.ps()["postgres-init"]["ExitCode"] == 0
    assert "postgres-init: role and database keycloak are in place" in stack.logs("postgres-init")

    def snapshot() -> list[tuple]:
        return db.query(stack, """
            SELECT r.oid::int, r.rolname, r.rolcanlogin, r.rolsuper, d.oid::int, d.datname, pg_get_userbyid(d.datdba)
              FROM pg_roles r, pg_database d WHERE r.rolname = 'keycloak' AND d.datname = 'keycloak'""")

    before = snapshot()
    assert len(before) == 1, before
    assert before[0][1:4] == ("keycloak", True, False) and before[0][5:] == ("keycloak", "keycloak"), before
    # Keycloak's own login: user keycloak, its secret, database keycloak, through HAProxy.
    assert db.query(stack, "SELECT current_user, current_database()", user="keycloak",
                    password_secret="keycloak_db_password", dbname="keycloak") == [("keycloak", "keycloak")]

    again = stack.compose("run", "--rm", "--no-deps", "-T", "postgres-init", timeout=180)
    assert again.returncode == 0, out(again)
    assert "role and database keycloak are in place" in again.stdout
    assert snapshot() == before  # same role and database (same oids, owner, attributes)
    assert db.query(stack, "SELECT count(*) FROM pg_roles WHERE rolname = 'keycloak'")[0][0] == 1
    assert db.query(stack, "SELECT current_user", user="keycloak", password_secret="keycloak_db_password",
                    dbname="keycloak") == [("keycloak",)]
    # The password never reached the server log (SET log_statement = 'none' in the shipped SQL).
    pw = db.secret(stack, "keycloak_db_password")
    leader = db.leader(stack)
    logs = exec_(stack, leader, "sh", "-c", "cat /home/postgres/pgdata/pgroot/pg_log/*.csv")
    assert "ALTER ROLE keycloak" not in logs and pw not in logs


def test_valkey_rejects_a_client_without_the_password(running: Stack):
    stack = running
    port = int(stack.env["VALKEY_PORT"])
    pw = db.secret(stack, "valkey_password")
    key = f"e2e:{uuid.uuid4().hex[:8]}"
    no_auth = db.resp(port, ["PING"], ["SET", key, "x"], ["GET", key])
    assert all(r.startswith("-NOAUTH") for r in no_auth), no_auth
    assert db.resp(port, ["AUTH", "not-" + pw])[0].startswith("-WRONGPASS")
    assert db.resp(port, ["AUTH", pw], ["PING"], ["SET", key, "x"], ["GET", key], ["DEL", key]) == \
        ["+OK", "+PONG", "+OK", "$x", ":1"]
    # The shipped healthcheck (REDISCLI_AUTH from the secret, grep PONG) is what made it healthy.
    health = json.loads(subprocess.run(["docker", "inspect", "--format", "{{json .State.Health}}",
                                        stack.container_id("valkey")], capture_output=True, text=True).stdout)
    # (Any probe of its log, not the last: one may time out on a loaded machine while the
    # container stays healthy, as Docker needs `retries` failures in a row.)
    assert health["Status"] == "healthy" and any(probe["ExitCode"] == 0 for probe in health["Log"]), health


def test_leader_stopped_replica_promoted_haproxy_follows_health_names_member(running: Stack):
    """Stop the leader's container: Patroni promotes the replica, HAProxy sends writes to it,
    `invoke health` fails naming the stopped member only while the entry point stays green."""
    stack = running
    leader = db.wait_for("a leader", lambda: db.leader(stack), timeout=60)
    replica = next(m for m in db.MEMBERS if m != leader)
    before = uuid.uuid4().hex
    db.query(stack, f"INSERT INTO {TABLE} (token) VALUES (%s)", (before,))
    db.wait_for("the row on the replica", lambda: replica_has(stack, replica, before), timeout=30)
    STATE["stopped"], STATE["stopped_ip"] = leader, member_ip(stack, leader)

    t0 = time.monotonic()
    res = stack.compose("stop", leader, timeout=120)
    assert res.returncode == 0, out(res)
    db.wait_for(f"{replica} promoted", lambda: db.leader(stack, (replica,)) == replica, timeout=60)

    def write() -> str:
        token = uuid.uuid4().hex
        db.query(stack, f"INSERT INTO {TABLE} (token) VALUES (%s)", (token,), connect_timeout=3)
        return token
    during = db.wait_for("a write through HAProxy", write, timeout=60)
    stack.events.append(f"graceful stop of the leader: writes resumed after {time.monotonic() - t0:.1f} s")
    # And they keep working: each on a new connection, for 5 s after the first. (HAProxy holds
    # the old leader UP until its checks fail `fall` times while the new one is UP already;
    # without observe/redispatch in haproxy.cfg every other connection failed meanwhile.)
    for _ in range(20):
        write()
        time.sleep(0.25)
    (in_recovery, addr), = db.query(stack, "SELECT pg_is_in_recovery(), host(inet_server_addr())")
    assert in_recovery is False and addr == member_ip(stack, replica)
    db.wait_for(f"HAProxy: {replica} UP", lambda: db.haproxy_servers(stack)[replica] == "UP", timeout=30)
    assert {t for (t,) in db.query(stack, f"SELECT token FROM {TABLE} WHERE token IN (%s, %s)",
                                   (before, during))} == {before, during}
    STATE["written"] = during

    health = stack.invoke("health", "--json", timeout=120)
    assert health.returncode == 1, out(health)
    checks = {(c["service"], c["kind"]): c for c in json.loads(health.stdout)["checks"]}
    failing = {k: c["detail"] for k, c in checks.items() if not c["ok"]}
    # The stopped member is named, and it is the only container or database-tier check that
    # fails. (HTTPS probes of unrelated services through Traefik are test_stack's subject: on
    # a loaded 2-core machine one may time out at 5 s.)
    tier = {*db.MEMBERS, "etcd", "haproxy", "postgres-init"}
    assert {k for k in failing if k[1] == "container" or k[0] in tier} == {(leader, "container")}, failing
    assert failing[(leader, "container")].startswith("container exited"), failing
    assert checks[("haproxy", "container")]["ok"] and checks[("haproxy", "tcp")]["ok"]
    assert checks[(replica, "container")]["detail"] == "healthy"


#: A probe that runs on the database network where the stopped member's address was: it takes
#: that address (Docker hands it out again), and asks the member's Patroni ``HEAD /primary`` -
#: HAProxy's own check - every 200 ms, one timestamped line per answer (``000``: no answer).
PRIMARY_PROBE = ("while :; do code=$(curl -s -o /dev/null -I -m 1 -w '%{http_code}' http://$0:8008/primary); "
                 "echo \"$(date +%s.%N) $code\"; sleep 0.2; done")


class Writer:
    """Commits a row through HAProxy's published port as fast as one connection at a time can,
    until stopped; keeps, per attempt, the server address that committed it or the error."""

    def __init__(self, stack: Stack) -> None:
        import threading

        self.stack, self.done = stack, threading.Event()
        self.results: list[tuple[float, str, str]] = []  # (time, "ok" | "error", address | message)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                (addr,), = db.query(self.stack, f"INSERT INTO {TABLE} (token) VALUES (%s) "
                                    "RETURNING host(inet_server_addr())", (uuid.uuid4().hex,), connect_timeout=3)
                self.results.append((time.time(), "ok", addr))
            except Exception as exc:  # noqa: BLE001 - every failure is kept and judged by the test
                self.results.append((time.time(), "error", str(exc).strip().splitlines()[0]))

    def committed_on(self) -> set[str]:
        return {detail for _, kind, detail in self.results if kind == "ok"}

    def errors(self) -> list[str]:
        return [detail for _, kind, detail in self.results if kind == "error"]


def haproxy_log(stack: Stack, since: float) -> list[str]:
    """HAProxy's log lines since ``since`` (epoch seconds), each with the engine's timestamp."""
    res = stack.compose("logs", "--no-color", "--no-log-prefix", "--timestamps", "--since",
                        f"{since - 1:.0f}", "haproxy", timeout=60)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]


def test_stopped_member_rejoins_as_replica_under_its_name(running: Stack):
    """Start the stopped member again, after another container started on its network (often on
    its old IP, see the event line): it rejoins as
    a streaming replica, registered under its Docker DNS name (not a stale IP), and is never a
    write target on the way: its Patroni never answers ``/primary`` with 200, HAProxy never
    marks it UP nor counts a passing check for it, and every write made through HAProxy during
    the rejoin commits on the leader (none reaches the rejoining member, not even to be refused
    as read-only)."""
    stack = running
    member = STATE.get("stopped")
    if member is None:
        pytest.skip("needs the failover scenario before it")
    other = next(m for m in db.MEMBERS if m != member)
    other_ip, old_ip = member_ip(stack, other), STATE["stopped_ip"]
    image = json.loads(subprocess.run(["docker", "inspect", stack.container_id(member)], capture_output=True,
                                      text=True).stdout)[0]["Config"]["Image"]
    t0 = time.time()
    # A container that starts while the member is down takes the lowest free address on the
    # network, often the one the member had (the event line below says): Spilo's default
    # connect_address would then point at it. It is the /primary probe as well.
    grab = subprocess.run(["docker", "run", "-d", "--network", stack.db_network, "--entrypoint", "bash",
                           image, "-c", PRIMARY_PROBE, member], capture_output=True, text=True)
    assert grab.returncode == 0, grab.stderr
    grabber = grab.stdout.strip()
    try:
        with Writer(stack) as writer:
            started = stack.compose("start", member, timeout=120)
            assert started.returncode == 0, out(started)
            doc = db.wait_for(f"{member} streaming from {other}",
                              lambda: (d := db.cluster(stack, (other,))) and db.roles(d) ==
                              {other: ("leader", "running"), member: ("sync_standby", "streaming")} and d,
                              timeout=120)
            # The state that must hold once the rejoin is over: HAProxy has checked the member
            # at its new address and Patroni said no (a layer-7 answer, not a timeout), so
            # it is DOWN with no pass counted; the leader is UP.
            rows = db.wait_for(f"HAProxy: {other} UP, and {member} DOWN after a refused /primary check",
                               lambda: (r := db.haproxy_rows(stack)) and r[other]["status"] == "UP"
                               and r[member]["status"] == "DOWN"
                               and r[member]["check_status"].startswith("L7") and r,
                               timeout=60)
            db.wait_for("a write committed after the rejoin",
                        lambda: any(t > time.time() - 5 and k == "ok" for t, k, _ in writer.results[-20:]), timeout=30)
        entry = next(m for m in doc["members"] if m["name"] == member)
        assert (entry["host"], entry["api_url"]) == (member, f"http://{member}:8008/patroni"), entry
        new_ip = member_ip(stack, member)
        grabbed = json.loads(subprocess.run(["docker", "inspect", grabber], capture_output=True, text=True).stdout)
        grabbed_ip = next(iter(grabbed[0]["NetworkSettings"]["Networks"].values()))["IPAddress"]
        probes = subprocess.run(["docker", "logs", grabber], capture_output=True, text=True).stdout.split("\n")
        answers = [line.split() for line in probes if len(line.split()) == 2]
        log = haproxy_log(stack, t0)
        stack.events.append(
            f"{member}: address {old_ip} -> {new_ip} (helper container got {grabbed_ip}); /primary answers "
            f"{dict(sorted(collections.Counter(code for _, code in answers).items()))}; "
            f"HAProxy {rows[member]['status']} ({rows[member]['check_status']}); "
            f"writes during the rejoin: {len(writer.results)}, {len(writer.errors())} failed")
        # The timeline, shown by pytest when an assertion fails (and with -rP): each change of
        # the /primary answer, and HAProxy's log of its checks of the member.
        changes = [a for i, a in enumerate(answers) if i == 0 or a[1] != answers[i - 1][1]]
        print(f"rejoin of {member} from {t0:.3f}:", *(f"probe {t} /primary {c}" for t, c in changes),
              *(line for line in log if member in line), sep="\n")
        # Patroni answered the probe, and never with 200: it serves /primary to the lock owner only.
        assert any(code == "503" for _, code in answers), probes[-20:]
        assert not [line for line in answers if line[1] == "200"], [line for line in answers if line[1] == "200"]
        # HAProxy neither brought the member up nor counted a check that passed for it.
        assert not [line for line in log if re.search(rf"pg_primary/{member} is UP\b|"
                                                      rf"server pg_primary/{member} succeeded", line)], log
        # Every write committed on the leader, and none reached the member to be refused there.
        assert writer.committed_on() == {other_ip}, (writer.committed_on(), other_ip)
        assert not [e for e in writer.errors() if "read-only" in e], writer.errors()
        # The rows written before and during the failover are on the rejoined replica.
        db.wait_for("rows on the rejoined replica",
                    lambda: replica_has(stack, member, STATE["written"]), timeout=60)
    finally:
        subprocess.run(["docker", "rm", "-f", grabber], capture_output=True)
    res = stack.invoke("health", "--wait", "--timeout", "120", timeout=180)
    assert res.returncode == 0, out(res)


def test_a_crashed_leader_loses_no_acknowledged_commit(running: Stack):
    """Eight writers commit through HAProxy as fast as they can; the leader's container gets
    SIGKILL (no shutdown: Patroni cannot hand over, its lock expires after ttl). The
    synchronous standby is promoted, writes resume, and every commit that was acknowledged
    to a writer is on the new leader. Then, alone, the new leader keeps taking writes (the
    synchronous mode is not strict), and the killed member rejoins as its synchronous standby."""
    import threading

    import psycopg

    stack = running
    db.query(stack, "CREATE TABLE IF NOT EXISTS readiness_e2e_crash (writer int, seq int, PRIMARY KEY (writer, seq))")
    doc = db.wait_for("a leader and its synchronous standby",
                      lambda: (d := db.cluster(stack)) and sorted(db.roles(d).values()) ==
                      [("leader", "running"), ("sync_standby", "streaming")] and d, timeout=120)
    leader = next(n for n, (role, _) in db.roles(doc).items() if role == "leader")
    standby = next(m for m in db.MEMBERS if m != leader)
    acked: list[tuple[int, int]] = []
    done, killed = threading.Event(), threading.Event()
    resumed: list[float] = []

    def writer(n: int) -> None:
        conn, seq = None, 0
        while not done.is_set():
            seq += 1
            try:
                if conn is None:
                    conn = psycopg.connect(db.dsn(stack, connect_timeout=2), autocommit=True)
                conn.execute("INSERT INTO readiness_e2e_crash VALUES (%s, %s)", (n, seq))
                acked.append((n, seq))
                if killed.is_set() and not resumed:
                    resumed.append(time.monotonic())
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    db.wait_for("200 commits before the crash", lambda: len(acked) >= 200, timeout=60, interval=0.1)
    before = len(acked)
    t0 = time.monotonic()
    subprocess.run(["docker", "kill", "--signal", "KILL", stack.container_id(leader)], capture_output=True,
                   check=True)
    killed.set()
    try:
        db.wait_for("a commit after the crash", lambda: resumed, timeout=90)
        db.wait_for("200 more commits", lambda: len(acked) > before + 200, timeout=60)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
    stack.events.append(f"SIGKILL of the leader under 8 writers: writes resumed after {resumed[0] - t0:.1f} s; "
                        f"{len(acked)} commits acknowledged")
    present = set(db.query(stack, "SELECT writer, seq FROM readiness_e2e_crash"))
    lost = sorted(set(acked) - present)
    assert not lost, f"{len(lost)} acknowledged commits lost: {lost[:10]}"
    assert db.leader(stack, (standby,)) == standby
    # Alone, the new leader is no longer waiting for a standby: writes go on.
    db.wait_for("no synchronous standby named while alone",
                lambda: not db.query(stack, "SHOW synchronous_standby_names")[0][0], timeout=60)
    db.query(stack, "INSERT INTO readiness_e2e_crash VALUES (99, 1)", connect_timeout=3)
    started = stack.compose("start", leader, timeout=120)
    assert started.returncode == 0, out(started)
    db.wait_for(f"{leader} back as the synchronous standby",
                lambda: (d := db.cluster(stack, (standby,))) and db.roles(d) ==
                {standby: ("leader", "running"), leader: ("sync_standby", "streaming")}, timeout=180)
