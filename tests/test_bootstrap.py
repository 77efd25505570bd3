"""`invoke bootstrap` on a fixture stack, through the real CLI, the real engine and mkcert.

A first run leaves every prerequisite, a second run changes no byte and says so, a deleted
secret is recreated alone, an edited .env value survives. (REQ-BOOT-001..007, STORY-01, VAL-PLN-002/003)
"""

from __future__ import annotations

import json
import os
import subprocess

from conftest import run_invoke, tree_digest
from helper_image import engine_sh, ensure_helper_image

PREPARED = (".env", "secrets", "data")


def network_exists(name: str) -> bool:
    return subprocess.run(["docker", "network", "inspect", name], capture_output=True).returncode == 0


def assert_second_bootstrap_changes_nothing(project):
    """A rerun changes no byte or mode of what bootstrap prepared, and each step says so."""
    before = tree_digest(project, *PREPARED)
    second = run_invoke(project, "bootstrap")
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree_digest(project, *PREPARED) == before
    for task in ("env", "secrets", "certs", "dirs", "networks"):
        line = next(line for line in second.stdout.splitlines() if line.startswith(task + ":"))
        assert "nothing changed" in line, line


def env_value(project, key):
    for line in (project / ".env").read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    return None


def test_first_run_prepares_everything_and_second_run_changes_nothing(mini):
    first = run_invoke(mini, "bootstrap")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (mini / ".env").is_file()
    for name in ("web_password", "api_token", "hook_url", "dash_htpasswd"):
        assert (mini / "secrets" / name).stat().st_size > 0, name
    for name in ("cert.pem", "key.pem", "rootCA.pem"):
        assert (mini / "secrets" / "certs" / name).is_file(), name
    assert (mini / "data" / "web").is_dir()
    assert network_exists(env_value(mini, "MINI_NETWORK"))
    assert "nothing blocks boot" in first.stdout

    assert_second_bootstrap_changes_nothing(mini)


def test_secret_policies_and_modes(mini):
    assert run_invoke(mini, "secrets").returncode == 0
    secrets = mini / "secrets"
    assert (secrets.stat().st_mode & 0o777) == 0o700
    pw = (secrets / "web_password").read_text()
    assert len(pw) == 24 and pw.isalnum() and pw[0].isalpha()
    token = (secrets / "api_token").read_text()
    assert len(token) == 32 and any(c in "@%+=_-.:~^," for c in token)
    assert (secrets / "hook_url").read_text().startswith("https://hooks.example.invalid/")
    line = (secrets / "dash_htpasswd").read_text()
    assert line.startswith("admin:{SHA}") and (secrets / "dash_htpasswd.password").is_file()
    # web runs as uid 472 -> its secrets must be readable by others; proxy runs as root -> 0400
    assert (secrets / "web_password").stat().st_mode & 0o777 == 0o444
    assert (secrets / "dash_htpasswd").stat().st_mode & 0o777 == 0o400
    assert pw not in run_invoke(mini, "secrets").stdout


