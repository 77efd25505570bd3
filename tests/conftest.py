"""Shared fixtures: throwaway copies of stacks and a way to run the real CLI.

Tests run ``invoke`` in a subprocess against a copy of a stack (``READINESS_PROJECT_DIR``),
with the real Docker engine and the real Compose v2 binary: nothing Docker-related is
mocked. Networks a test creates are removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker() -> None:
    """Fail (not skip) when the engine is missing: CI must provide it."""
    if not docker_available():
        pytest.fail("a running Docker engine is required (see .ci/run for how CI starts one)")


def run_invoke(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env["READINESS_PROJECT_DIR"] = str(project)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd or project, env=full_env, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def tree_digest(root: Path, *parts: str) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every file under the given parts of ``root``."""
    out = {}
    for part in parts:
        base = root / part
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []
        for p in paths:
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o7777)
    return out


@pytest.fixture(scope="session", autouse=True)
def _private_caroot(tmp_path_factory) -> None:
    """mkcert's CA for the whole test session lives in a temp dir, never the user's."""
    os.environ["CAROOT"] = str(tmp_path_factory.mktemp("caroot"))


@pytest.fixture
def mini(tmp_path: Path, docker) -> Path:
    """A fresh copy of the mini stack with its own network name and free port."""
    dest = tmp_path / "mini"
    shutil.copytree(FIXTURES / "mini", dest)
    net = f"readiness-test-{uuid.uuid4().hex[:8]}"
    example = dest / ".env.example"
    text = example.read_text().replace("MINI_NETWORK=readiness-mini-edge", f"MINI_NETWORK={net}")
    text = text.replace("WEB_PORT=18080", f"WEB_PORT={free_port()}")
    example.write_text(text)
    yield dest
    subprocess.run(["docker", "network", "rm", net], capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NOT_COPIED = {".git", ".nox", ".venv", "data", ".pytest_cache", ".ruff_cache", ".benchmarks", ".hypothesis",
               "__pycache__", ".env", ".readiness"}


def copy_repo(dest: Path) -> Path:
    """The working tree as a fresh clone would have it: no .env, no secrets, no data."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in _NOT_COPIED or n.endswith(".egg-info")}
        rel = Path(directory).resolve().relative_to(REPO)
        if rel.parts[:1] == ("secrets",):
            skipped |= {n for n in names if n not in ("README.md", ".gitkeep", "certs")}
        return skipped

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def isolated_repo_copy(dest: Path) -> tuple[Path, list[str]]:
    """A fresh copy with its own network names and free host ports; returns (copy, networks)."""
    copy_repo(dest)
    suffix = uuid.uuid4().hex[:8]
    edge, db = f"readiness-test-edge-{suffix}", f"readiness-test-db-{suffix}"
    example = dest / ".env.example"
    text = example.read_text()
    text = text.replace("EDGE_NETWORK=infra_edge", f"EDGE_NETWORK={edge}")
    text = text.replace("DB_NETWORK=infra_db", f"DB_NETWORK={db}")
    for var in ("HTTP_PORT", "HTTPS_PORT", "POSTGRES_PORT", "VALKEY_PORT"):  # never collide with the host's
        text = re.sub(rf"^{var}=\d+$", f"{var}={free_port()}", text, flags=re.M)
    example.write_text(text)
    return dest, [edge, db]


@pytest.fixture
def repo(tmp_path: Path, docker) -> Path:
    """A fresh copy of this repository's stack, with its own network names and ports."""
    dest, nets = isolated_repo_copy(tmp_path / "repo")
    yield dest
    subprocess.run(["docker", "network", "rm", *nets], capture_output=True)
