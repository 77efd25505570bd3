"""File-backed Docker secrets: generate what is missing, never touch what exists.

The list of secrets is the root compose file's ``secrets:`` registry; the character policy
of each comes from its ``x-readiness`` field. Values come from the OS CSPRNG
(:mod:`secrets`). A file is created with ``link()`` of a complete temp file, so it is never
seen half-written and a concurrent run can never replace it.

File modes: Compose bind-mounts a secret file with the host file's owner and mode (it
ignores ``uid``/``gid``/``mode`` outside Swarm), so what a container may read is decided by
the host owner and mode *as the engine maps the container's ids* (:func:`mode_for`): 0400
when every consuming container process is the file's owner as the engine maps it (container
root under a rootless engine is the user) or is root with CAP_DAC_OVERRIDE over a file its
user namespace maps (rootful root); 0444 otherwise -- a non-root container uid, any uid
under userns-remap, or a service that declares no user at all (it is not assumed to be
root). The ``secrets/`` directory itself is 0700, which keeps other host users out (the bind
mount does not traverse it).

Baked secrets: a secret a service writes into its data on its first start
(``x-readiness.baked-secrets``) is never generated while that data exists, even when its file
is missing or empty -- the step stops first and names the two ways out (:mod:`readiness.prepare.baked`).

Concurrency: the whole step runs under a lock, so two runs cannot write the two halves of
the htpasswd pair (plaintext and hash) from two different values, nor race on the record of
baked secrets.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as _secrets
import string
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolkitError, take_back
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import fsutil, runner
from ..system.engine import Engine
from . import baked, datastate

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
LOCK = ".readiness/locks/secrets.lock"


@dataclass(frozen=True)
class Reader:
    """A container process that reads a secret: its service, uid:gid (None: not declared), and
    whether it keeps CAP_DAC_OVERRIDE."""

    service: str
    uid: int | None
    gid: int | None
    dac_override: bool

    def can_read(self, engine: Engine, owner: tuple[int, int, int]) -> bool:
        """Whether this reader may read a file with host (uid, gid, mode) ``owner``."""
        if self.uid is None or self.gid is None:  # unknown user: only "other" bits are safe
            return not engine.ownership_matters or owner[2] & 0o004 == 0o004
        return enginelib.permits(engine, owner, self.uid, self.gid, 0o4, dac_override=self.dac_override)


def mode_for(readers: tuple[Reader, ...], engine: Engine, owner: tuple[int, int]) -> int:
    """The least mode (0400 or 0444) that lets every reader read a file the user ``owner`` writes."""
    if all(r.can_read(engine, (owner[0], owner[1], 0o400)) for r in readers):
        return 0o400
    return 0o444


@dataclass(frozen=True)
class SecretSpec:
    name: str
    path: Path
    consumers: tuple[str, ...]
    readers: tuple[Reader, ...]  # the consuming containers' processes
    charset: str = "alnum"
    length: int = DEFAULT_LENGTH
    template: str | None = None
    format: str | None = None
    htpasswd_user: str = "admin"
    certificate: str | None = None

    def mode(self, engine: Engine) -> int:
        """The mode this secret's file gets when the current user writes it (module docstring)."""
        return mode_for(self.readers, engine, (os.geteuid(), os.getegid()))

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
        readers = tuple(Reader(svc, *(model.service_user(svc) or (None, None)),
                               dac_override=model.has_cap(svc, "DAC_OVERRIDE")) for svc in consumers)
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
        template = x.get("template")
        if template is not None and (not isinstance(template, str) or "{value}" not in template):
            raise ToolkitError(f"secret {name}: template {template!r} has no {{value}} placeholder, so every "
                               "generated file would hold the same text",
                               where=f"docker-compose.yml (secrets.{name}.x-readiness.template)",
                               fix="put {value} where the random value goes, e.g. \"https://host/{value}\"")
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
            raise ToolkitError(f"cannot chmod {path}: {exc.strerror}", where=str(path), fix=take_back(path)) from None
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


def ensure(model: Model, engine: Engine) -> list[Change]:
    """Create every missing secret file of the model; returns what changed.

    A secret baked into a service's data (``x-readiness.baked-secrets``) is never generated
    while that data exists: the whole step is refused before anything is written, naming the
    secret, the data and the two ways out (:mod:`readiness.prepare.baked`). The same lock also
    covers the record of what each baked secret was when its data was still empty.
    """
    changes: list[Change] = []
    every = specs(model)
    with fsutil.file_lock(model.project_dir / LOCK):
        declared = baked.declarations(model)
        record = baked.load(model.project_dir)
        states = datastate.probe(model.project_dir, baked.needs_probe(declared, record), engine, helper_image(model))
        refuse_baked(model, baked.refusals(declared, states))
        ensure_dirs([s.path for s in every], changes)
        for spec in (s for s in every if not s.certificate):  # what killed runs left (partial secrets)
            for path in (spec.path, spec.sidecar):
                if path is not None:
                    fsutil.sweep_temps(path)
        for spec in (s for s in every if not s.certificate):
            _ensure_one(model, spec, spec.mode(engine), changes)
        baked.save(model.project_dir, record, baked.to_record(declared, states, record))
    return changes


def helper_image(model: Model) -> str | None:
    """The helper image, or None when the stack names none (then unreadable data stays unknown)."""
    try:
        return model.helper_image
    except ToolkitError:
        return None


def refuse_baked(model: Model, refused: list[baked.Refusal]) -> None:
    """Stop before writing anything when a baked secret would be generated over existing data."""
    if not refused:
        return
    if len(refused) == 1:
        r = refused[0]
        raise ToolkitError(baked.refusal_text(model, r), where=model.relpath(r.baked.path),
                           fix=baked.ways_out(model, r))
    lines = "\n".join(f"  - {baked.refusal_text(model, r)}; fix: {baked.ways_out(model, r)}" for r in refused)
    raise ToolkitError(f"{len(refused)} baked secrets would be generated over existing data:\n{lines}",
                       where=", ".join(model.relpath(r.baked.path) for r in refused),
                       fix="for each secret: restore its file, or reset the data of the services named")


def _ensure_one(model: Model, spec: SecretSpec, mode: int, changes: list[Change]) -> None:
    """Create one secret file (and its htpasswd plaintext) unless present; set its mode."""
    if spec.path.is_dir():
        raise ToolkitError(f"secret {spec.name}: {spec.path} is a directory, not a file",
                           where=model.relpath(spec.path),
                           fix=f"remove the directory (`rmdir {spec.path}`) and run `invoke secrets`")
    if spec.format == "htpasswd":
        assert spec.sidecar is not None
        if not (spec.path.exists() and spec.path.stat().st_size > 0):
            password = _write_new(spec.sidecar, generate_value(spec.charset, spec.length), SIDECAR_MODE, changes)
            _write_new(spec.path, htpasswd_line(spec.htpasswd_user, password.strip()), mode, changes)
        if spec.sidecar.exists():  # the user's copy of the plaintext: owner-only, however it was written
            _ensure_mode(spec.sidecar, SIDECAR_MODE, changes)
    else:
        value = generate_value(spec.charset, spec.length)
        content = spec.template.replace("{value}", value) if spec.template else value
        _write_new(spec.path, content, mode, changes)
    _ensure_mode(spec.path, mode, changes)


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
