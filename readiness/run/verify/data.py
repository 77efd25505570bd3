"""Probes of the database tier and the cache: PostgreSQL, Patroni, etcd, Valkey.

PostgreSQL and Valkey are reached as their clients reach them, on the ports the stack
publishes (PostgreSQL through HAProxy, TLS required as Spilo's pg_hba demands), with psycopg
and redis-py. Patroni's REST API and etcd are on the internal network only: they are asked
from inside their own containers (``docker compose exec``), with the tools their images carry.
"""

from __future__ import annotations

import json
from typing import Any

from ...system.retry import poll
from .core import TIMEOUT, Context, Failed, Verdict, expect, probe, probe_each


def _connect_target(ctx: Context, service: str) -> tuple[str, int, dict[str, Any]]:
    """(address, host port, x-readiness.connect) of a service clients connect to."""
    connect = ctx.model.x(service).get("connect") or {}
    port = connect.get("port") or (ctx.model.x(service).get("health") or {}).get("tcp")
    if not port:
        raise Failed(f"{service} declares no x-readiness.connect.port or health.tcp", fix="see docs/x-readiness.md")
    address, published = ctx.published(service, int(port))
    return address, published, connect


@probe_each("postgres", "writable entry point, a write read back in a rolled-back transaction")
def postgres(ctx: Context, svc: str) -> list[Verdict]:
    """PostgreSQL through the leader entry point, with the connection string ``invoke urls``
    prints (``x-readiness.connect``): the server behind it is not in recovery and not
    read-only, and a row written into a temporary table is read back inside one transaction,
    which is rolled back (nothing is left)."""
    out = []
    def connect(svc: str = svc):
        import psycopg

        address, port, spec = _connect_target(ctx, svc)
        url = str(spec.get("url", "postgresql://postgres@{address}:{port}/postgres?sslmode=require"))
        url = url.format(address=address, port=port)
        return psycopg.connect(url, password=ctx.secret(str(spec.get("secret"))), connect_timeout=int(TIMEOUT),
                               application_name="readiness-verify")

    def writable() -> str:
        with connect(svc) as conn:
            recovery, read_only, server = conn.execute(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), "
                "coalesce(host(inet_server_addr()), 'local')").fetchone()
        expect(not recovery, f"{server} is in recovery (a replica): HAProxy routes to a member that is not "
               "the leader", "`invoke logs haproxy`; its leader check must be Patroni's HEAD /primary")
        expect(read_only == "off", f"transactions are read-only on {server} (default_transaction_read_only)",
               "find where it is set: `SELECT setting, source FROM pg_settings WHERE name = "
               "'default_transaction_read_only'`, and reset it (ALTER DATABASE/ROLE ... RESET, or Patroni's "
               "`patronictl edit-config`)")
        return f"the leader at {server} accepts writes"

    out.append(ctx.attempt(svc, "accepts writes", "SELECT pg_is_in_recovery(), transaction_read_only", writable,
                           f"`invoke logs {svc}`; the password is {svc}'s connect secret"))

    def roundtrip() -> str:
        table = ctx.name().replace("-", "_")
        with connect(svc) as conn:
            with conn.transaction(force_rollback=True):
                conn.execute(f"CREATE TEMPORARY TABLE {table} (probe text)")
                conn.execute(f"INSERT INTO {table} VALUES (%s)", (ctx.token,))
                (back,) = conn.execute(f"SELECT probe FROM {table}").fetchone()
            expect(back == ctx.token, f"read back {back!r}")
        return "row written and read back; transaction rolled back"

    out.append(ctx.attempt(svc, "write and read back", "CREATE TEMPORARY TABLE, INSERT, SELECT, ROLLBACK",
                           roundtrip, f"`invoke logs {svc}` and the Spilo members' logs"))
    return out


@probe("patroni", "one leader, every other member a streaming replica, with its lag")
def patroni(ctx: Context, services: list[str]) -> list[Verdict]:
    """Patroni's REST API (patroni.readthedocs.io, "Patroni REST API": ``GET /cluster``),
    and ``GET /config``, asked inside a member (the API is not published): exactly one leader,
    running; every other member of the stack a replica in state ``streaming``, with its
    replication lag; and where the cluster's ``synchronous_mode`` is on, one of them its
    synchronous standby (without one, a commit is acknowledged with no second copy)."""
    from tenacity import wait_fixed

    members = {svc: str(ctx.model.services[svc].get("hostname") or svc) for svc in services}

    def look() -> tuple[dict[str, Any], list[str], dict[str, Any], list[str], list[Any]]:
        """(cluster document, errors, members by name, leaders, replicas still settling)."""
        doc, errors = _cluster(ctx, services)
        view = {m.get("name"): m for m in doc.get("members") or []}
        leaders = [name for name, m in view.items() if m.get("role") in ("leader", "standby_leader")]
        # A replica that has just started is "running" or "starting" for a moment before it
        # streams, and Patroni names a streaming replica synchronous in its next loop (right
        # after `invoke up`): the state that must hold is waited for, briefly.
        settling = [m for name, m in view.items() if name not in leaders and m.get("state") in TRANSIENT]
        if _synchronous(doc) and not settling and not any(m.get("role") == "sync_standby" for m in view.values()):
            settling = [m for name, m in view.items() if name not in leaders]
        return doc, errors, view, leaders, settling

    doc, errors, view, leaders, _ = poll(look, lambda seen: not seen[4], wait=wait_fixed(0.5), timeout=SETTLE)
    out = []
    for svc, name in sorted(members.items()):
        def role(name: str = name, svc: str = svc) -> str:
            expect(doc, "no member answered GET /cluster: " + "; ".join(errors),
                   "`invoke logs` of the members: Patroni is not running")
            expect(len(leaders) == 1, f"{len(leaders)} leaders in the cluster: {', '.join(leaders) or 'none'}",
                   "`patronictl list` in a member shows why; with none, the members cannot reach etcd")
            member = view.get(name)
            expect(member, f"{name} is not a member of the cluster (members: {', '.join(sorted(view))})",
                   "start it (`invoke up`); `invoke logs` says why it left")
            state = member.get("state")
            if name in leaders:
                expect(state == "running", f"leader, state {state}")
                return f"leader, running, timeline {member.get('timeline')}"
            expect(state == "streaming", f"{member.get('role')}, state {state}, lag {member.get('lag')}",
                   f"`invoke logs {svc}`: a replica that cannot stream from the leader (pg_rewind, a missing WAL)")
            lag = member.get("lag")
            if _synchronous(doc) and not any(m.get("role") == "sync_standby" for m in view.values()):
                raise Failed(f"{member.get('role')}, streaming, lag {_lag(lag)}, but not synchronous although the "
                             "cluster's synchronous_mode is on: the leader acknowledges commits it alone holds",
                             f"`invoke logs {svc}` and the leader's; `patronictl list` shows the Sync Standby")
            return f"{member.get('role')}, streaming from {leaders[0]}, lag {_lag(lag)}"

        out.append(ctx.attempt(svc, "cluster role", "GET /cluster and /config (Patroni REST API, inside a member)",
                               role, f"`invoke logs {svc}`"))
    return out


