"""Secret values out of text before it leaves the machine (``invoke doctor``'s archive).

Two kinds of rule, both on bytes (a log need not be UTF-8; any byte passes through untouched
unless a rule matches it), each occurrence replaced by :data:`MARKER`:

1. **Known values** (:func:`known_values`): every file-backed secret the model lists (its
   ``file:``, and an htpasswd secret's plaintext beside it), every file under ``secrets/``
   (``README.md`` and ``.gitkeep`` aside), and the value of every ``.env`` key -- and every
   key of the environment, which Compose interpolates too -- whose name says it is secret
   (:func:`secret_key`). Each value is looked for as written, stripped of surrounding
   whitespace, line by line when it has several lines (a PEM key, an htpasswd line), and in
   the encodings a log may show it in (:func:`variants`): URL-encoded, JSON-escaped, Compose's
   ``$$`` escape, base64 (standard and URL-safe, and the part of it that is the same wherever
   the value sits inside a longer base64 text, e.g. ``user:password`` of HTTP Basic).
2. **Credential shapes** (:data:`SHAPES`), for secrets the toolkit does not know: the password
   of ``scheme://user:password@host``; the value of a ``password=``, ``"password": "..."``,
   ``PASSWORD: ...``, ``--password ...`` pair (any key naming a password, passphrase, secret,
   token, credential or API/access/private key; not a ``..._FILE``/``_PATH``/``_NAME`` key,
   whose value only names where the secret is, and not a ``$VARIABLE`` reference); the
   credentials of an ``Authorization:`` header, a long ``Bearer`` token, a JWT; the body of a
   PEM private-key block; AWS access key ids; GitHub and Slack tokens. The word "password"
   alone, or followed by anything but ``=``/``:`` and a value, is ordinary text and stays.

Short values, a decision: a known value under :data:`MIN_LENGTH` (4) characters is not
replaced -- "on", "1" or "ab" as a password would turn every such byte pair of every log into
the marker and the bundle into noise, while hiding almost nothing (a secret that short is
guessed faster than read). They are counted (``short``) and the archive's index says so. A
value under :data:`SUBSTRING_LENGTH` (8) characters is replaced only where it stands alone,
not inside a longer word (a password ``admin`` hides ``admin`` but not ``administrator``);
from 8 characters on, every occurrence goes, inside words too. The stack's own generated
secrets are 16 characters or more. A value the toolkit cannot read cannot be looked for: it
is named (``unreadable``), never guessed at.

Pure but for :func:`known_values`, which reads the files; nothing here prints.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

from ..stack import envfile
from ..stack.model import Model

MARKER = b"[REDACTED]"
MIN_LENGTH = 4
SUBSTRING_LENGTH = 8
#: A file under ``secrets/`` larger than this is not a secret value (and is not read whole).
MAX_FILE = 1 << 20
#: Files under a secrets directory that git tracks: documentation, not values.
NOT_VALUES = {"README.md", ".gitkeep"}
#: Values a secret-looking key may hold that are no secret: redacting them would only lose
#: information (``password_required: true``).
PLACEHOLDERS = {b"", b"null", b"none", b"nil", b"true", b"false", b"yes", b"no", b"on", b"off", b"-", b"~",
                b"''", b'""', b"<redacted>", b"redacted", b"***"}

# ------------------------------------------------------------------------- which keys are secret

#: Words that make a name secret when they are one of its parts (``SMTP_PASS``, ``db_pwd``).
SECRET_PARTS = {"password", "passwd", "pass", "pwd", "passphrase", "secret", "secrets", "token", "tokens",
                "credential", "credentials", "apikey", "secretkey", "accesskey", "privatekey", "requirepass",
                "masterauth"}
#: Words that make it secret anywhere in it (``PGPASSWORD``, ``authToken``, ``GF_SECURITY_SECRETKEY``).
SECRET_WORDS = ("password", "passwd", "passphrase", "secret", "token", "credential")
#: ``key`` after one of these is a secret key (``api_key``, ``signingKey``); a ``key`` alone is
#: one only in a variable's name (``MINIO_KEY``): in free text it is a cache key, a sort key.
KEY_QUALIFIERS = {"api", "access", "secret", "private", "signing", "encryption", "master", "client", "auth",
                  "account", "storage", "license", "ssh", "gpg"}
#: A name whose last part is one of these holds where the secret is, or a setting about it.
NOT_SECRET_LAST = {"file", "files", "path", "dir", "directory", "name", "names", "user", "username", "type",
                   "length", "encryption", "policy", "mode", "enabled", "required", "endpoint", "url", "uri",
                   "ttl", "expiry", "expires", "count", "size", "id"}


def key_parts(name: str) -> list[str]:
    """``GF_SECURITY_ADMIN_PASSWORD__FILE`` -> gf security admin password file; ``smtpAuthPassword``
    -> smtp auth password."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [p for p in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if p]


