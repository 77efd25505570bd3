"""Benchmark: the database tier under concurrent writers: commit latency, a crash, a switchover.

Boots the database tier of the repository's stack (etcd, spilo-1, spilo-2, HAProxy, the
postgres-init one-shot) from a fresh clone with the end-to-end suite's real programs
(tests/e2e/realdb.py: Patroni 4 + PostgreSQL 17, etcd 3.5, HAProxy 3.2; shipped files and
healthcheck timing). ``--writers N`` connections (default 8) each commit one row after the
other through HAProxy's published port on 127.0.0.1, as fast as they can (autocommit
``INSERT``; a failed attempt closes the connection and the writer reconnects, libpq
``connect_timeout`` 2 s). Then:

1. **Commit latency**, asynchronous and synchronous replication side by side: the mode is set
   with ``patronictl edit-config`` (the shipped one, synchronous, last), the writers run for
   a few seconds, and p50 / p99 of one commit's wall time are printed, with commits per second.
2. **Crash** (``--runs``, default 3): after the writers have run a while, ``docker kill
   --signal KILL`` on the leader's container (no shutdown: Patroni cannot hand over, the
   replica waits for the leader key's TTL). "Writes resumed after" = from the kill to the
   first commit after it; the writers go on 5 s more. "Lost" = acknowledged commits (before
   or after the kill) the new leader does not have. The killed member then rejoins.
3. **Switchover**, as an upgrade does it: ``patronictl switchover`` to the other member, under
   the writers; "writes resumed after" = the time without a commit, from the old leader's
   last to the new leader's first (what a writer waits through; the old leader commits until
   it demotes). The time from starting the command is printed beside it: it adds
   ``docker compose exec`` and the CLI's start, which no writer waits for.

Last lines::

    failover: writes resumed after <s> s; <lost> of <committed> committed writes lost
    switchover: writes resumed after <s> s

Targets: 0 commits lost; crash failover <= ttl + 5 s (the leader key expires after ttl: the
floor); switchover <= 3 s. A script, not a test: figures are printed, never asserted
(``--strict`` exits 1 when a target is missed). The stack is always torn down.

    python benchmarks/bench_failover.py [--writers 8] [--runs 3] [--strict]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import dbclient as db  # noqa: E402
from e2e import realdb  # noqa: E402
from e2e.stack import Stack  # noqa: E402

TIER = ("etcd", "spilo-1", "spilo-2", "haproxy", "postgres-init")
SWITCHOVER_TARGET_S = 3.0
LATENCY_S = 6.0
WARMUP_S = 3.0
AFTER_S = 5.0
GIVE_UP_S = 120.0


def boot(stack: Stack) -> None:
    res = stack.invoke("bootstrap", timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"invoke bootstrap failed:\n{res.stdout}{res.stderr}")
    t0 = time.monotonic()
    # The long-running services healthy, then the one-shot run to completion (`up --wait`
    # counts a one-shot that exits as a failure; `compose wait` returns its exit code).
    for step in (("up", "-d", "--wait", "--wait-timeout", "400", *TIER[:-1]), ("up", "-d", TIER[-1]),
                 ("wait", TIER[-1])):
        res = stack.compose(*step, timeout=600)
        if res.returncode != 0:
            raise SystemExit(f"docker compose {' '.join(step)} failed:\n{res.stdout}{res.stderr}")
    stack.events.append(f"tier up in {time.monotonic() - t0:.0f} s")


def settled(stack: Stack, replica_role: str = "sync_standby") -> str:
    """The leader's name once the other member streams from it in ``replica_role``."""
    doc = db.wait_for(f"one leader and one streaming {replica_role}",
                      lambda: (d := db.cluster(stack)) and sorted(db.roles(d).values()) ==
                      [("leader", "running"), (replica_role, "streaming")] and d, timeout=180)
    return next(name for name, (role, _) in db.roles(doc).items() if role == "leader")


