"""Reading ``.env`` as Compose reads it, and extending it without changing what Compose sees.

The reader is a port of the statement scanner of Compose's own dotenv parser
(``compose-spec/compose-go``, ``dotenv/parser.go``, unchanged from v2.9.1, the version in
Compose v2.40): it accepts exactly the lines Compose accepts and finds the same keys, so a
file Compose reads is never refused here. That covers ``KEY=value``, ``export KEY=value``,
YAML-style ``KEY: value``, a bare ``KEY`` line (Compose takes its value from the
environment), keys with digits, dots, dashes, brackets or any Unicode letter, single and
double quotes whose value may span lines, ``\\'``/``\\"`` inside quotes, several assignments
on one line after a closing quote, comments, CRLF and a UTF-8 BOM.

What the reader does *not* do is interpolation: :attr:`Entry.value` is the value before
Compose substitutes ``${VAR}`` in it (escape sequences of double quotes are decoded, ``\\$``
becomes ``$$``). Whether a value is empty once interpolated, or whether it interpolates at
all, is Compose's to say (``docker compose config``); the toolkit only needs keys, line
numbers and that raw value.

:func:`ensure` never rewrites a value: for each key ``.env`` lacks, it appends the
example's lines verbatim (with the comment block above them), then reads the result back
and refuses to write unless every statement already in ``.env`` reads exactly as before. A
symlinked ``.env`` is written through to its target, and the owner and mode are kept.
"""

from __future__ import annotations

import bisect
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolkitError
from ..system import fsutil

#: Compose's ``exportRegex`` (``^export\s+``; RE2's ``\s`` is ``[\t\n\f\r ]``).
_EXPORT = re.compile(r"export[\t\n\f\r ]+")
#: Compose's ``escapeSeqRegex``: the escapes a double-quoted value decodes.
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-9]{0,3})")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"',
                   "\\": "\\"}
#: The parser's ``isSpace``: blanks that never end a line.
_BLANK = frozenset("\t\v\f\r \x85\xa0")


def _is_space(ch: str) -> bool:
    """Go's ``unicode.IsSpace`` (Python's ``isspace`` also counts U+001C..U+001F; Go does not)."""
    return ch in _BLANK or ch == "\n" or (ch > "\xff" and ch.isspace())


def _key_char(ch: str) -> bool:
    """What Compose allows in a variable name besides blanks: ``_.-[]``, letters and numbers.

    A code point this Python's Unicode database does not know (``Cn``) is let through: Go's
    tables may be newer (Unicode 15 has letters that Python 3.11's 14.0 lacks), and a name
    Compose then refuses is reported by Compose itself, while refusing a name Compose
    accepts would block every task.
    """
    return ch in "_.-[]" or unicodedata.category(ch) in _LETTERS_NUMBERS_UNKNOWN


_LETTERS_NUMBERS_UNKNOWN = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Cn"})


def valid_key(key: str) -> bool:
    """Whether Compose would accept ``key`` as written on an assignment line."""
    return " " not in key and all(ch in _BLANK or _key_char(ch) for ch in key)


@dataclass(frozen=True)
class Entry:
    key: str
    value: str  # before interpolation; "" for an inherited key
    line: int  # the line the key is on (1-based)
    comment: str = ""  # the comment block right above the key (for .env.example)
    end_line: int = 0  # the last line of the statement (a quoted value can span lines)
    inherited: bool = False  # a bare `KEY` line: Compose takes the value from the environment
    quote: str = ""  # "'", '"' or "" (unquoted)


@dataclass
class EnvFile:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    text: str = ""  # what was parsed (BOM removed; undecodable bytes as surrogate escapes)
    comment_lines: frozenset[int] = frozenset()  # lines that hold only a comment

    @property
    def values(self) -> dict[str, str]:
        """Key -> value as written (before interpolation); the last assignment wins, as in Compose.

        Inherited keys (a bare ``KEY`` line) are left out: their value is the environment's.
        """
        return {e.key: e.value for e in self.entries if not e.inherited}

    def keys(self) -> list[str]:
        """Every key the file names, inherited ones included, in order of first appearance."""
        seen: dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.key)
        return list(seen)


def _expand_escapes(value: str) -> str:
    """Compose's ``expandEscapes`` (Go's ``strconv.UnquoteChar`` on each matched escape)."""

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "\\$":
            return "$$"  # Compose hands `$$` (a literal dollar) to interpolation
        if text.startswith("\\0"):
            digits = text[2:]  # `\0ddd` is read as Go's `\ddd`: exactly three octal digits, <= 255
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) <= 255:
                return chr(int(digits, 8))
            return text
        return _SIMPLE_ESCAPES.get(text[1], text)

    return _ESCAPE.sub(one, value)


