"""The manifest of a backup: what it holds, where it came from, and the checks a restore makes.

``manifest.json`` is written last, atomically (temporary file, fsync, rename, fsync of the
directory): a backup killed at any moment has either a complete manifest whose parts are all
on disk and synced, or none, and :func:`problems` refuses a directory without one. Its shape is
``schemas/backup-manifest.schema.json``; ``format`` changes when a reader must change.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...system import fsutil

NAME = "manifest.json"
FORMAT = 1
CHUNK = 1 << 20


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write(directory: Path, doc: dict[str, Any]) -> Path:
    """Write the manifest last and atomically; returns its path."""
    path = directory / NAME
    fsutil.atomic_write(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), 0o600)
    fsutil.fsync(directory)
    return path


def read(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """(manifest, "") or (None, why it cannot be read)."""
    path = directory / NAME
    if not directory.is_dir():
        return None, f"{directory} is not a directory"
    if not path.exists():
        return None, ("it has no manifest.json: the backup did not finish (killed, or a disk filled), "
                      "so it is incomplete")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"manifest.json cannot be read: {exc}"
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("parts"), list):
        return None, f"manifest.json is not a backup manifest of format {FORMAT}"
    for part in doc["parts"]:
        plain = isinstance(part, dict) and isinstance(part.get("name"), str) and "/" not in part["name"] \
            and part["name"] not in ("", ".", "..", NAME)
        if not (plain and isinstance(part.get("sha256"), str) and isinstance(part.get("bytes"), int)):
            return None, "manifest.json lists a part without a plain file name, size and sha256"
        why = _part_problem(part)
        if why:
            return None, f"manifest.json: part {part['name']}: {why}"
    if not isinstance(doc.get("project"), str):
        return None, "manifest.json names no Compose project"
    return doc, ""


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _part_problem(part: dict[str, Any]) -> str:
    """What a part lacks for a restore to use it (the fields of its kind), or ""."""
    kind = part.get("kind")
    if kind not in ("config", "postgres", "valkey", "copy"):
        return f"unknown kind {kind!r}"
    dirs = part.get("dirs")
    if not (isinstance(dirs, list) and all(isinstance(d, dict) and isinstance(d.get("service"), str)
                                           and isinstance(d.get("target"), str) and isinstance(d.get("path"), str)
                                           for d in dirs)) or not _strings(part.get("services", [])):
        return "its services and data directories are not lists of names"
    if kind == "config":
        paths, taken_by = part.get("paths"), part.get("taken_by")
        if not _strings(paths) or any(p.startswith(("/", "-")) or ".." in Path(p).parts for p in paths):
            return "its paths are not project-relative file names"
        if not (isinstance(taken_by, list) and len(taken_by) == 2 and all(type(i) is int and i >= 0 for i in taken_by)):
            return "taken_by is not a uid and a gid"
    elif kind == "postgres":
        if not (_strings(part.get("members")) and part["members"] and isinstance(part.get("subdir"), str)
                and ".." not in Path(part["subdir"]).parts and type(part.get("postgres_major")) is int
                and _strings(part.get("dcs", []))):
            return "it lacks its members, PGDATA's place or PostgreSQL's major"
    elif kind == "valkey":
        facts = part.get("valkey")
        if not (isinstance(facts, dict) and all(
                isinstance(facts.get(k), str) and facts[k] and "/" not in facts[k]
                for k in ("dbfilename", "appenddirname", "appendfilename"))):
            return "it lacks the RDB and append-only file names"
    elif not dirs:
        return "it names no data directory"
    return ""


@dataclass(frozen=True)
class Damage:
    part: str
    what: str


def damage(directory: Path, doc: dict[str, Any], *, hashes: bool = True) -> list[Damage]:
    """Every part that is missing, of another size, or (``hashes``) of another SHA-256."""
    out = []
    for part in doc["parts"]:
        path = directory / part["name"]
        try:
            size = path.stat().st_size
        except OSError:
            out.append(Damage(part["name"], "missing"))
            continue
        if size != part["bytes"]:
            out.append(Damage(part["name"], f"{size} bytes where the manifest says {part['bytes']}"))
        elif hashes and sha256_of(path) != part["sha256"]:
            out.append(Damage(part["name"], "its SHA-256 differs from the manifest's: the file was changed or damaged"))
    return out


def total_bytes(doc: dict[str, Any]) -> int:
    return sum(int(p.get("bytes", 0)) for p in doc.get("parts", []))
