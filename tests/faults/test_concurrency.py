"""Concurrency: two `invoke bootstrap` started at once on a fresh stack.

Both run against the real engine and mkcert. Each round must end with one consistent set:
every secret created by exactly one of the two runs, the certificate issued once, the files
on disk when the first run finished byte-identical to those after the second (so both saw the
same bytes), cert.pem matching key.pem, and both runs exiting 0 (the one that had to wait for
the certificate lock says so).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

from .support import (
    LEDGER,
    cert_problems,
    cli_env,
    handshake_ok,
    invoke_argv,
    make_mini,
    network_ids,
    remove_network,
    secret_policies,
    secret_problems,
    snapshot,
)


def rounds() -> int:
    return max(1, int(os.environ.get("READINESS_FAULT_RACES", "3")))


def digest(snap: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in snap.items()}


def race(project):
    """Start two bootstraps together; returns their results and the snapshot at the first exit."""
    procs = [subprocess.Popen(invoke_argv("bootstrap"), cwd=project, env=cli_env(project), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for _ in range(2)]
    first_snap = None
    while any(p.poll() is None for p in procs):
        if first_snap is None and any(p.poll() is not None for p in procs):
            first_snap = snapshot(project)
        time.sleep(0.01)
    if first_snap is None:  # both ended between two polls
        first_snap = snapshot(project)
    outs = [p.communicate(timeout=120) for p in procs]
    for out, err in outs:
        LEDGER.output("concurrent invoke bootstrap", out, err)
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs, strict=True)], first_snap


def test_two_bootstraps_at_once_end_with_one_consistent_set(tmp_path, docker):
    row = LEDGER.row("race.bootstrap")
    waited = 0
    for i in range(rounds()):
        project, net = make_mini(tmp_path / f"mini{i}")
        try:
            results, first_snap = race(project)
            row.cases += 1
            text = "\n".join(o + e for _, o, e in results)
            row.check(all(code == 0 for code, _, _ in results), "both runs exited 0", f"round {i}:\n{text}")
            row.check("Traceback" not in text, "no traceback", f"round {i}:\n{text}")
            final = snapshot(project)
            row.check(digest(first_snap) == digest(final), "the files on disk when the first run ended were the "
                      "files after both (same bytes)", f"round {i}", keeps_data=True)
            counts = {str(pol["file"].relative_to(project)): None for pol in secret_policies(project).values()
                      if not pol.get("certificate")}
            counts = {rel: text.count(f"{rel}: created") for rel in counts}
            row.check(all(n == 1 for n in counts.values()), "each secret created by exactly one run",
                      f"round {i}: {counts}\n{text}", keeps_data=True)
            row.check(text.count("certs: generated") == 1, "the certificate issued once", f"round {i}\n{text}")
            problems = secret_problems(project) + cert_problems(project)
            row.check(not problems, "every secret follows its policy and cert.pem matches key.pem",
                      f"round {i}: {problems}")
            row.check(handshake_ok(project), "a TLS client trusting only rootCA.pem accepts the pair", f"round {i}")
            row.check(len(network_ids(net)) == 1, "the external network exists once", f"round {i}")
            row.check(not list((project / "secrets" / "certs").glob("backup-*")), "a fresh pair made no backup",
                      f"round {i}")
            waited += "waiting for another run" in text
        finally:
            remove_network(net)
    row.figure(f"in {waited} of {rounds()} rounds one run said it waited for the other's lock")
