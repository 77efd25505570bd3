"""A cache of Compose's own rendering, used only when its key holds every input Compose reads.

``docker compose config`` costs a few hundred milliseconds of CPU, and every task needs its
output; ``invoke health`` and ``invoke up`` would spend a third of their time re-rendering
an unchanged stack. The cache stores Compose's output verbatim (Compose stays the only
source of truth) under a key made of:

* the bytes of every file Compose reads for the project (:mod:`readiness.stack.sources`): the
  root file and the extra files, every ``include:`` (recursively) with its ``env_file`` or
  the included project's own ``.env``, every ``extends`` file, every service ``env_file``
  and ``label_file``; the project's ``.env`` and the files ``COMPOSE_ENV_FILES`` names
  instead; the docker CLI's ``config.json``. A missing file counts as missing, so creating
  it changes the key;
* the whole process environment, which Compose inherits: variables named in the files,
  those it reads implicitly (``environment: [NAME]`` with no value, a bare ``NAME`` line in
  an env file, ``COMPOSE_*``, ``DOCKER_*``) and ``HOME``, which ``~`` in a path stands for.
  Only the shell's own bookkeeping (:data:`VOLATILE`: ``_``, ``OLDPWD``, ``SHLVL``) is left
  out, unless one of those files names it;
* the Compose command line, the project directory, and the identity (path, size, mtime,
  ctime, inode) of the ``docker`` CLI, of a standalone ``docker-compose`` on PATH, and of
  the ``docker-compose`` plugin in every directory the CLI searches, in its order: the
  ``cliPluginsExtraDirs`` of ``config.json``, ``$DOCKER_CONFIG/cli-plugins`` (or
  ``~/.docker/cli-plugins``), then the system directories.

A project with a reference only Compose can resolve (a path with ``$`` in it, a remote
include or ``extends``, ``develop.watch`` paths, which Compose resolves through symlinks) is
not cached at all: every task renders it. ``READINESS_NO_CACHE=1`` always renders.
``tests/test_modelcache.py`` changes each of these inputs and checks that the model follows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from ..errors import ToolkitError
from ..system import fsutil
from ..system.engine import docker_config_dir
from . import sources

CACHE_DIR = ".readiness/cache"
KEY_VERSION = 2
#: Where the docker CLI looks for plugins after the extra and per-user directories (Linux).
#: Variables a shell changes by itself between two commands: bash sets ``_`` to the path of
#: every command it runs, ``cd`` sets OLDPWD, a nested shell SHLVL. Compose reads a variable
#: it is not told about only through a file that names it, so these count only when one does.
VOLATILE = ("_", "OLDPWD", "SHLVL")
SYSTEM_PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                      "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def enabled() -> bool:
    return os.environ.get("READINESS_NO_CACHE", "") in ("", "0")


@contextlib.contextmanager
def disabled():
    """Neither read nor write the cache inside the block (a task that must write nothing),
    as ``READINESS_NO_CACHE=1`` would; the setting before it is restored."""
    saved = os.environ.get("READINESS_NO_CACHE")
    os.environ["READINESS_NO_CACHE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("READINESS_NO_CACHE", None)
        else:
            os.environ["READINESS_NO_CACHE"] = saved


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _extra_plugin_dirs(config_json: bytes | None) -> list[str]:
    try:
        dirs = json.loads(config_json or b"{}").get("cliPluginsExtraDirs") or []
    except (ValueError, AttributeError):
        return []  # the CLI reports a broken config.json itself; its bytes are in the key
    return [d for d in dirs if isinstance(d, str)] if isinstance(dirs, list) else []


def _identity(path: str) -> str:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return f"{path}:absent"
    return f"{path}->{real}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _tools(argv: tuple[str, ...], project_dir: Path, extra_dirs: list[str]) -> list[str]:
    """Identity of every program that may render: the CLI, a standalone binary, each plugin candidate."""
    out = [_identity(shutil.which(argv[0]) or argv[0]), _identity(shutil.which("docker-compose") or "docker-compose")]
    plugin_dirs = [*extra_dirs, str(docker_config_dir() / "cli-plugins"), *SYSTEM_PLUGIN_DIRS]
    out += [_identity(os.path.join(project_dir, d, "docker-compose")) for d in plugin_dirs]  # relative: to the cwd
    return out


def _env_files(project_dir: Path) -> list[Path]:
    """The project's env files: ``.env``, and those ``COMPOSE_ENV_FILES`` names (relative to the cwd)."""
    named = [p.strip() for p in os.environ.get("COMPOSE_ENV_FILES", "").split(",") if p.strip()]
    return [project_dir / ".env", *(project_dir / p for p in named)]


def _environment(blobs: list[bytes]) -> list[tuple[str, str]]:
    """The process environment, without the shell's own bookkeeping unless a file names it."""
    named = {v for v in VOLATILE
             if any(re.search(rb"(?<![A-Za-z0-9_])" + re.escape(v.encode()) + rb"(?![A-Za-z0-9_])", b) for b in blobs)}
    return sorted((k, v) for k, v in os.environ.items() if k not in VOLATILE or k in named)


def key(project_dir: Path, argv: tuple[str, ...], files: list[Path]) -> str | None:
    """The cache key of a render, or None when the project has an input only Compose can resolve."""
    walked = sources.graph(files, project_dir)
    if walked.opaque:
        return None
    config_json = docker_config_dir() / "config.json"
    config_data = _read(config_json)
    inputs = [(s.path, s.data) for s in walked.sources]
    inputs += [(p.resolve(), _read(p)) for p in _env_files(project_dir)] + [(config_json, config_data)]
    h = hashlib.sha256()
    h.update(json.dumps([KEY_VERSION, list(argv), str(project_dir),
                         _tools(argv, project_dir, _extra_plugin_dirs(config_data)),
                         _environment([data for _, data in inputs if data])]).encode())
    for path, data in inputs:
        h.update(f"\0{path}\0{-1 if data is None else len(data)}\0".encode())
        h.update(data or b"")
    return h.hexdigest()


def get(project_dir: Path, cache_key: str | None) -> tuple[str, str] | None:
    """(stdout, stderr) of a render with this key, if one was kept."""
    if cache_key is None or not enabled():
        return None
    raw = _read(project_dir / CACHE_DIR / _entry_name(cache_key))
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
        return entry["stdout"], entry["stderr"]
    except (ValueError, KeyError, TypeError):
        return None


def _entry_name(cache_key: str) -> str:
    """Renders are ``render-<key>.json``: the directory also holds other caches (datastate.json)."""
    return f"render-{cache_key}.json"


def put(project_dir: Path, cache_key: str | None, stdout: str, stderr: str) -> None:
    """Keep a successful render; a cache that cannot be written is simply not used."""
    if cache_key is None or not enabled():
        return
    directory = project_dir / CACHE_DIR
    entry = json.dumps({"stdout": stdout, "stderr": stderr})
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("render-*.json"):  # one render per project: the newest
            if old.name != _entry_name(cache_key):
                old.unlink(missing_ok=True)
        fsutil.atomic_write(directory / _entry_name(cache_key), entry.encode(), 0o600)
    except (OSError, ToolkitError):
        pass
