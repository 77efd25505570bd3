"""Shared fixtures: throwaway copies of stacks and a way to run the real CLI.

Tests run ``invoke`` in a subprocess against a copy of a stack (``READINESS_PROJECT_DIR``),
with the real Docker engine and the real Compose v2 binary: nothing Docker-related is
mocked. Networks a test creates are removed afterwards.

Two rules hold for the whole suite:

* a missing tool (mkcert, dockerd, busybox, ...) fails the test in CI (``CI`` is 1/true/yes)
  and skips it, with the reason, everywhere else (:func:`require_tool`; ``noxfile.py`` has
  the same rule for its sessions);
* the suite leaves the machine as it found it: the main engine still runs a container on
  its default network afterwards (:func:`main_engine_baseline`), and in CI the git tree is
  as clean after the run as before it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
from e2e.stack import clean_env  # one implementation of the scrubbed environment
from helper_image import BUSYBOX, empty_through_engine, ensure_helper_image

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def in_ci() -> bool:
    """The same rule as ``noxfile.CI``: ``CI`` set to 1, true or yes (any case)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Something the test needs is missing: a failure in CI, a skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (required in CI: .ci/run provides it)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, why: str) -> str:
    """The path of the external tool ``name`` (a command on PATH or an absolute path), or
    :func:`unavailable`."""
    path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
    if not path:
        unavailable(f"{name} is not installed: {why}")
    return str(path)


def require_root(why: str) -> None:
    """Root is not a tool that can be missing: CI runs the suite as root (pass 1) *and* as a
    non-root user (pass 2), so a root-only test skips in the second pass, with the reason."""
    if os.geteuid() != 0:
        pytest.skip(f"not root: {why}")


def docker_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def engine_answers() -> None:
    """Fail (not skip) when the engine is missing: CI must provide it. Asked once per session."""
    if not docker_available():
        pytest.fail("a running Docker engine is required (see .ci/run for how CI starts one)")


@pytest.fixture
def docker(request: pytest.FixtureRequest, engine_answers) -> None:
    """A test that needs the engine asks for this fixture (or for ``mini``, ``repo``, which do).

    Such a test carries the ``docker`` marker (:func:`pytest_collection_modifyitems` adds it),
    so that ``-m "not docker"`` leaves it out. A test that reaches this fixture only at run
    time (``request.getfixturevalue``) could escape the marker: it fails here instead, naming
    the marker it lacks.
    """
    if request.node.get_closest_marker("docker") is None:
        pytest.fail(f"{request.node.nodeid} uses the Docker engine but has no `docker` marker: ask for the "
                    "`docker`, `mini` or `repo` fixture in its signature, or mark it", pytrace=False)


@pytest.fixture(scope="session")
def compose_cli() -> None:
    """The Compose v2 CLI, for a test whose oracle is Compose's own reading (``config``), which
    needs no engine: such a test stays in the engine-free run. Missing: :func:`unavailable`."""
    try:
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        unavailable("the Docker Compose v2 CLI (`docker compose`) is not installed")


