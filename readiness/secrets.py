"""File-backed Docker secrets: generate what is missing, never touch what exists.

The list of secrets is the root compose file's ``secrets:`` registry; the character policy
of each comes from its ``x-readiness`` field. Values come from the OS CSPRNG
(:mod:`secrets`). A file is created with ``link()`` of a complete temp file, so it is never
seen half-written and a concurrent run can never replace it.

File modes: Compose bind-mounts a secret file with the host file's owner and mode (it
ignores ``uid``/``gid``/``mode`` outside Swarm), so a file read by a non-root container user
must be world-readable (0444); the ``secrets/`` directory itself is 0700, which keeps other
host users out (the bind mount does not traverse it). Files read only by root-run
containers are 0400.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as _secrets
import string
from dataclasses import dataclass
from pathlib import Path

from . import fsutil, runner
from .compose import Model
from .errors import ToolkitError

SYMBOLS = "@%+=_-.:~^,"
CHARSETS = {
    "alnum": string.ascii_letters + string.digits,
    "password": string.ascii_letters + string.digits + SYMBOLS,
    "hex": "0123456789abcdef",
}
DEFAULT_LENGTH = 32
MIN_LENGTH = 16
DIR_MODE = 0o700
#: The plaintext beside an htpasswd secret is read by the user, never by a container.
SIDECAR_MODE = 0o400
#: Files git may track under a secrets directory.
ALLOWED_TRACKED = {"README.md", ".gitkeep"}


@dataclass(frozen=True)
class SecretSpec:
    name: str
    path: Path
    consumers: tuple[str, ...]
    readers: tuple[int, ...]  # uids of the consuming containers' processes
    charset: str = "alnum"
    length: int = DEFAULT_LENGTH
    template: str | None = None
    format: str | None = None
    htpasswd_user: str = "admin"
    certificate: str | None = None

    @property
    def mode(self) -> int:
        """0400 when only root reads it, else 0444 (see the module docstring)."""
        return 0o400 if all(uid == 0 for uid in self.readers) else 0o444

    @property
    def sidecar(self) -> Path | None:
        """Where the plaintext of an htpasswd secret is kept for the user."""
        return self.path.with_name(self.path.name + ".password") if self.format == "htpasswd" else None


def specs(model: Model) -> list[SecretSpec]:
    """Every file-backed secret of the model, sorted by name."""
    out = []
    for name, spec in sorted(model.secrets.items()):
        file = spec.get("file")
        if not file:
            continue
        x = model.secret_x(name)
        consumers = tuple(model.secret_consumers.get(name, ()))
        readers = tuple(sorted({(model.service_user(s) or (0, 0))[0] for s in consumers}))
        charset = str(x.get("charset", "alnum"))
        if charset not in CHARSETS:
            raise ToolkitError(
                f"secret {name}: unknown charset {charset!r} in x-readiness",
                where=f"{model.project_dir / 'docker-compose.yml'} (secrets.{name})",
                fix=f"use one of: {', '.join(sorted(CHARSETS))}",
            )
        raw_length = x.get("length", DEFAULT_LENGTH)
        try:
            length = int(raw_length)
            if isinstance(raw_length, bool) or length != raw_length and str(length) != str(raw_length).strip():
                raise ValueError(raw_length)
        except (TypeError, ValueError):
            raise ToolkitError(f"secret {name}: length {raw_length!r} is not a whole number",
                               where=f"docker-compose.yml (secrets.{name})",
                               fix=f"set x-readiness.length to a whole number, {MIN_LENGTH} or more") from None
        if length < 1 or (length < MIN_LENGTH and not x.get("template")):
            raise ToolkitError(f"secret {name}: length {length} is below the minimum {MIN_LENGTH}",
                               where=f"docker-compose.yml (secrets.{name})",
                               fix=f"set x-readiness.length to {MIN_LENGTH} or more")
        out.append(
            SecretSpec(
                name=name,
                path=Path(file),
                consumers=consumers,
                readers=readers,
                charset=charset,
                length=length,
                template=x.get("template"),
                format=x.get("format"),
                htpasswd_user=str(x.get("htpasswd-user", "admin")),
                certificate=x.get("certificate"),
            )
        )
    return out


def generate_value(charset: str, length: int) -> str:
    """A CSPRNG value; ``alnum`` starts with a letter, ``password`` has every class."""
    alphabet = CHARSETS[charset]
    while True:
        value = "".join(_secrets.choice(alphabet) for _ in range(length))
        if charset == "alnum" and not value[0].isalpha():
            continue
        if charset == "password" and not (
            any(c.islower() for c in value)
            and any(c.isupper() for c in value)
            and any(c.isdigit() for c in value)
            and any(c in SYMBOLS for c in value)
            and value[0].isalnum()
        ):
            continue
        return value


def htpasswd_line(user: str, password: str) -> str:
    """``user:{SHA}base64(sha1)`` — a format Traefik's basicAuth reads, no bcrypt needed.

    SHA-1 is weak for human passwords; this one is 32 random characters (~190 bits).
    """
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


@dataclass(frozen=True)
class Change:
    path: Path
    action: str  # "created", "replaced empty file", "mode 0644 -> 0444", "directory created"


def _ensure_mode(path: Path, mode: int, changes: list[Change]) -> None:
    current = path.stat().st_mode & 0o777
    if current != mode:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise ToolkitError(f"cannot chmod {path}: {exc.strerror}", where=str(path),
                               fix=f"sudo chmod {mode:o} {path}") from None
        changes.append(Change(path, f"mode {current:04o} -> {mode:04o}"))


def ensure_dirs(paths: list[Path], changes: list[Change]) -> None:
    for directory in sorted({p.parent for p in paths}):
        if fsutil.ensure_dir(directory, DIR_MODE):
            changes.append(Change(directory, "directory created"))
        else:
            _ensure_mode(directory, DIR_MODE, changes)


def _write_new(path: Path, content: str, mode: int, changes: list[Change]) -> str:
    """Create ``path`` unless present (or empty); return the content now on disk."""
    if path.exists() and path.stat().st_size == 0:
        fsutil.atomic_write(path, content.encode(), mode)
        changes.append(Change(path, "replaced empty file"))
        return content
    if fsutil.create_exclusive(path, content.encode(), mode):
        changes.append(Change(path, "created"))
        return content
    return path.read_text(encoding="utf-8")


def ensure(model: Model) -> list[Change]:
    """Create every missing secret file of the model; returns what changed."""
    changes: list[Change] = []
    every = specs(model)
    ensure_dirs([s.path for s in every], changes)
    for spec in (s for s in every if not s.certificate):
        if spec.path.is_dir():
            raise ToolkitError(f"secret {spec.name}: {spec.path} is a directory, not a file",
                               where=model.relpath(spec.path),
                               fix=f"remove the directory (`rmdir {spec.path}`) and run `invoke secrets`")
        if spec.format == "htpasswd":
            assert spec.sidecar is not None
            if not (spec.path.exists() and spec.path.stat().st_size > 0):
                password = _write_new(spec.sidecar, generate_value(spec.charset, spec.length), SIDECAR_MODE, changes)
                _write_new(spec.path, htpasswd_line(spec.htpasswd_user, password.strip()), spec.mode, changes)
            if spec.sidecar.exists():  # the user's copy of the plaintext: owner-only, however it was written
                _ensure_mode(spec.sidecar, SIDECAR_MODE, changes)
        else:
            value = generate_value(spec.charset, spec.length)
            content = spec.template.replace("{value}", value) if spec.template else value
            _write_new(spec.path, content, spec.mode, changes)
        _ensure_mode(spec.path, spec.mode, changes)
    return changes


def tracked_files(project_dir: Path, directories: list[Path]) -> list[str]:
    """Files git tracks under the secrets directories, other than README.md and .gitkeep."""
    if not directories or not (project_dir / ".git").exists() or not runner.which("git"):
        return []
    rels = sorted({os.path.relpath(d, project_dir) for d in directories})
    res = runner.run(["git", "-C", str(project_dir), "ls-files", "-z", "--", *rels], timeout=30)
    if not res.ok:
        return []
    return sorted(f for f in res.stdout.split("\0") if f and Path(f).name not in ALLOWED_TRACKED)


def refuse_tracked(project_dir: Path, directories: list[Path]) -> None:
    tracked = tracked_files(project_dir, directories)
    if tracked:
        raise ToolkitError(
            f"git tracks secret material: {', '.join(tracked)}",
            where=str(project_dir),
            fix=f"untrack it and rotate the value: `git rm --cached {' '.join(tracked)}`",
        )
