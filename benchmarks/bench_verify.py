"""Benchmark: how long `invoke verify` takes on a healthy stack.

Boots the repository's stack once with the end-to-end suite's images (a fresh clone,
tests/e2e/stack.py: the real Traefik, Prometheus, Alertmanager and database tier, the contract
fakes of Keycloak, MinIO, OpenSearch, Grafana and Loki), with the shipped healthcheck timing,
then runs `invoke verify --json` at least 5 times and prints the median wall time, with the
slowest checks of the last run (each verdict's own ``seconds``):

    verify: <s> s on a healthy stack (target <= 5 s)

A script, not a test: figures are printed, never asserted (``--strict`` exits 1 when the
target is missed). The stack is always torn down.

    python benchmarks/bench_verify.py [--runs 5] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from e2e.stack import Stack  # noqa: E402

TARGET_S = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    runs = max(5, args.runs)
    with tempfile.TemporaryDirectory(prefix="bench-verify-", ignore_cleanup_errors=True) as tmp:
        os.environ["CAROOT"] = str(Path(tmp) / "caroot")
        Path(os.environ["CAROOT"]).mkdir()
        stack = Stack.create(Path(tmp), fast_health=False)
        try:
            for step in (["bootstrap"], ["up", "--timeout", "300", "--no-verify"]):
                res = stack.invoke(*step)
                if res.returncode != 0:
                    raise SystemExit(f"invoke {' '.join(step)} failed:\n{res.stdout}{res.stderr}")
            times, doc = [], {}
            for _ in range(runs):
                t0 = time.perf_counter()
                res = stack.invoke("verify", "--json", timeout=300)
                times.append(time.perf_counter() - t0)
                doc = json.loads(res.stdout)
                if res.returncode != 0:
                    bad = [f"{v['service']} {v['check']}: {v['got']}" for v in doc.get("verdicts", []) if not v["ok"]]
                    raise SystemExit("invoke verify failed on the healthy stack:\n  " + "\n  ".join(bad))
        finally:
            problems = stack.teardown()
            if problems:
                print("teardown: " + "; ".join(problems), file=sys.stderr)
    slowest = sorted(doc["verdicts"], key=lambda v: -v["seconds"])[:5]
    print(f"{len(doc['verdicts'])} checks on {len({v['service'] for v in doc['verdicts']})} services; slowest in the "
          "last run: " + ", ".join(f"{v['service']} {v['check']} {v['seconds']:.2f} s" for v in slowest))
    median = statistics.median(times)
    print(f"runs: {', '.join(f'{t:.2f}' for t in times)} s")
    print(f"verify: {median:.2f} s on a healthy stack (target <= {TARGET_S:g} s: "
          f"{'met' if median <= TARGET_S else 'NOT met'})")
    return 1 if args.strict and median > TARGET_S else 0


if __name__ == "__main__":
    raise SystemExit(main())
