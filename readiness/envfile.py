"""Reading and extending ``.env`` without ever changing a value the user wrote.

The parser follows the dotenv rules Compose applies (``KEY=VALUE``, optional ``export``,
single/double quotes, ``#`` comments, CRLF, a UTF-8 BOM) closely enough to know which keys
exist and whether they are empty. The writer only ever appends keys that are missing; the
bytes already in the file are kept exactly as they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import fsutil
from .errors import ToolkitError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int
    comment: str = ""  # the comment block right above the key (for .env.example)


@dataclass
class EnvFile:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def values(self) -> dict[str, str]:
        """Key -> value; the last assignment wins, as in Compose."""
        return {e.key: e.value for e in self.entries}

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.key)
        return list(seen)


_ESCAPE = re.compile(r"\\(.)", re.S)
_UNESCAPE = {"n": "\n", "r": "\r", '"': '"', "\\": "\\"}


def _closing_double_quote(raw: str) -> int:
    """Index of the ``"`` that closes the one at 0 (a backslash escapes the next character)."""
    i = 1
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == '"':
            return i
        i += 1
    return -1


def _unquote(raw: str) -> tuple[str, str | None]:
    """Value of the right-hand side, or an error message."""
    raw = raw.strip()
    if not raw:
        return "", None
    quote = raw[0]
    if quote in "'\"":
        end = raw.find(quote, 1) if quote == "'" else _closing_double_quote(raw)
        if end < 0:
            return "", f"unterminated {quote} quote"
        inner = raw[1:end]
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            return "", f"unexpected text after the closing quote: {rest[:20]!r}"
        if quote == '"':  # one pass, so that an escaped backslash is never read as a new escape
            inner = _ESCAPE.sub(lambda m: _UNESCAPE.get(m.group(1), m.group(0)), inner)
        return inner, None
    # unquoted: an inline comment starts at " #"
    value = re.split(r"\s+#", raw, maxsplit=1)[0]
    return value.strip(), None


def parse_text(text: str, path: Path) -> EnvFile:
    """Parse dotenv text; never raises, malformed lines go to ``errors``."""
    env = EnvFile(path)
    if text.startswith("\ufeff"):
        text = text[1:]
    comment: list[str] = []
    # Lines end at "\n" only, as in Compose: str.splitlines() would also split at a form feed,
    # NEL or U+2028 inside a value or comment and report lines that do not exist.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        body = stripped[len("export ") :].lstrip() if stripped.startswith("export ") else stripped
        if "=" not in body:
            env.errors.append((number, "expected KEY=VALUE"))
            comment = []
            continue
        key, _, rhs = body.partition("=")
        key = key.strip()
        if not _KEY.match(key):
            env.errors.append((number, f"invalid variable name {key[:40]!r}"))
            comment = []
            continue
        value, err = _unquote(rhs)
        if err:
            env.errors.append((number, err))
        else:
            env.entries.append(Entry(key, value, number, " ".join(comment)))
        comment = []
    return env


def read(path: Path) -> EnvFile:
    """Parse ``path``; a missing file is an empty EnvFile, undecodable bytes an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EnvFile(path)
    except OSError as exc:
        raise ToolkitError(f"cannot read {path}: {exc.strerror}", where=str(path),
                           fix=f"make {path} readable") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolkitError(f"{path} is not UTF-8 text (byte {exc.start})", where=str(path),
                           fix=f"re-save {path} as UTF-8") from None
    return parse_text(text, path)


def raise_on_errors(env: EnvFile) -> None:
    """A malformed line stops the task with the file, the line and the fix."""
    if not env.errors:
        return
    number, message = env.errors[0]
    more = f" (and {len(env.errors) - 1} more)" if len(env.errors) > 1 else ""
    raise ToolkitError(
        f"malformed line in {env.path.name}: {message}{more}",
        where=f"{env.path}:{number}",
        fix="write the line as KEY=value (quote values with spaces), or delete it; compare with .env.example",
    )


@dataclass(frozen=True)
class EnvResult:
    created: bool
    added: list[str]


def ensure(env_path: Path, example_path: Path) -> EnvResult:
    """Create ``.env`` from the example, or append the keys it lacks; never edit a value."""
    example = read(example_path)
    if not example_path.exists():
        raise ToolkitError(f"{example_path.name} is missing", where=str(example_path),
                           fix="restore it from git: `git checkout -- .env.example`")
    raise_on_errors(example)
    if not env_path.exists():
        data = example_path.read_bytes()
        created = fsutil.create_exclusive(env_path, data, 0o600)
        if created:
            return EnvResult(True, example.keys())
    current = read(env_path)
    raise_on_errors(current)
    have = set(current.keys())
    missing = [e for e in _last_by_key(example.entries) if e.key not in have]
    if not missing:
        return EnvResult(False, [])
    original = env_path.read_bytes()
    newline = b"\r\n" if b"\r\n" in original else b"\n"
    block = [b"", b"# Added by `invoke env` from .env.example"]
    for e in missing:
        if e.comment:
            block.append(f"# {e.comment}".encode())
        block.append(f"{e.key}={_quote(e.value)}".encode())
    prefix = original if not original or original.endswith(b"\n") else original + newline
    fsutil.atomic_write(env_path, prefix + newline.join(block[1:] if not original else block) + newline,
                        env_path.stat().st_mode & 0o777)
    return EnvResult(False, [e.key for e in missing])


def _last_by_key(entries: list[Entry]) -> list[Entry]:
    out: dict[str, Entry] = {}
    for e in entries:
        out[e.key] = e
    return sorted(out.values(), key=lambda e: e.line)


def _quote(value: str) -> str:
    """``value`` as the right-hand side of a line that :func:`parse_text` reads back unchanged."""
    if value == "" or re.fullmatch(r"[A-Za-z0-9_./:@,+\-]*", value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return "'" + value + "'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped + '"'