class _Scanner:
    """One pass over the text, statement by statement, as Compose's ``parser.parse`` does.

    Compose stops at the first error; this scanner records it with its line and resumes at
    the next line, so that every other key is still known (for line numbers in findings).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.entries: list[Entry] = []
        self.errors: list[tuple[int, str]] = []
        self.comment_lines: set[int] = set()

    def line_of(self, offset: int) -> int:
        return bisect.bisect_left(self.newlines, offset) + 1

    def _line_start(self, offset: int) -> bool:
        """Whether only blanks precede ``offset`` on its line."""
        i = offset - 1
        while i >= 0 and self.text[i] != "\n":
            if not _is_space(self.text[i]):
                return False
            i -= 1
        return True

    def _next_line(self, offset: int) -> int:
        end = self.text.find("\n", offset)
        return len(self.text) if end < 0 else end + 1

    def _statement_start(self, i: int) -> int:
        """``getStatementStart``: skip blanks and comments; len(text) at the end."""
        text, n = self.text, len(self.text)
        while True:
            while i < n and _is_space(text[i]):
                i += 1
            if i >= n or text[i] != "#":
                return i
            if self._line_start(i):
                self.comment_lines.add(self.line_of(i))
            end = text.find("\n", i)
            if end < 0:
                return n
            i = end

    def _error(self, offset: int, message: str) -> int:
        self.errors.append((self.line_of(offset), message))
        return self._next_line(offset)

    def run(self) -> None:
        text, n = self.text, len(self.text)
        i = 0
        while True:
            i = self._statement_start(i)
            if i >= n:
                return
            start = i
            m = _EXPORT.match(text, i)
            if m:
                i += len("export")
                while i < n and text[i] in _BLANK:
                    i += 1
            if i >= n:
                self._error(start, "`export` with no variable name after it")
                return
            key_start, j, terminator = i, i, ""
            while j < n:
                ch = text[j]
                if ch in "=:\n":
                    terminator = ch
                    break
                if ch not in _BLANK and not _key_char(ch):
                    break
                j += 1
            if j < n and not terminator:
                # Compose quotes the whole line here; a line without `=` is often a pasted
                # password, so only the character and its column are named.
                column = j - text.rfind("\n", 0, j)
                i = self._error(j, f"unexpected character {ch!r} in a variable name (column {column}; "
                                   "a line must be NAME=value)")
                continue
            if not terminator:  # the last line, with no `=`, `:` or newline: Compose names it ""
                key, after = "", key_start
            else:
                key, after = text[key_start:j], j + 1
                while key and _is_space(key[-1]):  # Go's TrimRightFunc(key, unicode.IsSpace)
                    key = key[:-1]
            if " " in key:
                i = self._error(key_start, f"variable name {key[:40]!r} contains a space")
                continue
            if terminator == "\n":  # a bare KEY line: inherited from the environment
                if key:
                    self.entries.append(Entry(key, "", self.line_of(start), end_line=self.line_of(start),
                                              inherited=True))
                i = after
                continue
            v = after
            while v < n and text[v] in _BLANK:
                v += 1
            if v < n and text[v] in "'\"":
                i = self._quoted(start, key, v)
            else:
                end = text.find("\n", v)
                end = n if end < 0 else end
                raw = text[v:end].split(" #", 1)[0]
                while raw and _is_space(raw[-1]):
                    raw = raw[:-1]
                self.entries.append(Entry(key, raw, self.line_of(start), end_line=self.line_of(start)))
                i = end + 1

    def _quoted(self, start: int, key: str, v: int) -> int:
        """``extractVarValue`` for a quoted value; returns where the next statement may start."""
        text, n = self.text, len(self.text)
        quote, chars, escaped, k = text[v], [], False, v + 1
        while k < n:
            ch = text[k]
            if ch != quote:
                if not escaped and ch == "\\":
                    escaped = True
                elif escaped:
                    escaped = False
                    chars += ["\\", ch]
                else:
                    chars.append(ch)
                k += 1
                continue
            if escaped:  # \' or \" (whichever is the quote) is the quote itself
                escaped = False
                chars.append(ch)
                k += 1
                continue
            value = "".join(chars)
            if quote == '"':
                value = _expand_escapes(value)
            self.entries.append(Entry(key, value, self.line_of(start), end_line=self.line_of(k), quote=quote))
            return k + 1
        return self._error(start, f"unterminated {quote} quote (the value runs to the end of the file)")


def parse_text(text: str, path: Path) -> EnvFile:
    """Parse dotenv text the way Compose does; never raises, malformed statements go to ``errors``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    scanner = _Scanner(text)
    scanner.run()
    env = EnvFile(path, text=text, errors=scanner.errors, comment_lines=frozenset(scanner.comment_lines))
    lines = text.split("\n")
    for e in scanner.entries:
        block = _comment_block(env, e.line)
        comment = " ".join(lines[n - 1].strip().lstrip("#").strip() for n in block)
        env.entries.append(Entry(e.key, e.value, e.line, comment, e.end_line, e.inherited, e.quote))
    return env