def patronictl(stack: Stack, member: str, *args: str) -> str:
    res = stack.compose("exec", "-T", member, "patronictl", *args, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"patronictl {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def ttl(stack: Stack, member: str) -> int:
    return int(yaml.safe_load(patronictl(stack, member, "show-config")).get("ttl", 30))


class Writers:
    """N connections committing one row after the other until stopped: what was acknowledged,
    each commit's wall time, and the first commit after a moment (and on which server)."""

    def __init__(self, stack: Stack, n: int, tag: int) -> None:
        self.stack, self.n, self.tag = stack, n, tag
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[int, int]] = []
        self.latency: list[float] = []
        self.failures = 0
        self.mark: float | None = None
        self.first_after: tuple[float, str] | None = None
        self.first_on: dict[str, float] = {}  # server address -> its first commit after the mark
        self.last_on: dict[str, float] = {}  # server address -> its latest commit
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(n)]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def after(self, moment: float) -> None:
        """From now on, note the first commit that completes after ``moment``."""
        with self.lock:
            self.mark, self.first_after, self.first_on = moment, None, {}

    def _run(self, writer: int) -> None:
        import psycopg

        dsn = db.dsn(self.stack, connect_timeout=2)
        conn, seq = None, 0
        while not self.stop.is_set():
            seq += 1
            try:
                if conn is None:
                    conn = psycopg.connect(dsn, autocommit=True)
                t0 = time.monotonic()
                (server,), = conn.execute("INSERT INTO bench_failover (tag, writer, seq) VALUES (%s, %s, %s) "
                                          "RETURNING host(inet_server_addr())", (self.tag, writer, seq)).fetchall()
                done = time.monotonic()
                with self.lock:
                    self.acked.append((writer, seq))
                    self.latency.append(done - t0)
                    if self.mark is not None and self.first_after is None and done > self.mark:
                        self.first_after = (done, server)
                    if self.mark is not None and done > self.mark:
                        self.first_on.setdefault(server, done)
                    self.last_on[server] = max(done, self.last_on.get(server, 0.0))
            except psycopg.Error:
                with self.lock:
                    self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def lost(self) -> int:
        present = set(db.query(self.stack, "SELECT writer, seq FROM bench_failover WHERE tag = %s", (self.tag,)))
        return len(set(self.acked) - present)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(stack: Stack, n: int, tag: int, mode: str) -> None:
    leader = settled(stack, "replica" if mode == "asynchronous" else "sync_standby")
    with Writers(stack, n, tag) as w:
        time.sleep(LATENCY_S)
    print(f"commit latency, {mode} replication, {n} writers: p50 {percentile(w.latency, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(w.latency, 0.99) * 1000:.1f} ms, {len(w.latency) / LATENCY_S:.0f} commits/s "
          f"(leader {leader})", flush=True)


def crash(stack: Stack, n: int, tag: int) -> tuple[float, int, int]:
    """(seconds until writes resumed, committed, lost)."""
    leader = settled(stack)
    with Writers(stack, n, tag) as w:
        time.sleep(WARMUP_S)
        subprocess.run(["docker", "kill", "--signal", "KILL", stack.container_id(leader)], capture_output=True,
                       check=True)
        killed = time.monotonic()
        w.after(killed)
        while w.first_after is None:
            if time.monotonic() - killed > GIVE_UP_S:
                raise SystemExit(f"writes did not resume within {GIVE_UP_S:.0f} s of killing {leader}")
            time.sleep(0.05)
        time.sleep(AFTER_S)
    resumed = w.first_after[0] - killed
    lost = w.lost()
    print(f"crash {tag}: SIGKILL to {leader}; writes resumed after {resumed:.1f} s; {lost} of {len(w.acked)} "
          f"acknowledged commits lost ({w.failures} attempts failed meanwhile)", flush=True)
    res = stack.compose("start", leader, timeout=180)
    if res.returncode != 0:
        raise SystemExit(f"docker compose start {leader} failed:\n{res.stderr}")
    return resumed, len(w.acked), lost


