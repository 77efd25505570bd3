"""Never a traceback: every way a task can end goes through one task class.

``readiness.cli.ToolkitTask`` is the only place a run ends: a ToolkitError, an OSError (a
``secrets/`` left owned by root by a ``sudo`` run, a lock a filesystem refuses), a malformed
``x-readiness`` value, Ctrl-C (tests/test_output.py) and even a bug all end in the
what/where/fix paragraph with a non-zero exit code.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_invoke
from helper_image import engine_sh
from invoke import Context, Exit

from readiness import output
from readiness.cli import ToolkitTask
from readiness.errors import ToolkitError, from_oserror
from readiness.system import engine as enginelib


def assert_paragraph(res, *needles: str) -> None:
    text = res.stdout + res.stderr
    assert res.returncode not in (0, None), text
    assert "Traceback" not in text, text
    assert res.stderr.startswith("error: ") and "fix:" in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


def test_a_secrets_dir_left_to_root_by_sudo(mini):
    """The user cannot write secrets/ any more: one paragraph naming it and the way back, no traceback."""
    engine = enginelib.info(fresh=True)
    if not engine.root_is_host_root:
        pytest.skip(f"a {engine.kind} engine cannot make a file owned by the host's root (rootful engines can)")
    assert run_invoke(mini, "env").returncode == 0
    secrets = mini / "secrets"
    secrets.mkdir(exist_ok=True)  # (a bind mount's source must exist; the engine then gives it to root)
    engine_sh(secrets, "chown 0:0 /d && chmod 0755 /d")
    try:
        res = run_invoke(mini, "secrets")
        if res.returncode == 0:  # this process is root: root-owned is fine for it
            assert subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"
            return
        assert_paragraph(res, str(secrets), "chown")
    finally:
        engine_sh(secrets, f"chown -R {os.getuid()}:{os.getgid()} /d")


def test_a_malformed_x_readiness_value_names_the_service_and_key(mini_files):
    compose_file = mini_files / "infra" / "01-web" / "docker-compose.yml"
    text = compose_file.read_text()
    compose_file.write_text(text.replace('      user: "472:0"\n', '      user: "472:0"\n      data-mode: "abc"\n'))
    res = run_invoke(mini_files, "dirs")
    assert_paragraph(res, "services.web.x-readiness.data-mode", "infra/01-web/docker-compose.yml", "'abc'")
    compose_file.write_text(text.replace('      user: "472:0"\n', '      user: "web"\n'))
    pre = run_invoke(mini_files, "preflight")  # preflight reports it as a finding, still no traceback
    assert pre.returncode == 1 and "Traceback" not in pre.stdout + pre.stderr
    assert "compose.invalid" in pre.stdout and "services.web.x-readiness.user" in pre.stdout, pre.stdout


@pytest.mark.parametrize("value, key, shown", [
    ("      login: admin\n", "services.web.x-readiness.login", "must be a mapping"),
    ("      login:\n        secret: no_such_secret\n", "services.web.x-readiness.login.secret", "'no_such_secret'"),
    ("      connect:\n        url: x://{address}:{port}\n        port: http\n",
     "services.web.x-readiness.connect.port", "'http'"),
])
def test_a_malformed_login_or_connect_names_the_key(mini_files, value, key, shown):
    """`invoke urls` reads login/connect: a bad shape is named when the model is loaded (it was
    an AttributeError, an internal error, after `invoke up` had started the stack)."""
    compose_file = mini_files / "infra" / "01-web" / "docker-compose.yml"
    text = compose_file.read_text()
    compose_file.write_text(text.replace('      user: "472:0"\n', '      user: "472:0"\n' + value))
    (mini_files / ".env").write_text((mini_files / ".env.example").read_text())
    res = run_invoke(mini_files, "urls")
    assert_paragraph(res, key, "infra/01-web/docker-compose.yml", shown)


def _task(body) -> ToolkitTask:
    return ToolkitTask(body, name=body.__name__)


def test_the_task_class_turns_every_ending_into_a_paragraph(capsys):
    def fails(c):
        raise ToolkitError("it failed", where="here", fix="do this", code=output.EXIT_USAGE)

    def oserror(c):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/secrets/x")

    def bug(c):
        raise ValueError("a bug")

    def interrupted(c):
        raise KeyboardInterrupt

    for body, code, needle in ((fails, 2, "error: it failed"), (oserror, 1, "/srv/secrets/x"),
                               (bug, 1, "internal error: ValueError: a bug"), (interrupted, 130, "interrupted")):
        with pytest.raises(Exit) as ended:
            _task(body)(Context())
        assert ended.value.code == code, body.__name__
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (body.__name__, err)
    # The bug's traceback is kept in a file the message names, not printed.
    with pytest.raises(Exit):
        _task(bug)(Context())
    where = next(ln for ln in capsys.readouterr().err.splitlines() if "where:" in ln).split("where:")[1].strip()
    assert "Traceback" in Path(where).read_text()


def test_oserrors_get_a_fix_for_their_cause():
    cases = {errno.EACCES: f"sudo chown -R {os.getuid()}:{os.getgid()} /p", errno.ENOSPC: "free disk space",
             errno.EROFS: "read-only", errno.ENOLCK: "file locks"}
    for code, needle in cases.items():
        err = from_oserror(OSError(code, "x", "/p"))
        assert needle in (err.fix or ""), (code, err.fix)
        assert err.where == "/p"


def test_a_secret_template_without_value_is_refused(mini_files):
    """Every generated file would hold the same text: refused, naming the secret and the key."""
    root = mini_files / "docker-compose.yml"
    text = root.read_text()
    root.write_text(text.replace('template: "https://hooks.example.invalid/{value}"',
                                 'template: "https://hooks.example.invalid/fixed"'))
    res = run_invoke(mini_files, "secrets")
    assert_paragraph(res, "secret hook_url", "{value}", "secrets.hook_url.x-readiness.template")
    assert not (mini_files / "secrets" / "hook_url").exists()