#: Fixtures that need the engine: a test that uses one, directly or through another fixture, is a
#: ``docker`` test.
ENGINE_FIXTURES = frozenset({"docker", "engine_answers"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs an engine ``docker``: those that use an engine fixture, and
    every end-to-end test. ``-m "not docker"`` is then the engine-free inner loop."""
    for item in items:
        if item.get_closest_marker("docker") is not None:
            continue
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.docker)


def invoke_env(project: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a toolkit run on ``project``: the caller's, without any variable of
    the stack (every key of the repository's and the project's ``.env.example``, ``COMPOSE_*``,
    ``READINESS_*``), plus ``READINESS_PROJECT_DIR`` and what the test passes in ``env``.

    Compose gives the environment precedence over ``.env``: an exported ``LOCAL_DOMAIN`` or
    ``COMPOSE_FILE`` in the shell that runs pytest would otherwise change every result.
    """
    return clean_env({"READINESS_PROJECT_DIR": str(project), **(env or {})},
                     examples=(project / ".env.example",))


def run_invoke(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd or project, env=invoke_env(project, env), capture_output=True, text=True, timeout=timeout,
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
def mini_files(tmp_path: Path) -> Path:
    """A fresh copy of the mini stack with its own project name, network name and free port,
    for a test that renders or reads it and never asks the engine (Compose's ``config`` needs
    no engine)."""
    dest = tmp_path / "mini"
    shutil.copytree(FIXTURES / "mini", dest)
    suffix = uuid.uuid4().hex[:8]
    own_project_name(dest, "readiness-mini", suffix)
    example = dest / ".env.example"
    text = example.read_text().replace("MINI_NETWORK=readiness-mini-edge", f"MINI_NETWORK=readiness-test-{suffix}")
    text = text.replace("WEB_PORT=18080", f"WEB_PORT={free_port()}")
    example.write_text(text)
    return dest


@pytest.fixture
def mini(mini_files: Path, docker) -> Path:
    """The mini stack's copy for a test that uses the engine: its network and data go afterwards."""
    net = re.search(r"^MINI_NETWORK=(\S+)$", (mini_files / ".env.example").read_text(), re.M).group(1)
    yield mini_files
    subprocess.run(["docker", "network", "rm", net], capture_output=True)
    remove_data(mini_files)


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


def own_project_name(project: Path, name: str, suffix: str) -> None:
    """Give a copy its own Compose project name: containers that another copy (another test,
    another session on the same engine) started under the shared name are otherwise that
    copy's "other checkout" to preflight (project.other-directory)."""
    compose = project / "docker-compose.yml"
    text = compose.read_text()
    assert text.count(f"\nname: {name}\n") == 1, f"{compose} has no top-level `name: {name}`"
    compose.write_text(text.replace(f"\nname: {name}\n", f"\nname: {name}-{suffix}\n"))


def isolated_repo_copy(dest: Path) -> tuple[Path, list[str]]:
    """A fresh copy with its own project name, network names and free host ports; returns (copy, networks)."""
    copy_repo(dest)
    suffix = uuid.uuid4().hex[:8]
    own_project_name(dest, "infra-core", suffix)
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
def repo_files(tmp_path: Path) -> Path:
    """A fresh copy of this repository's stack, with its own project name, network names and
    ports, for a test that renders or reads it and never asks the engine."""
    return isolated_repo_copy(tmp_path / "repo")[0]


@pytest.fixture
def repo(tmp_path: Path, docker) -> Path:
    """A fresh copy of this repository's stack, with its own network names and ports, for a
    test that uses the engine: its networks and data go afterwards."""
    dest, nets = isolated_repo_copy(tmp_path / "repo")
    yield dest
    subprocess.run(["docker", "network", "rm", *nets], capture_output=True)
    remove_data(dest)


def remove_data(project: Path) -> None:
    """Empty ``project/data`` through the engine, as a user who is not root needs to.

    The toolkit gives data directories to their services' uids as the engine maps them; the
    user running the tests then cannot delete them, and pytest's cleanup of old temp dirs
    warns about every one. As root the host can delete them itself."""
    data = project / "data"
    if os.geteuid() == 0 or not data.is_dir() or not any(data.iterdir()):
        return
    empty_through_engine(data)


# ------------------------------------------------------------------------------ the machine, before and after

DOCKER0 = Path("/sys/class/net/docker0")


def probe_image() -> str:
    """A tiny local image: the toolkit's helper image (busybox), built from the host's static
    busybox when the engine lacks it (nothing can be pulled here)."""
    require_tool(str(BUSYBOX), "the probe of the main engine runs the helper image, built from the static "
                 "busybox when missing (apt-get install busybox-static)")
    return ensure_helper_image(env=clean_env())


def default_network_problem(image: str) -> str | None:
    """Why the main engine cannot run a container on its default bridge network (None: it can)."""
    try:
        res = subprocess.run(["docker", "run", "--rm", "--network", "bridge", image, "/bin/busybox", "true"],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "`docker run --rm --network bridge` did not end within 120 s"
    if res.returncode != 0:
        return f"`docker run --rm --network bridge` exited {res.returncode}: {res.stderr.strip()[-500:]}"
    return None


class EngineBaseline:
    """The main engine's default network at session start, to compare with later."""

    def __init__(self) -> None:
        self.image = probe_image()
        self.docker0 = DOCKER0.exists()
        self.problem = default_network_problem(self.image)

    def damage(self) -> list[str]:
        """What the session broke (empty when nothing, or when it was already broken)."""
        if self.problem:
            return []
        out = []
        if self.docker0 and not DOCKER0.exists():
            out.append("the host's docker0 bridge is gone")
        problem = default_network_problem(self.image)
        if problem:
            out.append(f"the main engine can no longer run a container on its default network: {problem}")
        return out


@pytest.fixture(scope="session")
def main_engine_baseline(engine_answers) -> EngineBaseline:
    """The main engine's state before the tests that might harm it; checked again when the session
    ends (an error at the teardown of the last test if the suite broke it, e.g. deleted docker0)."""
    baseline = EngineBaseline()
    yield baseline
    damage = baseline.damage()
    if damage:
        pytest.fail("the test session damaged the machine: " + "; ".join(damage)
                    + " (restart the Docker engine to recover)", pytrace=False)


def git_status() -> list[str] | None:
    try:
        res = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.splitlines() if res.returncode == 0 else None


@pytest.fixture(scope="session", autouse=True)
def _git_tree_unchanged():
    """A test run leaves the git tree as it found it (artifacts go to ignored paths such as build/).

    In CI the tree is not edited during the run, so a new entry is a failure. Elsewhere a
    contributor may be editing while the suite runs: a warning names the entries instead.
    """
    before = git_status()
    yield
    after = git_status()
    if before is None or after is None:
        return
    new = sorted(set(after) - set(before))
    if not new:
        return
    message = "the test run changed the git tree: " + ", ".join(new[:10])
    if in_ci():
        pytest.fail(message, pytrace=False)
    warnings.warn(message, stacklevel=1)
