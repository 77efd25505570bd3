"""The files Compose reads for a project, walked the way Compose follows them.

Two parts of the toolkit need the compose files as written, not as rendered: the ``$VAR``
check (what the user wrote, and in which file) and the render cache's key (every byte
Compose reads). Both walk the same graph, here: the given files, their ``include:`` entries
(recursively, each with its ``env_file`` or, without one, the included project's own
``.env``), and, with ``service_refs``, each service's ``extends`` file, ``env_file`` and
``label_file``.

Relative paths are resolved as compose-go resolves them (``paths/resolve.go``,
``loader/include.go``, ``loader/extends.go``): against the working directory of the
project the file belongs to (the project directory for the files given; an included
project's ``project_directory`` or its first file's directory; an ``extends`` file's own
directory), with a leading ``~`` replaced by ``$HOME``.

A reference whose target cannot be known without Compose is listed in
:attr:`Graph.opaque` instead of being guessed: a path with ``$`` in it (known only after
interpolation), a remote include or ``extends`` (``oci://``, git), and ``develop.watch``
paths (Compose resolves them through symlinks on disk). The render cache does not cache a
project with any of them.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The root compose file of a project.
COMPOSE_FILE = "docker-compose.yml"
MAX_FILES = 500

try:  # libyaml's C loader is ~10x faster on the rendered model
    LOADER: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml built without libyaml
    LOADER = yaml.SafeLoader


def load_yaml(text: str) -> Any:
    """Plain data from YAML text (safe loading, libyaml's C loader when PyYAML has it): the one
    YAML loader of the toolkit, for the compose files as written and for Compose's render."""
    return yaml.load(text, Loader=LOADER)


@functools.lru_cache(maxsize=256)
def _parsed(data: bytes) -> dict[str, Any] | None:
    """A compose file's bytes as a YAML mapping (None when they are not one), parsed once per
    process for each content: the files are read again on every walk (cheap), parsed only when
    their bytes are new, so an edited file is never served stale, whatever its mtime says.
    The mapping is shared between callers: they read it and never change it."""
    try:
        loaded = load_yaml(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return None  # Compose reports it; the bytes still count
    return loaded if isinstance(loaded, dict) else None


#: What Compose's remote resource loaders accept (a URL, or git's scp-like ``user@host:path``).
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[\w.+-]+@[\w.-]+:)")


@dataclass(frozen=True)
class Source:
    path: Path
    data: bytes | None  # None: the file is missing or unreadable
    doc: dict[str, Any] | None  # None: not a compose file, or not a YAML mapping (or not YAML at all)
    kind: str = "compose"  # "compose", or "env" for a file Compose reads as dotenv (env_file, label_file, .env)


@dataclass
class Graph:
    sources: list[Source] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)  # "file: reference" Compose alone can resolve


def _paths(value: Any) -> list[str]:
    """The path strings of a field that takes a string, a list, or ``{path: ...}`` entries."""
    values = value if isinstance(value, list) else [] if value is None else [value]
    out = []
    for v in values:
        p = v.get("path") if isinstance(v, dict) else v
        if isinstance(p, str) and p:
            out.append(p)
    return out