def secret_key(name: str, *, variable: bool = True) -> bool:
    """Whether a field named ``name`` holds a secret value: a variable (``.env``, the
    environment), or with ``variable=False`` a key in free text, where a bare ``key`` is not."""
    parts = key_parts(name)
    if not parts or parts[-1] in NOT_SECRET_LAST or parts in (["pwd"], ["oldpwd"]):  # the shell's working directory
        return False
    if any(p in SECRET_PARTS for p in parts):
        return True
    if any(p == "key" and (variable or (i and parts[i - 1] in KEY_QUALIFIERS)) for i, p in enumerate(parts)):
        return True
    joined = "".join(p for p in parts if not p.startswith("tokeni"))  # a tokenizer is no token
    return any(word in joined for word in SECRET_WORDS)


# ------------------------------------------------------------------------- known values


def _base64_cores(value: bytes) -> set[bytes]:
    """The base64 characters that depend on ``value`` alone, for each of the 3 places it can
    start at inside a longer base64 text (``b64(prefix + value + suffix)`` holds one of them)."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value)
        start = 4 if shift else 0  # the first group mixes in the prefix's bytes
        whole = (shift + len(value)) // 3 * 4  # groups complete without the suffix
        core = encoded[start:whole]
        if len(core) >= SUBSTRING_LENGTH:
            cores |= {core, core.replace(b"+", b"-").replace(b"/", b"_")}
    return cores


def variants(value: bytes) -> set[bytes]:
    """Every form of ``value`` :class:`Redactor` looks for (module docstring), those under
    :data:`MIN_LENGTH` left out. The value is stripped first: a secret file ends in a newline
    that a log does not repeat."""
    stripped = value.strip()
    found = {stripped}
    lines = [line.strip() for line in stripped.splitlines()]
    if len(lines) > 1:  # each line alone, but a PEM armour line is no secret
        found |= {line for line in lines if not line.startswith(b"-----")}
        if b"PRIVATE KEY" in stripped:  # a key's lines in the encodings too (a certificate's are public)
            for line in lines:
                if not line.startswith(b"-----"):
                    found |= {quote(line.decode("latin-1"), safe="").encode(), base64.b64encode(line)}
    try:
        text = stripped.decode("utf-8")
        encoded = {quote(text, safe="").encode(), quote_plus(text, safe="").encode(),
                   json.dumps(text)[1:-1].encode(), json.dumps(text, ensure_ascii=False)[1:-1].encode()}
        found |= encoded | {re.sub(rb"%[0-9A-F]{2}", lambda m: m.group(0).lower(), e) for e in encoded}
    except UnicodeDecodeError:  # not text: no text encodings of it
        pass
    found.add(stripped.replace(b"$", b"$$"))
    if len(lines) == 1:
        for b64 in (base64.b64encode(stripped), base64.urlsafe_b64encode(stripped)):
            found |= {b64, b64.rstrip(b"=")}
        found |= _base64_cores(stripped)
    return {v for v in found if len(v) >= MIN_LENGTH}


@dataclass
class Known:
    """The secret values of a project, and what could not be had (names and counts only)."""

    values: set[bytes] = field(default_factory=set)
    #: Files that hold secrets but could not be read, with why: their values are not redacted.
    unreadable: list[str] = field(default_factory=list)
    #: Values too short to redact (:data:`MIN_LENGTH`).
    short: int = 0
    #: Strings that look like secrets but are not (a secret's name, e.g. ``secret: smtp_password``).
    names: set[bytes] = field(default_factory=set)

    def add(self, value: bytes) -> None:
        if value.strip().lower() in PLACEHOLDERS:
            return
        if len(value.strip()) < MIN_LENGTH:
            self.short += 1
            return
        self.values.add(value)


def _read(path: Path, known: Known, shown: str) -> None:
    try:
        if path.stat().st_size > MAX_FILE:
            known.unreadable.append(f"{shown}: larger than {MAX_FILE} bytes, not read")
            return
        known.add(path.read_bytes())
    except FileNotFoundError:
        return
    except OSError as exc:
        known.unreadable.append(f"{shown}: {exc.strerror or exc}")


def secret_files(project: Path, model: Model | None) -> list[Path]:
    """Every file that holds a secret value: the model's file-backed secrets (an htpasswd
    secret's plaintext beside it) and every file under the secrets directories."""
    found: list[Path] = []
    roots = {project / "secrets"}
    if model is not None:
        for spec in model.secrets.values():
            file = spec.get("file") if isinstance(spec, dict) else None
            if file:
                path = Path(str(file))
                path = path if path.is_absolute() else model.project_dir / path
                found += [path, path.with_name(path.name + ".password")]
                roots.add(path.parent)
    for root in sorted(roots):
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.name not in NOT_VALUES and not p.is_dir())
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def known_values(project: Path, model: Model | None, environ: Mapping[str, str] | None = None) -> Known:
    """The secret values of ``project`` (module docstring, rule 1)."""
    environ = os.environ if environ is None else environ
    known = Known()
    for path in secret_files(project, model):
        try:
            shown = str(path.relative_to(project))
        except ValueError:
            shown = str(path)
        _read(path, known, shown)
    env = envfile.read(project / ".env")
    for entry in env.entries:
        if secret_key(entry.key):
            value = environ.get(entry.key, "") if entry.inherited else entry.value
            known.add(value.encode("utf-8", "surrogateescape"))
    for key, value in environ.items():
        if secret_key(key):
            known.add(value.encode("utf-8", "surrogateescape"))
    if model is not None:
        known.names = {name.encode() for name in model.secrets}
    return known


