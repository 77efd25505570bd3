"""Benchmark: `invoke bootstrap` on an already-bootstrapped clone vs one bare `docker compose config --quiet`.

Prints the median wall time of each (at least 5 runs, interleaved so that machine noise hits
both alike) and their ratio. Target (issue #2): ratio <= 4. A script, not a test: figures
are printed, never asserted, so a slow CI machine cannot make the suite flaky.

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
    with tempfile.TemporaryDirectory(prefix="bench-bootstrap-") as tmp:
        clone, networks = isolated_repo_copy(Path(tmp) / "repo")
        env = dict(os.environ, READINESS_PROJECT_DIR=str(clone), CAROOT=str(Path(tmp) / "caroot"))
        invoke = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "bootstrap"]
        compose = ["docker", "compose", "config", "--quiet"]
        timed(invoke, clone, env)  # the first run prepares everything; not measured
        boot, bare = [], []
        for _ in range(max(5, args.runs)):
            boot.append(timed(invoke, clone, env))
            bare.append(timed(compose, clone, env))
        subprocess.run(["docker", "network", "rm", *networks], capture_output=True)
    ratio = statistics.median(boot) / statistics.median(bare)
    print(f"invoke bootstrap (already bootstrapped): median {statistics.median(boot) * 1000:.0f} ms "
          f"over {len(boot)} runs (min {min(boot) * 1000:.0f}, max {max(boot) * 1000:.0f})")
    print(f"docker compose config --quiet:           median {statistics.median(bare) * 1000:.0f} ms "
          f"over {len(bare)} runs (min {min(bare) * 1000:.0f}, max {max(bare) * 1000:.0f})")
    print(f"ratio: {ratio:.2f} (target <= 4: {'met' if ratio <= 4 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