def switchover(stack: Stack, n: int, tag: int) -> tuple[float, int]:
    """(seconds without a commit: from the old leader's last to the new one's first, lost).

    That gap is what the writers wait through. How long ``patronictl switchover`` itself
    took to start (``docker compose exec`` and a Python CLI on a 2-core machine) is printed
    beside it, with the time from the command to the first commit on the new leader."""
    leader = settled(stack)
    candidate = next(m for m in db.MEMBERS if m != leader)
    old, new = (stack.compose("exec", "-T", "haproxy", "getent", "hosts", m).stdout.split()[0]
                for m in (leader, candidate))
    with Writers(stack, n, tag) as w:
        time.sleep(WARMUP_S)
        started = time.monotonic()
        w.after(started)
        patronictl(stack, leader, "switchover", "--leader", leader, "--candidate", candidate, "--force")
        returned = time.monotonic()
        while new not in w.first_on:
            if time.monotonic() - started > GIVE_UP_S:
                raise SystemExit(f"no commit on {candidate} within {GIVE_UP_S:.0f} s of the switchover")
            time.sleep(0.02)
        time.sleep(AFTER_S)
    first_new, last_old = w.first_on[new], w.last_on.get(old, started)
    gap = first_new - last_old
    lost = w.lost()
    print(f"switchover {leader} -> {candidate}: writes resumed after {gap:.1f} s (no commit from the old "
          f"leader's last to the new one's first); {lost} of {len(w.acked)} acknowledged commits lost; "
          f"patronictl returned after {returned - started:.1f} s, the first commit on {candidate} came "
          f"{first_new - started:.1f} s after it was started", flush=True)
    return gap, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    runs, n = max(1, args.runs), max(1, args.writers)
    try:
        reason = realdb.unavailable_reason()
    except realdb.DBTierUnavailable as exc:
        reason = str(exc)
    if reason:
        print(f"bench_failover: cannot run: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-failover-", ignore_cleanup_errors=True) as tmp:
        os.environ["CAROOT"] = str(Path(tmp) / "caroot")
        Path(os.environ["CAROOT"]).mkdir()
        # The shipped healthcheck timing, as on a real machine.
        stack = Stack.create(Path(tmp), fast_health=False)
        try:
            boot(stack)
            leader = settled(stack)
            print(f"server: {db.query(stack, 'SELECT version()')[0][0]}")
            db.query(stack, "CREATE TABLE IF NOT EXISTS bench_failover (tag int, writer int, seq int, at timestamptz "
                            "DEFAULT clock_timestamp(), PRIMARY KEY (tag, writer, seq))")
            key_ttl = ttl(stack, leader)
            patronictl(stack, leader, "edit-config", "--force", "-s", "synchronous_mode=false")
            latency(stack, n, 1, "asynchronous")
            patronictl(stack, leader, "edit-config", "--force", "-s", "synchronous_mode=true")
            latency(stack, n, 2, "synchronous")
            crashes = [crash(stack, n, 10 + run) for run in range(runs)]
            switched = switchover(stack, n, 100)
            settled(stack)
        finally:
            problems = stack.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    seconds = [c[0] for c in crashes]
    median = statistics.median(seconds)
    lost = sum(c[2] for c in crashes) + switched[1]
    crash_target = key_ttl + 5
    met = {"crash": median <= crash_target, "switchover": switched[0] <= SWITCHOVER_TARGET_S, "lost": lost == 0}
    print(f"stack: {stack.project}; {'; '.join(stack.events)}")
    print(f"crash runs: {', '.join(f'{s:.1f}' for s in seconds)} s; target <= ttl {key_ttl} + 5 = {crash_target} s: "
          f"{'met' if met['crash'] else 'NOT met'}; 0 lost: {'met' if met['lost'] else 'NOT met'}; switchover "
          f"target <= {SWITCHOVER_TARGET_S:g} s: {'met' if met['switchover'] else 'NOT met'}")
    print(f"failover: writes resumed after {median:.1f} s; {sum(c[2] for c in crashes)} of "
          f"{sum(c[1] for c in crashes)} committed writes lost")
    print(f"switchover: writes resumed after {switched[0]:.1f} s")
    return 1 if args.strict and not all(met.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
