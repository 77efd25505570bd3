"""Bad input ends in one paragraph naming the file (and line) and the fix, never a traceback.

A malformed .env line, invalid YAML in an included compose file, no Docker engine reachable,
Compose v1.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, clean_env, invoke_env, run_invoke


def assert_clean_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    text = result.stderr
    assert text.startswith("error: "), text
    assert "fix:" in text, text
    for needle in needles:
        assert needle in text, (needle, text)


def test_malformed_env_line(mini_files):
    assert run_invoke(mini_files, "env").returncode == 0
    env = mini_files / ".env"
    lines = env.read_text().splitlines()
    lines.insert(2, "THIS LINE IS NOT AN ASSIGNMENT")
    env.write_text("\n".join(lines) + "\n")
    result = run_invoke(mini_files, "bootstrap")
    assert_clean_error(result, f"{env}:3", "KEY=value")


def test_invalid_yaml_in_included_file(mini_files):
    inc = mini_files / "infra" / "01-web" / "docker-compose.yml"
    lines = inc.read_text().splitlines()
    lines[3] = "   broken: [unclosed"
    inc.write_text("\n".join(lines) + "\n")
    result = run_invoke(mini_files, "config")
    assert_clean_error(result, "infra/01-web/docker-compose.yml:4", "invalid YAML")


def test_no_docker_engine(mini_files, tmp_path):
    assert run_invoke(mini_files, "env").returncode == 0
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = run_invoke(mini_files, "networks", env=env)
    assert_clean_error(result, "docker info")
    pre = run_invoke(mini_files, "preflight", env=env)
    assert pre.returncode != 0 and "docker.engine-unreachable" in pre.stdout
    assert "Traceback" not in pre.stderr


def fake_compose_v1(bindir: Path) -> None:
    """A stand-in for Compose v1: v1 cannot be installed on our machines (mocked by necessity)."""
    script = bindir / "docker-compose"
    script.write_text('#!/bin/sh\necho "docker-compose version 1.29.2, build 5becea4c"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def hide_compose_plugin(config_dir: Path) -> None:
    """Make ``docker compose`` unknown to a Docker CLI that uses ``config_dir`` as ``DOCKER_CONFIG``,
    wherever Compose v2 is installed, without touching the machine.

    The CLI looks for ``docker-compose`` in ``cliPluginsExtraDirs`` (config.json), then in
    ``$DOCKER_CONFIG/cli-plugins``, then in the system directories Docker's packages use
    (/usr/local/lib, /usr/local/libexec, /usr/lib, /usr/libexec ``/docker/cli-plugins``), and
    runs the first candidate it finds; when that candidate is not a valid plugin it reports
    the command as unknown instead of trying the next directory (docker/cli,
    ``cli-plugins/manager/manager.go``: ``PluginRunCommand``). A ``docker-compose`` in
    ``$DOCKER_CONFIG/cli-plugins`` that cannot be executed therefore shadows a system-wide
    plugin; the empty config dir has no ``cliPluginsExtraDirs``.
    """
    plugins = config_dir / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").write_text("not a plugin: hides the system-wide Compose v2 from this test\n")
    (plugins / "docker-compose").chmod(0o644)


def test_compose_v1_is_refused(mini_files, tmp_path):
    """Compose v1 as the only Compose: refused by name and version, whatever Compose v2 the
    machine has (``~/.docker/cli-plugins``, or system-wide as Docker's packages install it)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_compose_v1(bindir)
    config = tmp_path / "docker-config"
    hide_compose_plugin(config)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "DOCKER_CONFIG": str(config)}
    probe = subprocess.run(["docker", "compose", "version"], env=clean_env(env), capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert probe.returncode != 0, f"the Docker CLI still runs a Compose plugin: {probe.stdout.strip()}"
    result = run_invoke(mini_files, "config", env=env)
    assert_clean_error(result, "Compose v1", "1.29.2")


def test_missing_env_example(mini_files):
    (mini_files / ".env.example").unlink()
    result = run_invoke(mini_files, "env")
    assert_clean_error(result, ".env.example is missing", "git checkout -- .env.example")


def test_scripts_are_thin_entry_points_to_the_same_tasks(mini):
    """scripts/*.sh (the plan's VAL-PLN-003/004, TASK-004/006) run the Invoke tasks themselves,
    with the ``invoke`` installed beside the interpreter that runs the tests (its virtualenv,
    activated for the scripts; first on PATH otherwise), not whatever ``invoke`` the shell finds."""
    bindir = Path(sys.executable).parent
    if not (bindir / "invoke").is_file():
        pytest.fail(f"no `invoke` beside {sys.executable}: install the toolkit in this environment "
                    "(pip install -e '.[test]')")
    extra = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    if sys.prefix != sys.base_prefix:  # a virtualenv: the scripts use the active one first
        extra["VIRTUAL_ENV"] = sys.prefix
    env = invoke_env(mini, extra)
    if "VIRTUAL_ENV" not in extra:
        env.pop("VIRTUAL_ENV", None)

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