# ------------------------------------------------------------------------- credential shapes

#: A key that may name a secret (confirmed by :func:`secret_key`, which also lets ``..._FILE`` go).
_KEY = (rb"[\w.-]*?(?:passw|passphrase|secret|credential|token|apikey|(?:api|access|secret|private|signing|encryption|"
        rb"master|client|auth|account|storage|license|ssh|gpg)[_-]?key|(?<![a-z])(?:pass|pwd)(?![a-z]))[\w.-]*")
#: ``key=value``, ``key: value``, ``"key": "value"``, ``key='value'``.
PAIR = re.compile(rb"(?<![\w.-])(?P<kq>[\"']?)(?P<key>" + _KEY + rb")(?P=kq)[ \t]*[:=][ \t]*"
                  rb"(?P<value>\"(?:[^\"\\\r\n]|\\.)*\"|'[^'\r\n]*'|[^\s\"',;&<>(){}\[\]]+)", re.I)
#: ``--password value`` (a long option and its value, apart).
OPTION = re.compile(rb"(?<![\w-])--(?P<key>" + _KEY + rb"|requirepass|masterauth)[ \t]+(?P<value>[^\s\"'$-][^\s\"']*)",
                    re.I)
#: ``scheme://user:password@host``: the password.
USERINFO = re.compile(rb"\b[a-z][a-z0-9+.-]*://[^\s:/?#@\"'<>]*:(?P<value>[^\s/?#@\"'<>]+)@", re.I)
#: ``Authorization: Bearer abc``, ``"authorization": "Basic abc"``: everything after the scheme.
AUTHORIZATION = re.compile(rb"\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:bearer|basic|token|digest|"
                           rb"negotiate|apikey|aws4-hmac-sha256)[ \t]+(?P<value>[^\r\n\"']+)", re.I)
#: ``Authorization: <token>`` without a scheme: one word of 8 characters or more.
AUTHORIZATION_BARE = re.compile(rb"\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
                                rb"(?P<value>[A-Za-z0-9._~+/=-]{8,})(?=[\s\"',;]|$)", re.I)
