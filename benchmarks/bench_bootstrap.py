"""Benchmark: `invoke bootstrap` and `invoke preflight` on an already-bootstrapped clone vs one
bare `docker compose config --quiet`.

Prints the median wall time of each (at least 5 runs, interleaved so that machine noise hits
all alike) and their ratios. Targets: bootstrap <= 4x, preflight <= 3x (the preflight checks
share one `docker info`, `docker ps`, `docker network ls` and `docker image inspect`, and what
the data directories hold is cached, so a warm preflight runs no helper container). A script,
not a test: figures are printed, never asserted, so a slow CI machine cannot make the suite
flaky.

    python benchmarks/bench_bootstrap.py [--runs 7]
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

from conftest import isolated_repo_copy  # noqa: E402


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bootstrap-", ignore_cleanup_errors=True) as tmp:
        clone, networks = isolated_repo_copy(Path(tmp) / "repo")
        env = dict(os.environ, READINESS_PROJECT_DIR=str(clone), CAROOT=str(Path(tmp) / "caroot"))
        invoke = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "bootstrap"]
        check = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "preflight"]
        compose = ["docker", "compose", "config", "--quiet"]
        timed(invoke, clone, env)  # the first run prepares everything; not measured
        timed(check, clone, env)  # warm: the render and data caches exist, as on a second run
        boot, pre, bare = [], [], []
        for _ in range(max(5, args.runs)):
            boot.append(timed(invoke, clone, env))
            pre.append(timed(check, clone, env))
            bare.append(timed(compose, clone, env))
        # the data directories belong to container uids: a non-root user removes them through the engine
        subprocess.run([*invoke[:-1], "reset", "--yes", "--no-backup"], cwd=clone, env=env, capture_output=True)
        subprocess.run(["docker", "network", "rm", *networks], capture_output=True)
    base = statistics.median(bare)
    for label, runs, target in (("invoke bootstrap (already bootstrapped)", boot, 4.0),
                                ("invoke preflight (warm)", pre, 3.0),
                                ("docker compose config --quiet", bare, None)):
        ratio = "" if target is None else \
            f"; ratio {statistics.median(runs) / base:.2f} (target <= {target:g}: " \
            f"{'met' if statistics.median(runs) / base <= target else 'NOT met'})"
        print(f"{label:40} median {statistics.median(runs) * 1000:.0f} ms over {len(runs)} runs "
              f"(min {min(runs) * 1000:.0f}, max {max(runs) * 1000:.0f}){ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
