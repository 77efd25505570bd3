"""Talking to the e2e stack's database tier and cache as their users do.

From the host, only through the ports the stack publishes on 127.0.0.1: PostgreSQL through
HAProxy (``POSTGRES_PORT``, TLS required as Spilo's pg_hba demands) with psycopg, Valkey
(``VALKEY_PORT``) with a few lines of RESP over a socket. Inside the containers, what their
images carry: Patroni's REST API with curl, psql over the local socket on a member, HAProxy's
stats page with bash. Used by ``test_dbtier.py`` and ``benchmarks/bench_failover.py``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: The Spilo members of the shipped stack, and the entry point in front of them.
MEMBERS = ("spilo-1", "spilo-2")


class StackLike(Protocol):
    root: Any
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 300) -> Any: ...


def secret(stack: StackLike, name: str) -> str:
    return (stack.root / "secrets" / name).read_text().strip()


def dsn(stack: StackLike, *, user: str = "postgres", password_secret: str = "patroni_superuser_password",
        dbname: str = "postgres", connect_timeout: int = 5) -> str:
    """libpq DSN to the leader entry point: 127.0.0.1:POSTGRES_PORT, TLS required."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host="127.0.0.1", port=stack.env["POSTGRES_PORT"], user=user, dbname=dbname,
                         password=secret(stack, password_secret), sslmode="require",
                         connect_timeout=str(connect_timeout), application_name="readiness-e2e")


def connect(stack: StackLike, **kw):
    import psycopg

    return psycopg.connect(dsn(stack, **kw), autocommit=True)


def query(stack: StackLike, sql: str, params: tuple = (), **kw) -> list[tuple]:
    with connect(stack, **kw) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def member_psql(stack: StackLike, member: str, sql: str) -> str:
    """``psql`` as postgres over the member's local socket (trust, as in Spilo's pg_hba)."""
    res = stack.compose("exec", "-T", member, "psql", "-U", "postgres", "-XAtq", "-c", sql, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"psql on {member} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def cluster(stack: StackLike, members: tuple[str, ...] = MEMBERS) -> dict[str, Any] | None:
    """Patroni's ``GET /cluster`` from the first member that answers (None if none does)."""
    for member in members:
        res = stack.compose("exec", "-T", member, "curl", "-fsS", "--max-time", "3",
                            "http://localhost:8008/cluster", timeout=30)
        if res.returncode == 0:
            return json.loads(res.stdout)
    return None


def roles(doc: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Member -> (role, state) from a ``/cluster`` document."""
    return {m["name"]: (m.get("role", ""), m.get("state", "")) for m in (doc or {}).get("members", [])}


def leader(stack: StackLike, members: tuple[str, ...] = MEMBERS) -> str | None:
    found = [name for name, (role, _) in roles(cluster(stack, members)).items() if role == "leader"]
    return found[0] if len(found) == 1 else None


def haproxy_rows(stack: StackLike, backend: str = "pg_primary") -> dict[str, dict[str, str]]:
    """Server -> its row of HAProxy's stats CSV on 8404 (``status``, ``check_status``,
    ``check_health``, ``chkfail``, ...), for one backend."""
    script = ("exec 3<>/dev/tcp/127.0.0.1/8404 && printf 'GET /stats;csv HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3")
    res = stack.compose("exec", "-T", "haproxy", "bash", "-c", script, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"haproxy stats: {res.stderr.strip()}")
    lines = [line for line in res.stdout.splitlines() if line.startswith(("# ", f"{backend},"))]
    header = lines[0][2:].split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row["svname"] != "BACKEND":
            out[row["svname"]] = row
    return out


def haproxy_servers(stack: StackLike, backend: str = "pg_primary") -> dict[str, str]:
    """Server -> status of a backend, as HAProxy's stats page shows it.

    Besides ``UP`` and ``DOWN`` that is ``UP 2/3`` (up, checks failing, not yet ``fall`` of
    them), ``DOWN n/m`` (down, n of ``rise`` passes counted; never seen while haproxy.cfg
    says ``rise 1``), ``MAINT (resolution)`` (no DNS answer) and ``NOLB``/``DRAIN``.
    :func:`settled` tells a final state from a transition."""
    return {name: row["status"] for name, row in haproxy_rows(stack, backend).items()}


def settled(status: str) -> bool:
    """True for HAProxy's final states (``UP``, ``DOWN``), False while checks are counting
    towards a change (``DOWN 1/2``, ``UP 2/3``) or the server is in maintenance."""
    return status in ("UP", "DOWN")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """``probe()`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - a probe failing is "not yet"
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ------------------------------------------------------------------ Valkey (RESP)


def resp(port: int, *commands: list[str], timeout: float = 5.0) -> list[str]:
    """Send each command on one connection to 127.0.0.1:port; the first line of each reply."""
    def encode(args: list[str]) -> bytes:
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a.encode()
            out += f"${len(b)}\r\n".encode() + b + b"\r\n"
        return out

    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        for cmd in commands:
            sock.sendall(encode(cmd))
            line = reader.readline().decode().rstrip("\r\n")
            if line.startswith("$") and int(line[1:]) >= 0:  # bulk string: read its payload
                line = "$" + reader.readline().decode().rstrip("\r\n")
            replies.append(line)
    return replies
