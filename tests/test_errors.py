"""Bad input ends in one paragraph naming the file (and line) and the fix, never a traceback.

Issue #2 acceptance: a malformed .env line, invalid YAML in an included compose file, no
Docker engine reachable, Compose v1.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import run_invoke


def assert_clean_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    text = result.stderr
    assert text.startswith("error: "), text
    assert "fix:" in text, text
    for needle in needles:
        assert needle in text, (needle, text)


def test_malformed_env_line(mini):
    assert run_invoke(mini, "env").returncode == 0
    env = mini / ".env"
    lines = env.read_text().splitlines()
    lines.insert(2, "THIS LINE IS NOT AN ASSIGNMENT")
    env.write_text("\n".join(lines) + "\n")
    result = run_invoke(mini, "bootstrap")
    assert_clean_error(result, f"{env}:3", "KEY=value")


def test_invalid_yaml_in_included_file(mini):
    inc = mini / "infra" / "01-web" / "docker-compose.yml"
    lines = inc.read_text().splitlines()
    lines[3] = "   broken: [unclosed"
    inc.write_text("\n".join(lines) + "\n")
    result = run_invoke(mini, "config")
    assert_clean_error(result, "infra/01-web/docker-compose.yml:4", "invalid YAML")


def test_no_docker_engine(mini, tmp_path):
    assert run_invoke(mini, "env").returncode == 0
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = run_invoke(mini, "networks", env=env)
    assert_clean_error(result, "docker info")
    pre = run_invoke(mini, "preflight", env=env)
    assert pre.returncode != 0 and "docker.engine-unreachable" in pre.stdout
    assert "Traceback" not in pre.stderr


def fake_compose_v1(bindir: Path) -> None:
    """A stand-in for Compose v1: v1 cannot be installed on our machines (mocked by necessity)."""
    script = bindir / "docker-compose"
    script.write_text('#!/bin/sh\necho "docker-compose version 1.29.2, build 5becea4c"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_compose_v1_is_refused(mini, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_compose_v1(bindir)
    empty_config = tmp_path / "docker-config"  # no cli-plugins: `docker compose` is absent
    empty_config.mkdir()
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "DOCKER_CONFIG": str(empty_config)}
    result = run_invoke(mini, "config", env=env)
    assert_clean_error(result, "Compose v1", "1.29.2")


def test_missing_env_example(mini):
    (mini / ".env.example").unlink()
    result = run_invoke(mini, "env")
    assert_clean_error(result, ".env.example is missing", "git checkout -- .env.example")


def test_scripts_are_thin_entry_points_to_the_same_tasks(mini):
    """scripts/*.sh (the plan's VAL-PLN-003/004, TASK-004/006) run the Invoke tasks themselves."""
    import subprocess

    from conftest import REPO

    env = {**os.environ, "READINESS_PROJECT_DIR": str(mini)}

    def script(name, *args):
        return subprocess.run(["bash", str(REPO / "scripts" / name), *args], cwd=mini, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)

    validate = script("validate-docker-compose.sh")
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "lint: yamllint" in validate.stdout and "nothing blocks boot" in validate.stdout
    certs = script("generate-local-certs.sh")
    assert certs.returncode == 0 and "(nothing changed)" in certs.stdout, certs.stdout + certs.stderr
    pre = script("preflight-compose.sh", "--json")
    assert pre.returncode == 0 and pre.stdout == run_invoke(mini, "preflight", "--json").stdout
    (mini / "secrets" / "web_password").unlink()
    broken = script("preflight-compose.sh")
    assert broken.returncode != 0 and "secret.missing" in broken.stdout
