"""Interruption: `invoke env|secrets|certs` killed with SIGKILL at random moments.

Each task runs on a copy of the mini stack in a subprocess whose whole process group
(``docker compose``, ``mkcert``) is killed after a delay drawn, with a fixed seed, from strata
spread over the task's measured run time. Writes and renames under the project are slowed by
the test-only ``inject/sitecustomize.py`` (never by product code) so that a kill can land
half-way through a write; its log tells how many kills did. After every kill:

* every secret present is complete and follows its charset/length policy, every value that
  existed before is byte-identical;
* cert.pem, when present, parses, matches key.pem and chains to rootCA.pem; a key or CA
  without a certificate is at least a complete PEM block; backups are complete;
* .env parses, every value it had is unchanged and its old bytes are kept as they were;
* the next (uninterrupted) run exits 0, keeps every value already written, completes the
  rest, and no temporary file is left behind.

``test_the_kill_test_catches_in_place_writes`` is the control: the same kills against a
throwaway copy whose ``fsutil`` writes in place must produce a truncated file.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest

from .conftest import kill_cases
from .support import (
    INJECT,
    LEDGER,
    Row,
    begins,
    cert_problems,
    copy_readiness,
    env_problems,
    kill_after,
    make_mini,
    remove_network,
    run,
    secret_policies,
    secret_problems,
    snapshot,
    stable_values,
    stray_files,
)

SEED = int(os.environ.get("READINESS_FAULT_SEED", "6"))
PAUSE = "0.02"  # seconds between write chunks / before a rename, in the injected runs


def inject_env(project: Path, log: Path, extra_path: str = "") -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(INJECT), extra_path, os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "READINESS_FAULT_SLOW_IO": PAUSE, "READINESS_FAULT_CHUNKS": "4",
            "READINESS_FAULT_ROOT": str(project), "READINESS_FAULT_LOG": str(log)}


def domain(project: Path) -> str:
    env = project / ".env"
    m = re.search(r"^LOCAL_DOMAIN=(.*)$", env.read_text(errors="replace"), re.M) if env.exists() else None
    return m.group(1).strip() if m else "localhost"


def all_problems(project: Path, env_before: bytes | None) -> list[str]:
    return env_problems(project, env_before) + secret_problems(project) + cert_problems(project, None)


def prepare(task: str, project: Path, rng: random.Random) -> None:
    """Put the project in a state where ``task`` has something to write."""
    env = project / ".env"
    if task == "env":
        if rng.random() < 0.4 or not env.exists():
            env.unlink(missing_ok=True)
        else:  # keep a user edit, drop some keys: the run appends them
            lines = env.read_text().splitlines()
            keys = [ln.split("=", 1)[0] for ln in lines if "=" in ln and not ln.startswith("#")]
            drop = set(rng.sample(keys, rng.randint(1, 3))) - {"MINI_NETWORK", "WEB_PORT"}
            kept = [ln for ln in lines if ln.split("=", 1)[0] not in drop]
            kept = ["BIND_ADDRESS=127.0.0.1  # edited by hand" if ln.startswith("BIND_ADDRESS=") else ln
                    for ln in kept]
            env.write_text("\n".join(kept) + "\n")
    elif task == "secrets":
        files = [p["file"] for p in secret_policies(project).values() if not p.get("certificate")]
        for path in rng.sample(files, rng.randint(1, len(files))):
            path.unlink(missing_ok=True)
            if path.name == "dash_htpasswd" and rng.random() < 0.7:  # its plaintext too, or only the hash
                path.with_name(path.name + ".password").unlink(missing_ok=True)
    elif task == "certs":
        certs_dir = project / "secrets" / "certs"
        if rng.random() < 0.5:  # issue a new pair (sometimes the CA copy too)
            for name in ("cert.pem", "key.pem") + (("rootCA.pem",) if rng.random() < 0.5 else ()):
                (certs_dir / name).unlink(missing_ok=True)
        else:  # a new LOCAL_DOMAIN: the pair no longer covers the names and is replaced
            new = "test.localhost" if domain(project) == "localhost" else "localhost"
            env.write_text(re.sub(r"^LOCAL_DOMAIN=.*$", f"LOCAL_DOMAIN={new}", env.read_text(), flags=re.M))


def measure(task: str, project: Path, rng: random.Random, log: Path) -> tuple[float, int]:
    """Run time of ``task`` from a prepared state, with the same injection as the kill runs,
    and how many writes it made under the project."""
    prepare(task, project, rng)
    log.unlink(missing_ok=True)
    started = time.monotonic()
    res = run(project, task, env=inject_env(project, log))
    assert res.returncode == 0, res.stdout + res.stderr
    return time.monotonic() - started, begins(log)


def first_secret_write(project: Path, log: Path) -> tuple[Path, int, str]:
    """Kill on the first write of a file under ``secrets/`` (the control's target)."""
    return (log, 1, str(project / "secrets"))


def delays(n: int, total: float, rng: random.Random) -> list[float]:
    """One delay per stratum of [0, 1.1 * total], in a shuffled order."""
    out = [(i + rng.random()) * 1.1 * total / n for i in range(n)]
    rng.shuffle(out)
    return out


def last_event(log: Path) -> str:
    lines = log.read_text().splitlines() if log.exists() else []
    return lines[-1].split(" ", 2)[1] if lines else ""


def kill_cycle(task: str, project: Path, n: int, rng: random.Random, log: Path, row: Row,
               extra_path: str = "", search_root: Path | None = None, all_on_begin: bool = False) -> dict[str, int]:
    """``n`` kill-and-rerun cases of ``task``; returns counters, raises on the first violation.

    Every other case (every case with ``all_on_begin``) kills as soon as the n-th write
    starts, for an n drawn from the writes the task makes: those kills land mid-write by
    construction, so the test does not depend on a lucky delay. The others kill after a
    delay drawn from strata of the measured run time (before, between and after writes).
    With ``search_root`` (the control copy) a broken file is counted, not asserted, and every
    kill comes at the first write of a secret: the toolkit also writes other files (its render
    cache), and a kill there says nothing about how secrets are written.
    """
    kw = {"search_root": search_root} if search_root else {}
    total, writes = measure(task, project, rng, log)
    stats = {"cases": 0, "mid_write": 0, "finished_first": 0, "violations": 0}
    for i, delay in enumerate(delays(n, total, rng)):
        prepare(task, project, rng)
        env_before = (project / ".env").read_bytes() if (project / ".env").exists() else None
        before = stable_values(snapshot(project), project, domain(project))
        log.unlink(missing_ok=True)
        on_begin = (log, rng.randint(1, writes), None) if writes and (all_on_begin or i % 2 == 0) else None
        if search_root is not None:
            on_begin = first_secret_write(project, log)
        killed = kill_after(project, 3 * total + 5 if on_begin else delay, task,
                            env=inject_env(project, log, extra_path), on_begin=on_begin, **kw)
        stats["cases"] += 1
        row.cases += 1
        stats["finished_first"] += killed.finished_first
        stats["mid_write"] += last_event(log) == "begin"
        where = f"{task}, kill after {delay:.3f} s (case {stats['cases']})"
        problems = all_problems(project, env_before)
        after = snapshot(project)
        problems += [f"{k} changed or vanished" for k, v in before.items() if k != ".env" and after.get(k) != v]
        if search_root is not None:
            if problems:  # the control copy: restore a complete state and go on counting
                stats["violations"] += 1
                for path in (project / "secrets").rglob("*"):
                    if path.is_file() and path.name not in ("README.md", ".gitkeep"):
                        path.unlink()
                continue
        else:
            row.check(not problems, "after every kill each file was complete or absent, .env parsed and every "
                      "value already written was unchanged", f"{where}: {problems}", keeps_data=True)
        written = stable_values(after, project, domain(project))
        rerun = run(project, task, **kw)
        if search_root is not None:
            assert rerun.returncode == 0, f"{where}: rerun failed\n{rerun.stdout}{rerun.stderr}"
            continue
        row.check(rerun.returncode == 0, "every rerun exited 0", f"{where}\n{rerun.stdout}{rerun.stderr}")
        final = snapshot(project)
        changed = [k for k, v in written.items() if k != ".env" and final.get(k) != v]
        row.check(not changed, "every rerun kept every value already written", f"{where}: {changed}",
                  keeps_data=True)
        left = all_problems(project, env_before if env_before is None else (project / ".env").read_bytes())
        left += env_problems(project, after.get(".env"))
        row.check(not left, "every rerun left complete files and kept the bytes .env had", f"{where}: {left}",
                  keeps_data=True)
        row.check(not stray_files(project), "no rerun left a temporary file behind",
                  f"{where}: {stray_files(project)}")
    return stats


def complete(task: str, project: Path) -> list[str]:
    """What the reruns left undone of the task's work (empty: all done)."""
    out = []
    if task == "env" and "WEB_IMAGE=" not in (project / ".env").read_text():
        out.append(".env lacks WEB_IMAGE")
    if task == "secrets":
        out += [f"{pol['file'].name} is missing or empty" for pol in secret_policies(project).values()
                if not pol.get("certificate") and (not pol["file"].exists() or pol["file"].stat().st_size == 0)]
    if task == "certs":
        if not (project / "secrets" / "certs" / "cert.pem").is_file():
            out.append("no cert.pem")
        out += cert_problems(project, domain(project))
    return out


@pytest.mark.parametrize("task", ["env", "secrets", "certs"])
def test_sigkill_leaves_every_file_complete_and_the_rerun_keeps_every_value(task, tmp_path, docker):
    row = LEDGER.row(f"kill.{task}")
    project, net = make_mini(tmp_path / "mini")
    try:
        first = run(project, "bootstrap")
        assert first.returncode == 0, first.stdout + first.stderr
        rng = random.Random(f"{SEED}-{task}")
        stats = kill_cycle(task, project, kill_cases(), rng, tmp_path / "writes.log", row)
        undone = complete(task, project)
        row.check(not undone, "after the cycle the task's work was complete", undone)
        row.figure(f"{stats['mid_write']} kills landed mid-write, {stats['finished_first']} after the run had ended")
    finally:
        remove_network(net)


IN_PLACE = '''

def create_exclusive(path, data, mode=0o600):  # MUTATION: in place, not atomic
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return True


def atomic_write(path, data, mode=0o600):  # MUTATION: in place, not atomic
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
'''


def test_the_kill_test_catches_in_place_writes(tmp_path, docker):
    """Control: with ``fsutil`` writing in place (a throwaway copy), kills leave truncated secrets."""
    row = LEDGER.row("kill.control")
    row.lost_note = "(deliberately broken copy, not the product)"
    copy = copy_readiness(tmp_path / "mutant")
    fsutil = copy / "readiness" / "system" / "fsutil.py"
    fsutil.write_text(fsutil.read_text() + IN_PLACE)
    project, net = make_mini(tmp_path / "mini")
    try:
        first = run(project, "bootstrap")
        assert first.returncode == 0, first.stdout + first.stderr
        rng = random.Random(f"{SEED}-control")
        stats = kill_cycle("secrets", project, kill_cases(), rng, tmp_path / "writes.log", row, extra_path=str(copy),
                           search_root=copy)
        row.check(stats["violations"] > 0, "kills of the copy that writes in place left a truncated secret: the "
                  "test catches a non-atomic write", stats)
        row.figure(f"{stats['violations']} of {stats['cases']} kills broke a file")
    finally:
        remove_network(net)