def test_deleted_secret_is_recreated_alone_and_env_edits_survive(mini):
    assert run_invoke(mini, "bootstrap").returncode == 0
    env = mini / ".env"
    env.write_text(env.read_text().replace("BIND_ADDRESS=127.0.0.1", "BIND_ADDRESS=127.0.0.2"))
    before = tree_digest(mini, *PREPARED)
    (mini / "secrets" / "api_token").unlink()
    result = run_invoke(mini, "bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    after = tree_digest(mini, *PREPARED)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"secrets/api_token"}
    assert env_value(mini, "BIND_ADDRESS") == "127.0.0.2"
    assert "secrets/api_token: created" in result.stdout


def test_env_adds_missing_keys_without_touching_values(mini):
    assert run_invoke(mini, "env").returncode == 0
    env = mini / ".env"
    lines = [ln for ln in env.read_text().splitlines() if not ln.startswith("WEB_IMAGE=")]
    lines = ["BIND_ADDRESS=127.0.0.3" if ln.startswith("BIND_ADDRESS=") else ln for ln in lines]
    env.write_text("\n".join(lines) + "\n")
    edited = env.read_text()
    result = run_invoke(mini, "env")
    assert result.returncode == 0, result.stderr
    assert "WEB_IMAGE" in result.stdout
    text = env.read_text()
    assert text.startswith(edited), "existing bytes must be kept as they were"
    assert "WEB_IMAGE=busybox:1.36.1" in text
    assert env_value(mini, "BIND_ADDRESS") == "127.0.0.3"


def test_preflight_json_is_deterministic(mini):
    assert run_invoke(mini, "bootstrap").returncode == 0
    a = run_invoke(mini, "preflight", "--json")
    b = run_invoke(mini, "preflight", "--json")
    assert a.returncode == 0, a.stdout
    assert a.stdout == b.stdout
    doc = json.loads(a.stdout)
    assert doc == {"errors": 0, "findings": [], "ok": True, "warnings": 0}


def test_repository_stack_bootstrap_is_idempotent(repo):
    """The same guarantee on this repository's own stack (14 services, 13 secrets, 9 data dirs)."""
    first = run_invoke(repo, "bootstrap")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(list((repo / "secrets").glob("*_password"))) >= 8
    for name in ("cert.pem", "key.pem", "rootCA.pem"):
        assert (repo / "secrets" / "certs" / name).is_file(), name
    assert_second_bootstrap_changes_nothing(repo)


def test_data_root_outside_the_checkout_is_created_owned_checked_and_reset(mini, tmp_path):
    """DATA_ROOT on another disk -- here a directory outside the copy -- is the stack's data as
    data/ is: created with its container owner (through the engine: this runs as non-root and on
    a rootless engine too), checked by preflight (owner, free space), re-owned by --repair and
    deleted by reset. A writable bind of a host path written literally is the host's: never
    created, checked or deleted. The owners are read through a helper container, as the
    engine's containers see them, not with a host stat."""
    outside = tmp_path / "elsewhere" / "data"
    assert mini not in outside.parents
    host = tmp_path / "host-path"
    host.mkdir()
    (host / "keep").write_text("the host's\n")
    web = mini / "infra" / "01-web" / "docker-compose.yml"
    text = web.read_text()
    mount = "      - ${DATA_ROOT:-../../data}/web:/www\n"
    assert text.count(mount) == 1
    web.write_text(text.replace(mount, f"{mount}      - {host}:/host\n"))
    assert run_invoke(mini, "env").returncode == 0
    env = mini / ".env"
    image = ensure_helper_image()
    env.write_text(env.read_text().replace("DATA_ROOT=../../data", f"DATA_ROOT={outside}")
                   + f"WEB_IMAGE={image}\nPROXY_IMAGE={image}\n")

    first = run_invoke(mini, "dirs")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{outside}/web: created (owner 472:0, mode 0750)" in first.stdout, first.stdout
    assert not (mini / "data").exists()
    assert engine_sh(outside / "web", "stat -c %u:%g:%a /d").strip() == "472:0:750"
    again = run_invoke(mini, "dirs")
    assert "all 1 data directories present (nothing changed)" in again.stdout, again.stdout

    # And the stack boots on it: the web container writes its page there and serves it.
    try:
        up = run_invoke(mini, "up", "--timeout", "120", timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        page = engine_sh(outside / "web", "cat /d/index.html").strip()
        assert page and page in subprocess.run(["docker", "compose", "--project-directory", str(mini), "exec", "-T",
                                                "web", "wget", "-qO-", "http://127.0.0.1:8080/"],
                                               capture_output=True, text=True, timeout=60).stdout
        # `status` measures it there (root on the host, any other user through a helper
        # container: the directory is 472's, mode 0750), with its filesystem's free space.
        engine_sh(outside / "web", "head -c 300000 /dev/urandom > /d/blob && chown 472:0 /d/blob && chmod 600 /d/blob")
        status = run_invoke(mini, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        [data] = json.loads(status.stdout)["data"]
        assert data["service"] == "web" and data["path"] == f"{outside}/web" and data["error"] == "", data
        assert 300_000 <= data["bytes"] < 2_000_000 and data["free_bytes"] > 0, data
        assert "FREE ON ITS FILESYSTEM" in run_invoke(mini, "status").stdout
    finally:
        down = run_invoke(mini, "down", timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr

    engine_sh(outside / "web", "chown 12345:12345 /d")
    pre = run_invoke(mini, "preflight", "--json")
    found = [f for f in json.loads(pre.stdout)["findings"] if f["id"].startswith("dir.")]
    assert pre.returncode == 1 and [(f["id"], f["file"], f["service"]) for f in found] == \
        [("dir.not-writable", str(outside / "web"), "web")], pre.stdout
    repaired = run_invoke(mini, "dirs", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert engine_sh(outside / "web", "stat -c %u:%g /d").strip() == "472:0"

    compose = mini / "docker-compose.yml"
    original = compose.read_text()
    anchor = "  helper-image: ${HELPER_IMAGE:-busybox:1.37.0}\n"
    compose.write_text(original.replace(anchor, anchor + "  free-space:\n    data: 100000T\n"))
    disk = [f for f in json.loads(run_invoke(mini, "preflight", "--json").stdout)["findings"] if f["id"] == "disk.data"]
    assert [f["file"] for f in disk] == [str(outside / "web")], disk
    compose.write_text(original)

    engine_sh(outside / "web", "echo hello > /d/index.html && chown 472:0 /d/index.html")
    # No backup holds that data: reset refuses, even with --yes, and deletes nothing.
    refused = run_invoke(mini, "reset", "--yes")
    assert refused.returncode == 2 and "no backup" in refused.stderr and "--no-backup" in refused.stderr, \
        refused.stdout + refused.stderr
    assert engine_sh(outside / "web", "cat /d/index.html").strip() == "hello"
    reset = run_invoke(mini, "reset", "--yes", "--no-backup")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert f"removed {outside}/web" in reset.stdout
    assert not (outside / "web").exists() and outside.is_dir()
    assert (host / "keep").read_text() == "the host's\n" and sorted(p.name for p in host.iterdir()) == ["keep"]


def test_a_data_root_on_a_system_or_home_path_is_refused(mini):
    """A DATA_ROOT that would make the toolkit chown or empty a system tree, the home or the
    project directory is bad input: dirs and preflight name the variable and the fix, and
    nothing is created there."""
    assert run_invoke(mini, "env").returncode == 0
    env = mini / ".env"
    env.write_text(env.read_text().replace("DATA_ROOT=../../data", "DATA_ROOT=/etc"))
    res = run_invoke(mini, "dirs")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "DATA_ROOT puts data directories at /etc/web (web)" in res.stderr and "fix:" in res.stderr, res.stderr
    assert not os.path.exists("/etc/web")
    pre = json.loads(run_invoke(mini, "preflight", "--json").stdout)
    found = [f for f in pre["findings"] if f["id"] == "dir.protected"]
    assert [(f["service"], f["file"]) for f in found] == [("web", ".env (DATA_ROOT)")], pre
