"""`invoke bootstrap` on a fixture stack, through the real CLI, the real engine and mkcert.

Covers issue #2's acceptance items: a first run leaves every prerequisite, a second run
changes no byte and says so, a deleted secret is recreated alone, an edited .env value
survives. (REQ-BOOT-001..007, STORY-01, VAL-PLN-002/003)
"""

from __future__ import annotations

import json
import subprocess

from conftest import run_invoke, tree_digest

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
