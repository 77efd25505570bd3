"""Each prerequisite broken on a bootstrapped stack gives exactly one finding naming it.

Issue #2 acceptance: a missing secret file; an unescaped ``$VAR`` in a healthcheck; a
bind-mount directory owned by another uid; a published port taken by another process; a
required variable blanked in .env; a certificate that does not cover a routed hostname.
Reverting the change brings exit 0 again. (REQ-BOOT-005, STORY-02, VAL-PLN-003)
"""

from __future__ import annotations

import json
import os
import shutil
import socket

import pytest
from conftest import run_invoke


def findings(project):
    result = run_invoke(project, "preflight", "--json")
    doc = json.loads(result.stdout)
    return result.returncode, doc["findings"]


def only(project, ident):
    code, found = findings(project)
    assert code != 0
    assert [f["id"] for f in found] == [ident], found
    return found[0]


@pytest.fixture
def ready(mini):
    result = run_invoke(mini, "bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    return mini


def test_missing_secret_file(ready):
    path = ready / "secrets" / "web_password"
    saved = path.read_bytes()
    path.unlink()
    f = only(ready, "secret.missing")
    assert f["file"] == "secrets/web_password" and f["service"] == "web"
    path.write_bytes(saved)
    os.chmod(path, 0o444)
    assert findings(ready) == (0, [])


def test_unescaped_dollar_in_healthcheck(ready):
    compose = ready / "infra" / "01-web" / "docker-compose.yml"
    original = compose.read_text()
    compose.write_text(original.replace("wget -qO- http://127.0.0.1:8080/", "wget -qO- http://127.0.0.1:$WEB_INNER/"))
    f = only(ready, "compose.unescaped-dollar")
    assert "$WEB_INNER" in f["message"] and f["service"] == "web"
    assert f["file"] == "infra/01-web/docker-compose.yml"
    compose.write_text(original)
    assert findings(ready) == (0, [])


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root (CI runs as root)")
def test_data_dir_owned_by_another_uid(ready):
    data = ready / "data" / "web"
    st = data.stat()
    os.chown(data, 12345, 12345)
    f = only(ready, "dir.not-writable")
    assert f["file"] == "data/web" and f["service"] == "web" and "472" in f["message"]
    assert "sudo chown 472:0" in f["fix"]
    os.chown(data, st.st_uid, st.st_gid)
    assert findings(ready) == (0, [])


def test_published_port_taken(ready):
    port = int(next(ln for ln in (ready / ".env").read_text().splitlines() if ln.startswith("WEB_PORT=")).split("=")[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        f = only(ready, "port.in-use")
        assert f"127.0.0.1:{port}" in f["message"] and f["service"] == "web"
    assert findings(ready) == (0, [])


def test_required_variable_blanked(ready):
    env = ready / ".env"
    original = env.read_text()
    env.write_text(original.replace("LOCAL_DOMAIN=localhost", "LOCAL_DOMAIN="))
    f = only(ready, "env.required-unset")
    assert "LOCAL_DOMAIN" in f["message"] and f["file"].startswith(".env:")
    env.write_text(original)
    assert findings(ready) == (0, [])


def test_certificate_missing_a_routed_hostname(ready):
    compose = ready / "infra" / "01-web" / "docker-compose.yml"
    original = compose.read_text()
    extra = "      traefik.http.routers.extra.rule: Host(`extra.${LOCAL_DOMAIN:?set LOCAL_DOMAIN in .env}`)\n"
    anchor = "    x-readiness:\n      user: \"472:0\""
    compose.write_text(original.replace(anchor, extra + anchor))
    f = only(ready, "cert.invalid")
    assert "extra.localhost" in f["message"]
    compose.write_text(original)
    assert findings(ready) == (0, [])


def test_secret_files_tracked_by_git_are_refused(ready):
    if not shutil.which("git"):
        pytest.fail("git is required")
    import subprocess

    subprocess.run(["git", "init", "-q", str(ready)], check=True)
    subprocess.run(["git", "-C", str(ready), "add", "-f", "secrets/web_password"], check=True)
    f = only(ready, "secret.tracked")
    assert f["file"] == "secrets/web_password"
    result = run_invoke(ready, "secrets")
    assert result.returncode != 0 and "git rm --cached secrets/web_password" in result.stderr
    assert "Traceback" not in result.stderr