def _comment_block(env: EnvFile, line: int) -> range:
    """The comment-only lines directly above ``line`` (no blank line between)."""
    first = line
    while first - 1 in env.comment_lines:
        first -= 1
    return range(first, line)


def decode(data: bytes) -> str:
    """Text of a dotenv file. Compose reads bytes, so undecodable bytes survive as surrogate escapes."""
    return data.decode("utf-8", "surrogateescape")


def read(path: Path) -> EnvFile:
    """Parse ``path``; a missing file is an empty EnvFile."""
    data = _read_bytes(path)
    return EnvFile(path) if data is None else parse_text(decode(data), path)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ToolkitError(f"cannot read {path}: {exc.strerror}", where=str(path),
                           fix=f"make {path} readable") from None


def raise_on_errors(env: EnvFile) -> None:
    """A line Compose would refuse stops the task with the file, the line and the fix."""
    if not env.errors:
        return
    number, message = env.errors[0]
    more = f" (and {len(env.errors) - 1} more)" if len(env.errors) > 1 else ""
    raise ToolkitError(
        f"malformed line in {env.path.name}: {message}{more}",
        where=f"{env.path}:{number}",
        fix="write the line as KEY=value (quote a value that has spaces or `#`), or delete it; "
        "compare with .env.example",
    )


@dataclass(frozen=True)
class EnvResult:
    created: bool
    added: list[str]


@dataclass(frozen=True)
class _Group:
    """Statements of the example that share lines, and the lines to copy for them."""

    first: int  # first line to copy (the comment block above included)
    last: int
    entries: tuple[Entry, ...]

    @property
    def keys(self) -> list[str]:
        return list(dict.fromkeys(e.key for e in self.entries))


def _groups(example: EnvFile) -> list[_Group]:
    """Statements grouped by the lines they share (``A="x" B=y`` is one group of two)."""
    out: list[_Group] = []
    for e in example.entries:
        end = max(e.end_line, e.line)
        if out and e.line <= out[-1].last:
            g = out[-1]
            out[-1] = _Group(g.first, max(g.last, end), (*g.entries, e))
        else:
            out.append(_Group(_comment_block(example, e.line).start, end, (e,)))
    return out


def _target(env_path: Path) -> Path:
    """Where ``.env``'s bytes live: the file itself, or the end of its symlink chain."""
    return Path(os.path.realpath(env_path)) if env_path.is_symlink() else env_path


def ensure(env_path: Path, example_path: Path) -> EnvResult:
    """Create ``.env`` from the example, or append the example's lines for the keys it lacks.

    Never edits a value: the bytes already in ``.env`` stay as they are, and the appended
    lines are the example's own, copied verbatim (no re-quoting, so ``${HOME}/data`` means
    what it means in the example).
    """
    example_data = _read_bytes(example_path)
    if example_data is None:
        raise ToolkitError(f"{example_path.name} is missing", where=str(example_path),
                           fix="restore it from git: `git checkout -- .env.example`")
    example = parse_text(decode(example_data), example_path)
    raise_on_errors(example)
    target = _target(env_path)
    with lock(env_path):
        fsutil.sweep_temps(target)  # what a killed run left (it may hold a pasted password)
        return _ensure(env_path, target, example_data, example, example_path)


#: Every writer of ``.env`` holds this lock (relative to the project directory).
LOCK = ".readiness/locks/env.lock"


def lock(env_path: Path):
    """The lock every writer of ``.env`` takes: its temporary files can then be swept safely."""
    return fsutil.file_lock(env_path.parent / LOCK)


