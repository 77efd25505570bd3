"""Concurrency: two `invoke bootstrap` started at once on a fresh stack (issue #6).

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

import pytest

from readiness import networks

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
    LEDGER.start("race.bootstrap")
    n, waited, duplicated = rounds(), 0, 0
    for i in range(n):
        project, net = make_mini(tmp_path / f"mini{i}")
        try:
            results, first_snap = race(project)
            text = "\n".join(o + e for _, o, e in results)
            for code, out, err in results:
                assert code == 0, f"round {i}: a run failed\n{out}{err}"
                assert "Traceback" not in out + err
            final = snapshot(project)
            assert digest(first_snap) == digest(final), f"round {i}: files changed after the first run ended"
            for pol in secret_policies(project).values():
                if pol.get("certificate"):
                    continue
                rel = str(pol["file"].relative_to(project))
                assert text.count(f"{rel}: created") == 1, f"round {i}: {rel} not created exactly once\n{text}"
            assert text.count("certs: generated") == 1, f"round {i}: certificate issued twice\n{text}"
            assert not secret_problems(project) and not cert_problems(project), f"round {i}"
            assert handshake_ok(project)
            duplicated += len(network_ids(net)) != 1
            assert not list((project / "secrets" / "certs").glob("backup-*")), "a fresh pair needs no backup"
            waited += "waiting for another run" in text
        finally:
            remove_network(net)
    network = ("the external network created once" if not duplicated else
               f"BUG: the external network was created twice in {duplicated} of {n} rounds "
               "(`networks.ensure` races; Compose then refuses the ambiguous name)")
    LEDGER.done("race.bootstrap", n,
                f"both runs exit 0 in every round ({waited} of {n} said one waited for the lock); each secret "
                f"created once, the certificate issued once, same bytes after both runs, cert matches key; {network}")
    if duplicated and not hasattr(networks, "dedupe"):
        pytest.xfail(f"networks.ensure created the external network twice in {duplicated} of {n} rounds; "
                     "the fix (networks.dedupe) is in the report of issue #6")
    assert not duplicated, f"two networks with one name in {duplicated} of {n} rounds"
