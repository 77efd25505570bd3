"""The files Compose reads for a project, walked the way Compose follows them.

Two parts of the toolkit need the compose files as written, not as rendered: the ``$VAR``
check (what the user wrote, and in which file) and the render cache's key (every byte
Compose reads). Both walk the same graph, here: the given files, their ``include:`` entries
(recursively), and, with ``service_refs``, each service's ``extends`` file and
``env_file``. Paths that contain ``$`` are skipped: they cannot be resolved before
interpolation (the variable they name is still visible in the including file's text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - pyyaml built without libyaml
    _Loader = yaml.SafeLoader

MAX_FILES = 500


@dataclass(frozen=True)
class Source:
    path: Path
    data: bytes | None  # None: the file is missing or unreadable
    doc: dict[str, Any] | None  # None: not a YAML mapping (or not YAML at all)


def _relative(base: Path, value: Any) -> list[Path]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        p = v.get("path") if isinstance(v, dict) else v
        if isinstance(p, str) and "$" not in p:
            out.append(base / p)
    return out


def walk(files: list[Path], *, service_refs: bool = True) -> list[Source]:
    """Every file reachable from ``files``, each once, in breadth-first order."""
    seen: dict[Path, Source] = {}
    todo = list(files)
    while todo and len(seen) < MAX_FILES:
        path = todo.pop(0).resolve()
        if path in seen:
            continue
        try:
            data: bytes | None = path.read_bytes()
        except OSError:
            data = None
        doc = None
        if data is not None:
            try:
                loaded = yaml.load(data.decode("utf-8"), Loader=_Loader)
            except (UnicodeDecodeError, yaml.YAMLError):
                loaded = None  # Compose reports it; the bytes still count
            doc = loaded if isinstance(loaded, dict) else None
        seen[path] = Source(path, data, doc)
        if doc is None:
            continue
        for item in doc.get("include") or []:
            entry = item if isinstance(item, dict) else {"path": item}
            todo += _relative(path.parent, entry.get("path"))
            todo += _relative(path.parent, entry.get("env_file"))
        if not service_refs:
            continue
        for spec in (doc.get("services") or {}).values():
            if not isinstance(spec, dict):
                continue
            extends = spec.get("extends")
            if isinstance(extends, dict):
                todo += _relative(path.parent, extends.get("file"))
            todo += _relative(path.parent, spec.get("env_file"))
    return list(seen.values())