def _ensure(env_path: Path, target: Path, example_data: bytes, example: EnvFile, example_path: Path) -> EnvResult:
    for _ in range(5):  # another writer changed .env while we worked: start again from its new bytes
        original = _read_bytes(target)
        if original is None:
            if fsutil.create_exclusive(target, example_data, 0o600):
                return EnvResult(True, example.keys())
            continue  # created by a concurrent run meanwhile: extend that one
        current = parse_text(decode(original), env_path)
        raise_on_errors(current)
        groups = _missing_groups(current, example, example_path)
        if not groups:
            return EnvResult(False, [])
        data = _appended(original, current, example, groups, env_path)
        try:
            st = target.stat()
        except FileNotFoundError:
            continue
        if _read_bytes(target) != original:
            continue
        fsutil.atomic_write(target, data, stat.S_IMODE(st.st_mode), owner=(st.st_uid, st.st_gid))
        return EnvResult(False, [k for g in groups for k in g.keys])
    raise ToolkitError(f"{env_path} kept changing while `invoke env` appended to it", where=str(env_path),
                       fix="stop the other program writing it, then run `invoke env` again")


def _missing_groups(current: EnvFile, example: EnvFile, example_path: Path) -> list[_Group]:
    have = set(current.keys())
    out = []
    for g in _groups(example):
        missing = [k for k in g.keys if k not in have]
        if missing and len(missing) < len(g.keys):
            raise ToolkitError(
                f"{example_path.name} sets {', '.join(g.keys)} on the same line(s) and .env lacks only "
                f"{', '.join(missing)}: copying the line would also reset the others",
                where=f"{example_path}:{g.entries[0].line}",
                fix=f"add {', '.join(missing)} to .env by hand, or write one variable per line in "
                f"{example_path.name}",
            )
        if missing:
            out.append(g)
    return out


def _appended(original: bytes, current: EnvFile, example: EnvFile, groups: list[_Group], env_path: Path) -> bytes:
    """``original`` plus the example's lines for ``groups``, checked to change no statement of it."""
    newline = "\r\n" if b"\r\n" in original else "\n"
    lines = example.text.split("\n")
    block = [newline] if original else []
    block.append(f"# Added by `invoke env` from .env.example{newline}")
    for g in groups:
        block.append("\n".join(lines[g.first - 1:g.last]) + "\n")  # each line keeps its own "\r"
    head = original if not original or original.endswith(b"\n") else original + newline.encode()
    data = head + "".join(block).encode("utf-8", "surrogateescape")
    after = parse_text(decode(data), env_path)
    boundary = current.text.count("\n") + 1  # the last line that held the old bytes
    old = [(e.key, e.value, e.inherited, e.line) for e in after.entries if e.line <= boundary]
    new = [(e.key, e.value, e.inherited) for e in after.entries if e.line > boundary]
    wanted = [(e.key, e.value, e.inherited) for g in groups for e in g.entries]
    if after.errors or old != [(e.key, e.value, e.inherited, e.line) for e in current.entries]:
        last = current.entries[-1].line if current.entries else boundary
        raise ToolkitError(
            f"appending to {env_path.name} would change how Compose reads its last line",
            where=f"{env_path}:{last}",
            fix=f"end {env_path.name} with a newline after a complete KEY=value line, then run `invoke env` again",
        )
    if new != wanted:  # only the last line of a file can read differently once a newline follows it
        raise ToolkitError(
            f"the last line of {example.path.name} reads differently once a newline follows it (a bare name "
            "with no newline after it is a variable named \"\" for Compose)",
            where=f"{example.path}:{groups[-1].entries[-1].line}",
            fix=f"end {example.path.name} with a newline, then run `invoke env` again",
        )
    return data


# ------------------------------------------------------------------ what the repository shipped

#: Per key, the value ``.env.example`` had the last time ``.env`` held that same value: the
#: repository's default, kept. When the repository later moves it (a new image pin after
#: ``git pull``), ``.env`` still holding the old default is told apart from a value the user
#: chose (never recorded, since it differs from the example's). Relative to the project.
SHIPPED = ".readiness/env-shipped.json"


