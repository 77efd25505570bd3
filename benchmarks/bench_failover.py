"""Benchmark: how long writes stop, and what is lost, when the PostgreSQL leader's container is killed.

Boots the database tier of the repository's stack (etcd, spilo-1, spilo-2, HAProxy, the
postgres-init one-shot) from a fresh clone with the end-to-end suite's real programs
(tests/e2e/realdb.py: Patroni 4 + PostgreSQL 17, etcd 3.5, HAProxy 3.2; shipped files and
healthcheck timing), then, per run:

1. a writer commits one row every 100 ms through HAProxy's published port on 127.0.0.1
   (autocommit ``INSERT``; a failed attempt closes the connection and the next tick reconnects,
   libpq ``connect_timeout`` 2 s);
2. after 3 s, ``docker kill --signal KILL`` on the current leader's container (no shutdown:
   Patroni cannot release its lock, so the replica waits for the lock's TTL);
3. "writes resumed after" = from the kill to the first commit that succeeds after it; the
   writer keeps going 5 s more;
4. "committed writes lost" = rows whose commit succeeded (before or after the kill) that the
   new leader does not have: replication is asynchronous, so a commit the old leader
   acknowledged but had not yet streamed is gone after the promotion;
5. the killed member is started again and must rejoin as a streaming replica (pg_rewind where
   needed) before the next run, which kills whichever member leads then.

Prints ``server: <SELECT version()>``, one line per run and, last,
``failover: writes resumed after <median> s; <lost> of <committed> committed writes lost``
(the median over the runs; lost and committed summed over them). Target: <= 30 s. A script,
not a test: figures are printed, never asserted (``--strict`` exits 1 when the target is
missed). The stack is always torn down.

    python benchmarks/bench_failover.py [--runs 3] [--strict]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e import dbclient as db  # noqa: E402
from e2e import realdb  # noqa: E402
from e2e.stack import Stack  # noqa: E402

TARGET_S = 30.0
TIER = ("etcd", "spilo-1", "spilo-2", "haproxy", "postgres-init")
TICK = 0.1
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


def settled(stack: Stack) -> str:
    """The leader's name once the other member streams from it."""
    doc = db.wait_for("one leader and one streaming replica",
                      lambda: (d := db.cluster(stack)) and sorted(db.roles(d).values()) ==
                      [("leader", "running"), ("replica", "streaming")] and d, timeout=180)
    return next(name for name, (role, _) in db.roles(doc).items() if role == "leader")


def one_run(stack: Stack, run: int) -> tuple[float, int, int, str]:
    """(seconds until writes resumed, committed, lost, leader killed)."""
    import psycopg

    leader = settled(stack)
    container = stack.container_id(leader)
    dsn = db.dsn(stack, connect_timeout=2)
    committed: list[int] = []
    failures = 0
    conn = None
    killed_at = resumed_at = None
    seq = 0
    start = next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if killed_at is None and now - start >= WARMUP_S:
            subprocess.run(["docker", "kill", "--signal", "KILL", container], capture_output=True, check=True)
            killed_at = time.monotonic()
        if resumed_at is not None and now - resumed_at >= AFTER_S:
            break
        if killed_at is not None and resumed_at is None and now - killed_at > GIVE_UP_S:
            raise SystemExit(f"run {run}: writes did not resume within {GIVE_UP_S:.0f} s of killing {leader}")
        seq += 1
        try:
            if conn is None:
                conn = psycopg.connect(dsn, autocommit=True)
            conn.execute("INSERT INTO bench_failover (run, seq) VALUES (%s, %s)", (run, seq))
            done = time.monotonic()
            committed.append(seq)
            if killed_at is not None and resumed_at is None and done > killed_at:
                resumed_at = done
        except psycopg.Error:
            failures += 1
            if conn is not None:
                conn.close()
            conn = None
        next_tick += TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))
        next_tick = max(next_tick, time.monotonic() - TICK)
    if conn is not None:
        conn.close()
    present = {s for (s,) in db.query(stack, "SELECT seq FROM bench_failover WHERE run = %s", (run,))}
    lost = len([s for s in committed if s not in present])
    resumed = resumed_at - killed_at  # type: ignore[operator]
    print(f"run {run}: SIGKILL to {leader} (leader); writes resumed after {resumed:.1f} s; {lost} of "
          f"{len(committed)} committed writes lost ({failures} attempts failed meanwhile)", flush=True)
    # The killed member comes back and must rejoin as a replica before the next run.
    res = stack.compose("start", leader, timeout=180)
    if res.returncode != 0:
        raise SystemExit(f"docker compose start {leader} failed:\n{res.stderr}")
    return resumed, len(committed), lost, leader


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    runs = max(3, args.runs)
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
            settled(stack)
            print(f"server: {db.query(stack, 'SELECT version()')[0][0]}")
            db.query(stack, "CREATE TABLE IF NOT EXISTS bench_failover (run int, seq int, at timestamptz "
                            "DEFAULT clock_timestamp(), PRIMARY KEY (run, seq))")
            results = [one_run(stack, run) for run in range(1, runs + 1)]
            settled(stack)
        finally:
            problems = stack.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    seconds = [r[0] for r in results]
    median = statistics.median(seconds)
    print(f"stack: {stack.project}; {'; '.join(stack.events)}")
    print(f"runs: {', '.join(f'{s:.1f}' for s in seconds)} s; target <= {TARGET_S:.0f} s: "
          f"{'met' if median <= TARGET_S else 'NOT met'}")
    print(f"failover: writes resumed after {median:.1f} s; {sum(r[2] for r in results)} of "
          f"{sum(r[1] for r in results)} committed writes lost")
    return 1 if args.strict and median > TARGET_S else 0


if __name__ == "__main__":
    raise SystemExit(main())