#: Seconds a replica may take from a state in :data:`TRANSIENT` to ``streaming``.
SETTLE = 15.0
TRANSIENT = {"starting", "running", "creating replica", "restarting", "stopping"}


def _cluster(ctx: Context, services: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``GET /cluster`` from the first member that answers (with ``GET /config`` under the key
    ``config``, from the same command), and why the others did not."""
    errors = []
    get = f"curl -fsS --max-time {int(TIMEOUT)} http://localhost:8008"
    script = f"{get}/cluster && echo && {get}/config"
    for svc in services:
        try:
            cluster, _, config = ctx.exec(svc, "sh", "-c", script, timeout=2 * TIMEOUT + 10).partition("\n")
            return {**json.loads(cluster), "config": json.loads(config or "{}")}, errors
        except (Failed, ValueError) as exc:
            errors.append(f"{svc}: {exc}")
    return {}, errors


def _synchronous(doc: dict[str, Any]) -> bool:
    """Whether the cluster's dynamic configuration asks for synchronous replication."""
    return bool((doc.get("config") or {}).get("synchronous_mode"))


def _lag(value: Any) -> str:
    return f"{value} B" if isinstance(value, int) else str(value)


@probe_each("etcd", "endpoint health, and the Patroni cluster's keys present")
def etcd(ctx: Context, svc: str) -> list[Verdict]:
    """etcd's v3 API through ``etcdctl`` inside the container (the image's only client):
    ``endpoint health``, and the leader key of every Patroni cluster of the stack
    (``/<NAMESPACE>/<SCOPE>/leader``, Patroni's layout in its DCS)."""
    scopes = sorted({(str(env.get("NAMESPACE", "/service")).rstrip("/"), str(env["SCOPE"]))
                     for svc, spec in ctx.model.services.items()
                     if ((ctx.model.x(svc).get("verify") or {}).get("probe") == "patroni"
                         and isinstance(env := spec.get("environment") or {}, dict) and env.get("SCOPE"))})
    out = []
    def health() -> str:
        text = ctx.exec(svc, "/usr/local/bin/etcdctl", "endpoint", "health", timeout=TIMEOUT + 10)
        expect("is healthy" in text, text.strip())
        return text.strip().splitlines()[-1]

    out.append(ctx.attempt(svc, "endpoint health", "etcdctl endpoint health", health, f"`invoke logs {svc}`"))
    for namespace, scope in scopes:
        key = f"{namespace}/{scope}/leader"

        def leader(key: str = key) -> str:
            value = ctx.exec(svc, "/usr/local/bin/etcdctl", "get", key, "--print-value-only",
                             timeout=TIMEOUT + 10).strip()
            expect(value, f"no key {key}", "Patroni has no leader: `invoke logs` of its members")
            return f"{key} = {value}"

        out.append(ctx.attempt(svc, f"cluster {scope}", f"etcdctl get {key}", leader, f"`invoke logs {svc}`"))
    return out


@probe_each("valkey", "AUTH, then SET with a TTL, GET and DEL")
def valkey(ctx: Context, svc: str) -> list[Verdict]:
    """Valkey (the Redis protocol; valkey.io/commands) on its published port with redis-py,
    as clients connect (``x-readiness.connect``): authenticated, a probe key set with a
    60-second TTL, read back and deleted."""
    out = []
    def roundtrip() -> str:
        import redis

        address, port, spec = _connect_target(ctx, svc)
        client = redis.Redis(host=address, port=port, password=ctx.secret(str(spec.get("secret"))),
                             socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, decode_responses=True)
        key = ctx.name("valkey")
        try:
            expect(client.set(key, ctx.token, ex=60), "SET was not acknowledged")
            back = client.get(key)
            expect(back == ctx.token, f"GET returned {back!r}")
            expect(client.delete(key) == 1, "DEL removed nothing")
        finally:
            client.close()
        return f"SET {key} EX 60, GET equal, DEL"

    out.append(ctx.attempt(svc, "set and get", "AUTH, SET key EX 60, GET, DEL", roundtrip,
                           f"`invoke logs {svc}`; writes are refused when memory is full under a noeviction "
                           "policy, or by min-replicas-to-write (`CONFIG GET min-replicas-to-write`)"))
    return out
