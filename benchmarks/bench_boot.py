"""Benchmark: `invoke up` / `invoke health` against bare Compose, on the e2e stack.

Boots the repository's stack once with the end-to-end suite's locally built images (a fresh
clone, tests/e2e/stack.py), then prints, each as the median of at least 5 interleaved runs in
this one process:

1. `invoke up --no-verify` on a bootstrapped, already-running stack / `docker compose up -d
   --wait` with the same files (target <= 1.25); then the whole `invoke up`, which ends with
   `invoke verify`, and verify's share of it (bench_verify.py has verify's own target);
2. `invoke health` with every service healthy / one `docker compose ps --format json`
   (target <= 3);
3. the delay between a stopped service turning healthy again (the engine's health_status
   event) and a running `invoke health --wait` returning, at the default poll interval
   (target <= 1 s). Measured for valkey (container + TCP checks only: the toolkit's own
   delay) and grafana (also HTTPS through Traefik, so it includes the time Traefik takes to
   route to the container again).

A script, not a test: figures are printed, never asserted (``--strict`` exits 1 when a
target is missed). The stack is always torn down.

    python benchmarks/bench_boot.py [--runs 5] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e.stack import Stack, clean_env  # noqa: E402

TARGETS = {"up": 1.25, "health": 3.0, "delay": 1.0}


def timed(argv: list[str], stack: Stack, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    res = subprocess.run(argv, cwd=stack.root, env=clean_env(env), capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=600)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(argv)}\n{res.stdout}{res.stderr}")
    return elapsed


def paired(name: str, toolkit: list[str], bare: list[str], stack: Stack, runs: int) -> float:
    """Median of per-run ratios; the two commands alternate so machine noise hits both alike."""
    env = stack.invoke_env()
    mine, theirs, ratios = [], [], []
    for i in range(runs):
        if i % 2:
            b = timed(bare, stack, env)
            t = timed(toolkit, stack, env)
        else:
            t = timed(toolkit, stack, env)
            b = timed(bare, stack, env)
        mine.append(t)
        theirs.append(b)
        ratios.append(t / b)
    ratio = statistics.median(ratios)
    print(f"{name}: toolkit median {statistics.median(mine) * 1000:.0f} ms, bare median "
          f"{statistics.median(theirs) * 1000:.0f} ms, median ratio {ratio:.2f} over {runs} runs "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    return ratio


def healthy_at(container: str, since: float, found: dict[str, float], ready: threading.Event) -> None:
    """Time (host clock) of the container's next `health_status: healthy` event."""
    proc = subprocess.Popen(["docker", "events", "--since", f"{since:.3f}", "--filter", f"container={container}",
                             "--filter", "event=health_status", "--format", "{{json .}}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready.set()
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            event = json.loads(line)
            if event.get("status", "").endswith("healthy") and "unhealthy" not in event.get("status", ""):
                found["healthy"] = int(event["timeNano"]) / 1e9
                return
    finally:
        proc.kill()
        proc.wait()


def delay(stack: Stack, service: str, runs: int) -> float:
    """Median seconds from `healthy` to `invoke health --wait` returning."""
    container = stack.container_id(service)
    delays = []
    for _ in range(runs):
        subprocess.run(stack.compose_argv("stop", service), cwd=stack.root, capture_output=True, check=True)
        waiter = subprocess.Popen([*stack.invoke_argv("health", "--wait", "--timeout", "120")], cwd=stack.root,
                                  env=clean_env(stack.invoke_env()), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)  # `invoke health --wait` is polling by now
        found: dict[str, float] = {}
        ready = threading.Event()
        watcher = threading.Thread(target=healthy_at, args=(container, time.time(), found, ready), daemon=True)
        watcher.start()
        ready.wait()
        subprocess.run(stack.compose_argv("start", service), cwd=stack.root, capture_output=True, check=True)
        out, err = waiter.communicate(timeout=180)
        returned = time.time()
        watcher.join(timeout=30)
        if waiter.returncode != 0 or "healthy" not in found:
            raise SystemExit(f"{service}: invoke health --wait failed or no healthy event\n{out}{err}")
        delays.append(returned - found["healthy"])
    d = statistics.median(delays)
    print(f"delay healthy -> `invoke health --wait` returns ({service}): median {d * 1000:.0f} ms over {runs} "
          f"runs (min {min(delays) * 1000:.0f}, max {max(delays) * 1000:.0f})")
    return d


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    runs = max(5, args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-boot-", ignore_cleanup_errors=True) as tmp:
        os.environ["CAROOT"] = str(Path(tmp) / "caroot")
        Path(os.environ["CAROOT"]).mkdir()
        # The shipped healthcheck timing (10-15 s intervals), as on a real machine: the e2e
        # suite's 2 s probes of 13 containers would load a 2-core machine and skew the figures.
        stack = Stack.create(Path(tmp), fast_health=False)
        try:
            for step in (["bootstrap"], ["up", "--timeout", "300"]):
                res = stack.invoke(*step)
                if res.returncode != 0:
                    raise SystemExit(f"invoke {' '.join(step)} failed:\n{res.stdout}{res.stderr}")
            print(f"stack: {stack.project} ({len(stack.ps())} containers), {'; '.join(stack.events)}")
            results = {
                "up": paired("invoke up --no-verify vs docker compose up -d --wait (running stack)",
                             stack.invoke_argv("up", "--no-verify"), stack.compose_argv("up", "-d", "--wait"),
                             stack, runs),
                "health": paired("invoke health vs docker compose ps --format json (all healthy)",
                                 stack.invoke_argv("health"), stack.compose_argv("ps", "--format", "json"),
                                 stack, runs),
                "delay": delay(stack, "valkey", runs),
            }
            grafana = delay(stack, "grafana", runs)
            # `invoke up` ends with `invoke verify`: the whole of it, and verify's share.
            full = statistics.median(timed(stack.invoke_argv("up"), stack, stack.invoke_env()) for _ in range(runs))
            bare = statistics.median(timed(stack.invoke_argv("up", "--no-verify"), stack, stack.invoke_env())
                                     for _ in range(runs))
            print(f"invoke up (with verify): median {full * 1000:.0f} ms, of which verify ~{(full - bare) * 1000:.0f} "
                  f"ms ({(full - bare) / full:.0%})")
        finally:
            problems = stack.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    missed = [k for k, v in results.items() if v > TARGETS[k]]
    for key, value in results.items():
        unit = " s" if key == "delay" else ""
        print(f"  {key:7} {value:.2f}{unit} (target <= {TARGETS[key]}{unit}: "
              f"{'met' if key not in missed else 'NOT met'})")
    print(f"  (grafana, including Traefik re-routing: {grafana:.2f} s)")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
