"""One output layer: JSON documents that validate, exit codes as documented, colour only on a terminal.

Every state-reporting task prints exactly one JSON document on stdout with ``--json``, on
success and on failure, and it validates against its schema in ``schemas/``
(``error.schema.json`` for a toolkit error). The exit codes are README's table. Colour and
symbols appear on a pseudo-terminal and nowhere else. Everything runs through the real CLI and
the small fixture stack (its two services use the helper image), on the real engine where a
test needs one.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, invoke_env, run_invoke
from helper_image import ensure_helper_image
from jsonschemas import validator

from readiness import output

ESCAPE = re.compile(r"\x1b\[")


def document(res, schema: str, code: int) -> dict:
    """The one JSON document on stdout: exit code as expected, schema-valid, nothing else printed."""
    assert res.returncode == code, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    doc = json.loads(res.stdout)  # raises on anything besides one document
    errors = sorted(validator(schema).iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    assert doc["ok"] is (code == 0)
    if schema == "error":
        assert doc["exit_code"] == code
    return doc


@pytest.fixture
def booted_mini(mini):
    """The fixture stack with its images set to the (local) helper image, bootstrapped."""
    image = ensure_helper_image()
    (mini / ".env").write_text(f"WEB_IMAGE={image}\nPROXY_IMAGE={image}\n")
    yield mini
    run_invoke(mini, "down", timeout=300)


def test_every_task_prints_one_valid_document_on_success_and_on_failure(booted_mini):
    mini = booted_mini
    document(run_invoke(mini, "bootstrap", "--json"), "bootstrap", 0)
    document(run_invoke(mini, "preflight", "--json"), "preflight", 0)
    urls = document(run_invoke(mini, "urls", "--json"), "urls", 0)
    assert [s["service"] for s in urls["services"]] == ["proxy", "web"]

    up = document(run_invoke(mini, "up", "--json", "--timeout", "120", timeout=600), "up", 0)
    assert set(up["services"]) == {"web", "proxy"} and set(up["started"]) == {"web", "proxy"}
    assert up["bootstrap"]["preflight"]["ok"] is True
    status = document(run_invoke(mini, "status", "--json"), "checks", 0)
    assert {c["service"] for c in status["checks"]} == {"web", "proxy"}

    # A service down: status and health fail, name it, and still print one valid document.
    stopped = subprocess.run(["docker", "compose", "--project-directory", str(mini), "stop", "web"],
                             capture_output=True, text=True, env=invoke_env(mini), timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    status = document(run_invoke(mini, "status", "--json"), "checks", 1)
    assert [c["service"] for c in status["checks"] if not c["ok"]] == ["web"]
    health = document(run_invoke(mini, "health", "--json"), "checks", 1)
    assert {c["service"] for c in health["checks"] if not c["ok"]} == {"web"}

    down = document(run_invoke(mini, "down", "--json"), "down", 0)
    assert down["removed_volumes"] is False
    # A preflight that finds an error is a findings document, exit 1.
    (mini / "secrets" / "web_password").unlink()
    pre = document(run_invoke(mini, "preflight", "--json"), "preflight", 1)
    assert [f["id"] for f in pre["findings"] if f["severity"] == "error"] == ["secret.missing"]


def test_a_stopped_engine_gives_one_error_document(mini_files, tmp_path):
    assert run_invoke(mini_files, "env").returncode == 0
    gone = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    pre = document(run_invoke(mini_files, "preflight", "--json", env=gone), "preflight", 1)
    assert "docker.engine-unreachable" in [f["id"] for f in pre["findings"] if f["severity"] == "error"]
    for task in ("health", "status", "up", "bootstrap"):
        doc = document(run_invoke(mini_files, task, "--json", env=gone), "error", 1)
        assert "engine" in doc["error"]["what"] + doc["error"]["fix"], (task, doc)


def test_exit_codes_missing_tool_usage_and_interrupt(mini, tmp_path):
    assert run_invoke(mini, "env").returncode == 0
    # 127: docker is not on PATH.
    doc = document(run_invoke(mini, "status", "--json", env={"PATH": str(tmp_path)}), "error", 127)
    assert "docker" in doc["error"]["what"].lower()
    # 2: the command was used wrongly (a service that does not exist; a reset without --yes).
    res = run_invoke(mini, "logs", "no-such-service")
    assert res.returncode == 2 and "no service named 'no-such-service'" in res.stderr
    res = run_invoke(mini, "reset")
    assert res.returncode == 2 and "--yes" in res.stderr and (mini / ".env").exists()
    # 130: Ctrl-C during a wait; no traceback, and with --json still one document.
    for extra in ((), ("--json",)):
        proc = subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(REPO), "health", "--wait",
                                 "--timeout", "60", *extra], cwd=mini, env=invoke_env(mini), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(4)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stdout + stderr
        assert "Traceback" not in stdout + stderr and "interrupted" in (stdout + stderr)
        if extra:
            document(subprocess.CompletedProcess([], 130, stdout, stderr), "error", 130)


def test_health_wait_prints_only_attempts_that_change_something(mini):
    assert run_invoke(mini, "bootstrap").returncode == 0
    res = run_invoke(mini, "health", "--wait", "--timeout", "4", "--interval", "0.3")
    assert res.returncode == 1
    attempts = [ln for ln in res.stdout.splitlines() if re.match(r"health: attempt \d+: \d+ check\(s\) failing", ln)]
    assert len(attempts) == 1, res.stdout  # several attempts ran; nothing changed after the first
    assert res.stdout.rstrip().splitlines()[-1].startswith("health: 0/"), res.stdout


def _pty_run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run under a pseudo-terminal (stdout and stderr), as a person at a terminal would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_on_a_terminal_only(mini):
    assert run_invoke(mini, "bootstrap").returncode == 0
    args = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "preflight"]
    env = invoke_env(mini)
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    on_tty = _pty_run(args, mini, env)
    assert ESCAPE.search(on_tty) and "preflight" in on_tty, on_tty
    assert not ESCAPE.search(_pty_run(args, mini, {**env, "NO_COLOR": "1"}))
    assert not ESCAPE.search(_pty_run(args, mini, {**env, "TERM": "dumb"}))
    piped = run_invoke(mini, "preflight")
    assert piped.returncode == 0 and not ESCAPE.search(piped.stdout + piped.stderr)
    status = _pty_run([*args[:-1], "status", "--json"], mini, env)  # --json: never colour
    assert not ESCAPE.search(status)


def test_readme_exit_code_table_matches_the_code():
    text = (REPO / "README.md").read_text()
    table = re.search(r"\| Exit code \| Meaning \|\n\|[-| ]+\|\n((?:\|.*\|\n)+)", text)
    assert table, "README.md has no exit-code table"
    codes = {int(row.split("|")[1].strip().strip("`")) for row in table.group(1).splitlines()}
    assert codes == {0, output.EXIT_FAILED, output.EXIT_USAGE, output.EXIT_MISSING_TOOL, output.EXIT_INTERRUPTED,
                     output.EXIT_UNAVAILABLE}


def test_ctrl_c_during_up_stops_cleanly_and_says_what_runs(booted_mini):
    """The fixture's healthchecks first probe after 30 s: Ctrl-C lands in the health wait."""
    mini = booted_mini
    assert run_invoke(mini, "bootstrap").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(REPO), "up", "--timeout", "120"],
                            cwd=mini, env=invoke_env(mini), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until both containers run, then interrupt
        lines.append(line)
        if "services ready" in line or ": starting" in line and len([x for x in lines if ": starting" in x]) >= 2:
            break
        assert time.monotonic() < deadline, "".join(lines)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    text = "".join(lines) + stdout + stderr
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "interrupted (Ctrl-C); running now: proxy, web" in stderr, text
    assert "invoke up` again" in stderr and "invoke down" in stderr