#: ``Bearer <token>`` elsewhere: a long token with a digit (not "Bearer authentication").
BEARER = re.compile(rb"\bbearer[ \t]+(?P<value>(?=[A-Za-z0-9._~+/-]*[0-9])[A-Za-z0-9._~+/-]{16,}=*)", re.I)
#: A PEM private key: the lines between its armour (to the end of the text if it was cut).
PEM = re.compile(rb"-----BEGIN (?P<kind>[A-Z0-9 ]*?)PRIVATE KEY-----(?P<value>.*?)"
                 rb"(?=-----END (?P=kind)PRIVATE KEY-----|\Z)", re.S)
#: Tokens recognised by their shape alone, replaced whole.
TOKENS = re.compile(
    rb"(?<![A-Za-z0-9])(?P<value>(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}"  # AWS key ids
    rb"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    rb"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    rb"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)(?![A-Za-z0-9])")  # a JWT
#: The path of a Slack webhook is its secret.
SLACK_HOOK = re.compile(rb"hooks\.slack\.com/services/(?P<value>[A-Za-z0-9/]+)", re.I)
#: Every shape, in the order they apply (the PEM block first: its lines would look like tokens).
SHAPES = (PEM, USERINFO, AUTHORIZATION, AUTHORIZATION_BARE, BEARER, SLACK_HOOK, OPTION, PAIR, TOKENS)


def _unquoted(value: bytes) -> tuple[bytes, bytes]:
    """(quote, inside) of a quoted value; (b"", value) of a bare one."""
    if len(value) >= 2 and value[:1] in (b'"', b"'") and value[-1:] == value[:1]:
        return value[:1], value[1:-1]
    return b"", value


def not_a_secret(value: bytes, names: Iterable[bytes] = ()) -> bool:
    """A value that a secret-looking key may hold and that is no secret: a placeholder, a
    ``$VARIABLE`` or ``{{ template }}`` reference, what was redacted already, the name of a
    secret (``secret: smtp_password``), a small number."""
    bare = _unquoted(value)[1].strip()
    return (bare.lower() in PLACEHOLDERS or bare.startswith((b"$", b"{{", b"%(", MARKER[:-1])) or bare in names
            or (bare.isdigit() and len(bare) < MIN_LENGTH))


# ------------------------------------------------------------------------- the redactor


class Redactor:
    """Replaces every known value and every credential shape; :attr:`count` says how many."""

    def __init__(self, values: Iterable[bytes] = (), names: Iterable[bytes] = ()) -> None:
        forms: set[bytes] = set()
        for value in values:
            forms |= variants(value)
        forms.discard(MARKER)
        #: Longest first: a value that holds another is replaced whole.
        self.long = sorted((f for f in forms if len(f) >= SUBSTRING_LENGTH), key=lambda f: (-len(f), f))
        short = sorted((f for f in forms if len(f) < SUBSTRING_LENGTH), key=lambda f: (-len(f), f))
        self.short = re.compile(rb"(?<![A-Za-z0-9])(?:" + b"|".join(map(re.escape, short)) + rb")(?![A-Za-z0-9])") \
            if short else None
        self.names = frozenset(names)
        self.count = 0

    @classmethod
    def for_known(cls, known: Known) -> Redactor:
        return cls(known.values, known.names)

    def bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced by :data:`MARKER`."""
        for form in self.long:
            if form in data:
                self.count += data.count(form)
                data = data.replace(form, MARKER)
        if self.short is not None:
            data, n = self.short.subn(MARKER, data)
            self.count += n
        for shape in SHAPES:
            data = shape.sub(self._replace, data)
        return data

    def _replace(self, m: re.Match[bytes]) -> bytes:
        """The match with its ``value`` group replaced, unless it is no secret after all."""
        value = m.group("value")
        groups = m.re.groupindex
        if m.re is PEM:
            if value.strip() in (b"", MARKER):
                return m.group(0)
            new = b"\n" + MARKER + b"\n"
        else:
            if m.re is not TOKENS and not_a_secret(value, self.names):
                return m.group(0)
            if "key" in groups and not secret_key(m.group("key").decode("latin-1"), variable=False):
                return m.group(0)
            quote_char, _ = _unquoted(value)
            new = quote_char + MARKER + quote_char
        self.count += 1
        start, end = m.span("value")
        return m.group(0)[: start - m.start()] + new + m.group(0)[end - m.start():]

    def text(self, text: str) -> str:
        """:meth:`bytes` for text (a message, a file name)."""
        return self.bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")
