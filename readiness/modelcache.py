"""A cache of Compose's own rendering, keyed by everything that rendering reads.

``docker compose config`` costs a few hundred milliseconds of CPU, and every task needs its
output; ``invoke health`` and ``invoke up`` would spend a third of their time re-rendering
an unchanged stack. The cache stores Compose's output verbatim (Compose stays the only
source of truth) under a key made of every input Compose reads:

* the bytes of the root file, every ``include:`` (recursively), every ``extends`` file,
  every service ``env_file``, every extra file (``READINESS_EXTRA_COMPOSE_FILES``) and
  ``.env``;
* the value of every environment variable those files name (``$VAR``/``${VAR...}``), and of
  every ``COMPOSE_*`` and ``DOCKER_*`` variable;
* the Compose command line, the project directory, and the identity (path, size, mtime) of
  the ``docker`` CLI and its Compose plugin.

Files that only the rendered model names (an ``env_file:`` whose path is itself
interpolated) are recorded with their hashes and checked on every hit. Any difference means a fresh render. Set
``READINESS_NO_CACHE=1`` to always render.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from . import fsutil, sources
from .errors import ToolkitError

CACHE_DIR = ".readiness/cache"
_VAR = re.compile(rb"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_PLUGIN_DIRS = ("~/.docker/cli-plugins", "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")


def enabled() -> bool:
    return os.environ.get("READINESS_NO_CACHE", "") in ("", "0")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _tool_identity(argv: tuple[str, ...]) -> list[str]:
    out = []
    candidates = [shutil.which(argv[0]) or argv[0]]
    if len(argv) > 1 and argv[1] == "compose":
        config = os.environ.get("DOCKER_CONFIG")
        dirs = ([f"{config}/cli-plugins"] if config else []) + list(_PLUGIN_DIRS)
        candidates += [os.path.join(os.path.expanduser(d), "docker-compose") for d in dirs]
    for c in candidates:
        try:
            real = os.path.realpath(c)
            st = os.stat(real)
            out.append(f"{c}->{real}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append(f"{c}:absent")
    return out


def key(project_dir: Path, argv: tuple[str, ...], files: list[Path]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([list(argv), str(project_dir), _tool_identity(argv)]).encode())
    names: set[str] = set()
    inputs = [(src.path, src.data) for src in sources.walk(files)]
    env_file = (project_dir / ".env").resolve()
    for path, data in [*inputs, (env_file, _read(env_file))]:
        h.update(f"\0{path}\0".encode())
        h.update(b"<absent>" if data is None else data)
        if data:
            names.update(m.decode() for m in _VAR.findall(data))
    env = {n: os.environ.get(n) for n in names}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("COMPOSE_", "DOCKER_"))})
    h.update(json.dumps(sorted(env.items())).encode())
    return h.hexdigest()


def _dependencies(model_doc: dict[str, Any]) -> dict[str, str | None]:
    """Files only the rendered model names (``env_file``), with their current hashes."""
    deps: dict[str, str | None] = {}
    for spec in (model_doc.get("services") or {}).values():
        for entry in (spec or {}).get("env_file") or []:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(path, str):
                data = _read(Path(path))
                deps[path] = None if data is None else _sha(data)
    return deps


def get(project_dir: Path, cache_key: str) -> tuple[str, str] | None:
    """(stdout, stderr) of a render with this key, if every recorded dependency is unchanged."""
    if not enabled():
        return None
    raw = _read(project_dir / CACHE_DIR / f"{cache_key}.json")
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
        for path, digest in entry["deps"].items():
            data = _read(Path(path))
            if (None if data is None else _sha(data)) != digest:
                return None
        return entry["stdout"], entry["stderr"]
    except (ValueError, KeyError, TypeError):
        return None


def put(project_dir: Path, cache_key: str, stdout: str, stderr: str, model_doc: dict[str, Any]) -> None:
    """Keep a successful render; a cache that cannot be written is simply not used."""
    if not enabled():
        return
    directory = project_dir / CACHE_DIR
    entry = json.dumps({"deps": _dependencies(model_doc), "stdout": stdout, "stderr": stderr})
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.json"):  # one entry per project: the newest render
            if old.name != f"{cache_key}.json":
                old.unlink(missing_ok=True)
        fsutil.atomic_write(directory / f"{cache_key}.json", entry.encode(), 0o600)
    except (OSError, ToolkitError):
        pass
