"""An engine before Docker 25 boots the stack without `start_interval`, and preflight says so.

Compose refuses ``healthcheck.start_interval`` on such an engine before creating anything.
`invoke up` degrades instead of refusing: it adds an override that drops the key with
Compose's ``!reset`` (``start.compat_files``), and preflight warns (``engine.no-start-interval``).
Proved on a real Docker 20.10 (Debian 12's ``docker.io``, unpacked by ``.ci/run`` into
``$READINESS_OLD_DOCKERD``'s tree) running as a private engine (tests/private_engine.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, in_ci, run_invoke
from helper_image import default_helper_image, ensure_helper_image
from private_engine import PrivateEngine

from readiness.run import start

WHY = "an engine before Docker 25 runs as a second, private dockerd, which needs root (CI pass 1)"
OLD_DOCKERD = os.environ.get("READINESS_OLD_DOCKERD", "/opt/docker-20.10/usr/sbin/dockerd")


@pytest.fixture(scope="module")
def old_engine(engine_answers) -> Iterator[PrivateEngine]:
    if not Path(OLD_DOCKERD).is_file():
        # Debian 13 machines have no Debian 12 package source to take Docker 20.10 from: it
        # cannot exist there. .ci/run prints a warning when it could not unpack it.
        pytest.skip(f"no Docker engine before 25 at {OLD_DOCKERD} ({'CI' if in_ci() else 'here'}): "
                    "`apt-get download docker.io/bookworm && dpkg-deb -x docker.io_*.deb /opt/docker-20.10`")
    engine = PrivateEngine(WHY, dockerd=OLD_DOCKERD)
    try:
        engine.start()
        assert engine.docker("version", "--format", "{{.Server.Version}}").stdout.decode().startswith("20.")
        engine.load(ensure_helper_image(default_helper_image(FIXTURES / "mini" / ".env.example")))
        yield engine
    finally:
        engine.close()


def test_an_engine_before_25_boots_without_start_interval(old_engine, mini):
    compose_file = mini / "infra" / "01-web" / "docker-compose.yml"
    text = compose_file.read_text()
    probe = '      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1:8080/ || exit 1"]\n'
    assert probe in text
    compose_file.write_text(text.replace(probe, probe + "      interval: 3s\n      start_interval: 1s\n"))
    image = default_helper_image(FIXTURES / "mini" / ".env.example")
    (mini / ".env").write_text(f"WEB_IMAGE={image}\nPROXY_IMAGE={image}\n")

    res = run_invoke(mini, "bootstrap", env=old_engine.env)
    assert res.returncode == 0, res.stdout + res.stderr
    pre = run_invoke(mini, "preflight", "--json", env=old_engine.env)
    doc = json.loads(pre.stdout)
    found = [f for f in doc["findings"] if f["id"] == "engine.no-start-interval"]
    assert pre.returncode == 0 and len(found) == 1 and found[0]["severity"] == "warning", pre.stdout
    assert "20.10" in found[0]["message"] and "web" in found[0]["message"]

    # Compose itself refuses the shipped file on this engine: the override is what makes it boot.
    refused = subprocess.run(["docker", "compose", "--project-directory", str(mini), "up", "-d", "--no-start"],
                             cwd=mini, capture_output=True, text=True, timeout=120,
                             env={**os.environ, **old_engine.env})
    assert refused.returncode != 0 and "start_interval" in refused.stderr, refused.stderr
    up = run_invoke(mini, "up", "--timeout", "120", env=old_engine.env, timeout=600)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert (mini / start.COMPAT_FILE).is_file()
        assert "start_interval: !reset null" in (mini / start.COMPAT_FILE).read_text()
    finally:
        run_invoke(mini, "down", env=old_engine.env)