def load_shipped(project_dir: Path) -> dict[str, str]:
    """The record (empty when there is none, or it cannot be read: nothing is then called stale)."""
    import json

    try:
        doc = json.loads((project_dir / SHIPPED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    values = doc.get("values") if isinstance(doc, dict) else None
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def shipped_after(record: dict[str, str], env: EnvFile, example: EnvFile, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The record once ``.env`` and the example have been compared (pure): every key on which
    they agree now is the repository's default, kept; ``keep`` names keys whose value the user
    keeps on purpose (forgotten: never called stale again until they agree with the example)."""
    new = {k: v for k, v in record.items() if k not in keep}
    current, shipped = env.values, example.values
    for key, value in shipped.items():
        if key in current and current[key] == value and key not in keep:
            new[key] = value
    return dict(sorted(new.items()))


def refresh_shipped(project_dir: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Update the record from ``.env`` and ``.env.example`` under the ``.env`` lock; returns
    the keys it forgot (``keep``) that it held."""
    with lock(project_dir / ".env"):
        env_path, example_path = project_dir / ".env", project_dir / ".env.example"
        if not env_path.exists() or not example_path.exists():
            return []
        record = load_shipped(project_dir)
        new = shipped_after(record, read(env_path), read(example_path), keep)
        if new != record:
            save_shipped(project_dir, new)
        return [k for k in keep if k in record]


def set_values(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """``text`` (dotenv) with the plain ``KEY=value`` line of each key in ``values`` replaced."""
    chosen: list[str] = []

    def put(m: re.Match[str]) -> str:
        if m.group(1) not in values or m.group(2) == values[m.group(1)]:
            return m.group(0)
        chosen.append(f"{m.group(1)}={values[m.group(1)]}")
        return chosen[-1]

    return re.sub(r"(?m)^([A-Za-z_][A-Za-z0-9_]*)=([^\s'\"#]*)[ \t]*$", put, text), chosen


def save_shipped(project_dir: Path, values: dict[str, str]) -> None:
    """Write the record (atomic)."""
    import json

    path = project_dir / SHIPPED
    fsutil.ensure_dir(path.parent, 0o755)
    fsutil.atomic_write(path, (json.dumps({"version": 1, "values": dict(sorted(values.items()))}, indent=1)
                               + "\n").encode(), 0o644)


def pinned_text(project_dir: Path, values: dict[str, str], data: bytes | None = None) -> bytes:
    """``.env``'s bytes with each ``KEY=value`` of ``values`` set (pure but for reading ``.env``
    when ``data`` is not given). Each key's effective line (the last) must be a plain
    ``KEY=value`` line, and the result is parsed again: every effective value must then be the
    one wanted, or nothing is written. Bytes that are not UTF-8 stay as they were."""
    env_path = project_dir / ".env"
    data = env_path.read_bytes() if data is None else data
    text, _ = set_values(decode(data), values)
    after = parse_text(text, env_path)
    odd = sorted(k for k, v in values.items() if after.values.get(k) != v)
    if odd or after.errors:
        crlf = b"\r\n" in data
        raise ToolkitError(f"{', '.join(odd) or 'a line'} in .env is not a plain KEY=value line the upgrade can set"
                           + (" (the file has Windows line endings)" if crlf else ""),
                           where=str(env_path),
                           fix=("convert it to Unix line endings (`sed -i 's/\\r$//' .env`), then " if crlf else
                                "write each as one KEY=value line (no quotes, no comment on the line, not repeated), "
                                "then ") + "run `invoke upgrade` again")
    return text.encode("utf-8", "surrogateescape")


def write_pins(project_dir: Path, values: dict[str, str], record: dict[str, str]) -> None:
    """Set each ``KEY=value`` of ``values`` in ``.env`` (:func:`pinned_text`) and write
    ``record`` as what the repository shipped, under the ``.env`` lock, atomically: ``invoke
    upgrade`` moving the pins the user confirmed, and moving them back when a step fails."""
    env_path = project_dir / ".env"
    with lock(env_path):
        data = env_path.read_bytes()
        new = pinned_text(project_dir, values, data)
        if new != data:
            target = _target(env_path)  # a symlinked .env is written through, owner and mode kept
            st = target.stat()
            fsutil.atomic_write(target, new, stat.S_IMODE(st.st_mode), owner=(st.st_uid, st.st_gid))
        save_shipped(project_dir, record)


def is_pin(key: str) -> bool:
    """An image pin (``*_IMAGE``): the only kind of default whose move is an upgrade. Any other
    default the repository moves (``DATA_ROOT``, a scope, a network name) may name where data
    lives, and following it blindly would point a service at an empty directory: not named."""
    return key.endswith("_IMAGE")


def stale_defaults(record: dict[str, str], env: EnvFile, example: EnvFile) -> list[tuple[str, str, str]]:
    """(key, the old pin ``.env`` still holds, what the example ships now) for every image pin
    the repository moved while ``.env`` kept its old default (pure)."""
    current, shipped = env.values, example.values
    return [(k, old, shipped[k]) for k, old in sorted(record.items())
            if is_pin(k) and k in current and k in shipped and current[k] == old and shipped[k] != old]


def unrecorded_pins(record: dict[str, str], env: EnvFile, example: EnvFile) -> list[tuple[str, str, str]]:
    """Without a record (a ``.env`` older than it, or ``.readiness/`` deleted): the pins on
    which ``.env`` and the example differ, which may be stale or chosen (pure)."""
    if record:
        return []
    current, shipped = env.values, example.values
    return [(k, current[k], v) for k, v in sorted(shipped.items()) if is_pin(k) and k in current and current[k] != v]