def test_waiting_for_a_lock_under_json_keeps_stdout_for_the_document(tmp_path):
    """Two runs at once: the one that waits says so on stderr when --json owns stdout."""
    import fcntl
    import io
    import threading

    from readiness.system import fsutil

    lock = tmp_path / ".lock"
    out, err = io.StringIO(), io.StringIO()
    output.configure(as_json=True, out=out, err=err)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other run
        threading.Timer(0.3, lambda: os.close(fd)).start()
        with fsutil.file_lock(lock):
            pass
    finally:
        output.configure()
    assert out.getvalue() == ""
    assert "waiting for another run to release" in err.getvalue()


def test_reset_names_the_compose_volumes_it_would_delete(mini_files):
    """`invoke reset` (whole stack) runs `down --volumes`: its confirmation lists the Compose
    volumes that go with it, not only the data directories."""
    compose_file = mini_files / "infra" / "01-web" / "docker-compose.yml"
    text = compose_file.read_text()
    text = text.replace("      - ${DATA_ROOT:-../../data}/web:/www\n",
                        "      - ${DATA_ROOT:-../../data}/web:/www\n      - cache:/cache\n", 1)
    compose_file.write_text(text + "\nvolumes:\n  cache: {}\n")
    assert run_invoke(mini_files, "env").returncode == 0
    res = run_invoke(mini_files, "reset")
    assert res.returncode == 2 and "volume cache (web)" in res.stderr, res.stderr
    res = run_invoke(mini_files, "reset", "--service", "web")
    assert res.returncode == 2 and "volume " not in res.stderr, res.stderr  # `rm --stop`: no volume goes