class _Walk:
    def __init__(self, service_refs: bool) -> None:
        self.service_refs = service_refs
        self.graph = Graph()
        self.seen: set[tuple[Path, str]] = set()
        self.todo: list[tuple[Path, str, Path]] = []  # (path, kind, working directory of its project)

    def resolve(self, where: Path, base: Path, ref: str) -> Path | None:
        """``ref`` as an absolute path, or None (recorded as opaque) when only Compose can tell."""
        if "$" in ref or _REMOTE.match(ref):
            self.graph.opaque.append(f"{where}: {ref}")
            return None
        if ref.startswith("~"):  # compose-go's ExpandUser: $HOME joined with the rest
            home = os.environ.get("HOME")
            if not home:
                self.graph.opaque.append(f"{where}: {ref} (HOME is unset)")
                return None
            ref = os.path.join(home, ref[1:].lstrip("/"))
        return base / ref

    def add(self, path: Path | None, kind: str, base: Path) -> None:
        if path is not None:
            self.todo.append((path, kind, base))

    def run(self, files: list[Path], base: Path) -> Graph:
        for f in files:
            self.add(f, "compose", base)
        while self.todo and len(self.graph.sources) < MAX_FILES:
            path, kind, workdir = self.todo.pop(0)
            path = path.resolve()
            if (path, kind) in self.seen:
                continue
            self.seen.add((path, kind))
            try:
                data: bytes | None = path.read_bytes()
            except OSError:
                data = None
            doc = self._load(data) if kind == "compose" else None
            self.graph.sources.append(Source(path, data, doc, kind))
            if doc is not None:
                self._follow(path, doc, workdir)
        return self.graph

    @staticmethod
    def _load(data: bytes | None) -> dict[str, Any] | None:
        return None if data is None else _parsed(data)

    def _follow(self, path: Path, doc: dict[str, Any], workdir: Path) -> None:
        for item in doc.get("include") or []:
            entry = item if isinstance(item, dict) else {"path": item}
            included = [self.resolve(path, workdir, p) for p in _paths(entry.get("path"))]
            project = _paths(entry.get("project_directory"))
            project_dir = self.resolve(path, workdir, project[0]) if project else (
                included[0].parent if included and included[0] is not None else None)
            env_files = _paths(entry.get("env_file"))
            for ref in env_files:
                self.add(self.resolve(path, workdir, ref), "env", workdir)
            if not env_files and project_dir is not None:
                self.add(project_dir / ".env", "env", workdir)
            for p in included:
                self.add(p, "compose", project_dir or workdir)
        if not self.service_refs:
            return
        for spec in (doc.get("services") or {}).values():
            if not isinstance(spec, dict):
                continue
            extends = spec.get("extends")
            if isinstance(extends, dict) and isinstance(extends.get("file"), str):
                target = self.resolve(path, workdir, extends["file"])
                self.add(target, "compose", target.parent if target is not None else workdir)
            for field_name in ("env_file", "label_file"):
                for ref in _paths(spec.get(field_name)):
                    self.add(self.resolve(path, workdir, ref), "env", workdir)
            develop = spec.get("develop")
            if isinstance(develop, dict) and develop.get("watch"):
                self.graph.opaque.append(f"{path}: develop.watch (paths resolved through symlinks)")


def graph(files: list[Path], base: Path | None = None, *, service_refs: bool = True) -> Graph:
    """Every file reachable from ``files`` (each once, breadth-first) and what cannot be followed.

    ``base`` is the project directory, against which the given files' relative references
    resolve (default: the first file's directory).
    """
    return _Walk(service_refs).run(files, base if base is not None else files[0].parent)


def walk(files: list[Path], *, service_refs: bool = True) -> list[Source]:
    """The compose files (and, with ``service_refs``, the env and label files) reachable from ``files``."""
    return graph(files, service_refs=service_refs).sources


def raw_services(project_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Service -> (file relative to the project, its definition as written, uninterpolated).

    Compose's rendered model forgets which file a service came from and has already
    replaced ``$VAR``; findings about what the user *wrote* (an unescaped ``$VAR``, the
    variable that sets an image or a port) need both, so the root file and its ``include:``
    entries are read as text. Called by many checks of one run: each file is parsed once
    for each content it has (:func:`_parsed`).
    """
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for source in walk([project_dir / COMPOSE_FILE], service_refs=False):
        if source.doc is None:
            continue
        path = source.path
        rel = str(path.relative_to(project_dir)) if project_dir in path.parents else str(path)
        for svc, spec in (source.doc.get("services") or {}).items():
            out.setdefault(str(svc), (rel, spec if isinstance(spec, dict) else {}))
    return out


#: The variable an ``image:`` is written with: ``${SPILO_IMAGE:-ghcr.io/...}`` -> SPILO_IMAGE.
_IMAGE_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def image_variables(project_dir: Path) -> dict[str, str]:
    """Service -> the variable its ``image:`` is written with (the ``*_IMAGE`` variable of
    ``.env`` that sets it), from the files as written; a service whose image names no variable
    is left out."""
    out: dict[str, str] = {}
    for svc, (_, spec) in raw_services(project_dir).items():
        m = _IMAGE_VARIABLE.search(str(spec.get("image") or ""))
        if m:
            out[svc] = m.group(1)
    return out
