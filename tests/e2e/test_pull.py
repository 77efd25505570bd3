"""End-to-end: a first boot that pulls its images from a real registry.

Its own fresh clone, in registry mode (``registry.publish``): every ``*_IMAGE`` in ``.env``
names an image in a real ``docker-registry`` on 127.0.0.1, behind a relay the tests can slow
down or cut, and the engine starts without those images. In order:

1. registry down: ``invoke up`` fails naming every image, and no container exists;
2. one image that does not exist (``TRAEFIK_IMAGE=127.0.0.1:5999/absent/traefik:v0``):
   ``invoke up`` fails naming it, and no container exists;
3. a slow registry: ``invoke up`` waits for the pull (it has no time limit of its own),
   prints progress at least every 5 s while pulling and while waiting for health, and the
   stack comes up healthy.

A rootless engine pulls from its own network namespace, where 127.0.0.1 is not this
machine's: these scenarios run on the rootful engine (CI passes 1 and 2).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jsonschemas import validator

from readiness.system import engine as enginelib

from .registry import Registry, ThrottledProxy, forget, project_containers, publish
from .stack import Stack, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

ABSENT = "127.0.0.1:5999/absent/traefik:v0"
#: Bytes/s through the relay in the slow scenario: the session's unique layers (2 MiB per image)
#: then take well over 5 s, so the progress cadence is really exercised.
SLOW_RATE = 1_000_000


def out(res) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


@pytest.fixture(scope="module")
def pulled(engine_answers, tmp_path_factory) -> Iterator[tuple[Stack, ThrottledProxy, dict[str, str]]]:
    """A clone in registry mode: (stack, relay, variable -> image reference)."""
    if enginelib.info(fresh=True).kind == "rootless":
        pytest.skip("a rootless engine cannot reach a registry on the host's 127.0.0.1 (runs on the rootful engine)")
    from .conftest import _require_tools

    _require_tools()
    work = tmp_path_factory.mktemp("e2e-pull")
    stack = Stack.create(work, build=False)
    registry = Registry(work / "registry")
    proxy = ThrottledProxy(registry.port)
    try:
        stack.prepare_override()
        refs = publish(stack, f"127.0.0.1:{proxy.port}")
        yield stack, proxy, refs
    finally:
        stack.teardown()
        proxy.down()
        registry.stop()


def timed_lines(argv: list[str], stack: Stack, timeout: float) -> tuple[int, list[tuple[float, str]]]:
    """Run ``argv`` and keep every line of its output with the moment it arrived."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=stack.root, env=clean_env(stack.invoke_env()), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append((time.monotonic() - start, line.rstrip("\n")))
        if time.monotonic() - start > timeout:
            proc.kill()
            break
    return proc.wait(), lines


def test_registry_down_names_every_image_and_starts_nothing(pulled):
    stack, proxy, refs = pulled
    proxy.down()
    try:
        res = stack.invoke("up", "--timeout", "60", timeout=300)
    finally:
        proxy.up()
    assert res.returncode == 1, out(res)
    assert "Traceback" not in res.stdout + res.stderr
    assert f"{len(refs)} image(s) cannot be pulled, so nothing was started" in res.stderr, out(res)
    for var, ref in refs.items():
        line = next((ln for ln in res.stderr.splitlines() if ref in ln), "")
        assert f"registry 127.0.0.1:{proxy.port}" in line and f"set by {var}" in line, (var, out(res))
        assert "connection refused" in line, line
    assert project_containers(stack.project) == []


def test_an_absent_image_is_named_and_nothing_starts(pulled):
    stack, _, refs = pulled
    env = stack.root / ".env"
    saved = env.read_text()
    env.write_text(saved + f"TRAEFIK_IMAGE={ABSENT}\n")
    try:
        res = stack.invoke("up", "--timeout", "60", timeout=600)
    finally:
        env.write_text(saved)
    assert res.returncode == 1, out(res)
    assert "1 image(s) cannot be pulled, so nothing was started" in res.stderr, out(res)
    named = [ln for ln in res.stderr.splitlines() if ABSENT in ln]
    assert len(named) == 1 and "set by TRAEFIK_IMAGE" in named[0] and "registry 127.0.0.1:5999" in named[0], out(res)
    assert "TRAEFIK_IMAGE" in res.stderr.split("where:")[1], out(res)
    assert project_containers(stack.project) == []
    # The other images were pulled (with progress); forget them, for a cold start below.
    assert re.search(r"^pull: .+: done \(", res.stdout, re.M), out(res)
    forget([ref for var, ref in refs.items() if var != "TRAEFIK_IMAGE"])


def test_slow_registry_cold_boot_waits_for_the_pull_and_reports_progress(pulled):
    stack, proxy, refs = pulled
    proxy.rate = SLOW_RATE
    before = proxy.bytes
    try:
        code, lines = timed_lines([sys.executable, "-m", "invoke", "up", "--timeout", "240"], stack, timeout=900)
    finally:
        proxy.rate = None
    text = "\n".join(f"{t:7.1f} {line}" for t, line in lines)
    print(text)  # shown by pytest when an assertion below fails
    assert code == 0, text
    stack.booted = True
    pulled_bytes = proxy.bytes - before
    assert pulled_bytes >= len(refs) * 2 * 1024 * 1024, (pulled_bytes, text)  # every unique layer came through
    # Each image was pulled and said so; the pull took longer than a heartbeat, and was not
    # cut short by the --timeout of the health wait.
    for ref in refs.values():
        assert any(line.startswith(f"pull: {ref}: done") for _, line in lines), (ref, text)
    first_pull = next(t for t, line in lines if line.startswith("pull: "))
    last_pull = max(t for t, line in lines if line.startswith("pull: "))
    assert last_pull - first_pull > 5, text
    # Progress at least every 5 s, from the first pull line to the end of the health wait.
    start = next(t for t, line in lines if line.startswith("up: pulling"))
    end = next(t for t, line in lines if "services are up and healthy" in line)
    stamps = [t for t, _ in lines if start <= t <= end]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert gaps and max(gaps) <= 5.0, (max(gaps), text)
    assert any(line.startswith("up: ") and ": healthy" in line for _, line in lines), text
    assert "Where the stack lives" in "\n".join(line for _, line in lines), text
    health = stack.invoke("health", "--json", timeout=120)
    assert health.returncode == 0, out(health)
    # The success document of a real health check validates against its schema.
    doc = json.loads(health.stdout)
    assert doc["ok"] is True and not list(validator("checks").iter_errors(doc))
    assert {c["kind"] for c in doc["checks"]} == {"container", "https", "tcp"}


def test_registry_stack_files_are_the_shipped_ones(pulled):
    """Registry mode changes only .env (the *_IMAGE values) and drops `image` from the override."""
    stack, _, refs = pulled
    import yaml

    override = yaml.safe_load(stack.override.read_text())
    assert all("image" not in spec for spec in override["services"].values())
    rendered = stack.render(with_override=True)
    images = {spec["image"] for spec in rendered["services"].values()}
    assert images == set(refs.values())
    assert Path(stack.root / ".env").read_text().count("e2e registry mode") == 1
