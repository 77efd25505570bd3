"""Hostile input, generated with Hypothesis: never a traceback, always the same answer.

* ``.env`` text (quotes spanning lines, ``export``, ``KEY: value``, bare keys, CRLF, a BOM,
  duplicate keys, ``=`` in values, unicode) through :func:`readiness.stack.envfile.parse_text` and
  :func:`readiness.stack.envfile.ensure`, and a sample of both compared with Compose itself
  (``docker compose config --environment``): Compose refuses exactly what the reader refuses,
  reads the same variables, and reads every variable ``.env`` had unchanged after ``ensure``;
* Compose interpolation forms (``$$``, ``${VAR:-x}``, ``${VAR:?err}``, nested defaults, stray
  dollars) through :func:`readiness.preflight.check_compose.unescaped_refs`, and a sample compared with what
  the real ``docker compose config --variables`` says on a one-service file;
* odd secret and service names, and odd ``x-readiness`` values, through the secrets and
  findings code: a clean pass, a finding or a ToolkitError, never another exception.

The runs are derandomized (same examples on every run); ``READINESS_FAULT_EXAMPLES`` sets how
many examples each property gets.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import yaml
from conftest import clean_env  # tests/conftest.py
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from readiness.errors import ToolkitError
from readiness.preflight import catalog, check_compose, check_secrets, findings
from readiness.preflight.facts import Facts
from readiness.prepare import secrets as secretslib
from readiness.stack import envfile
from readiness.stack.model import Model
from readiness.system import engine as enginelib

from .support import LEDGER

EXAMPLES = max(10, int(os.environ.get("READINESS_FAULT_EXAMPLES", "150")))
ORACLE_SAMPLE = max(5, int(os.environ.get("READINESS_FAULT_ORACLE", "25")))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

PURE = "n/a (pure functions)"


def row(key: str, lost_note: str | None = PURE):
    """The table row of a property; every example is a case, its assertions are its claims."""
    r = LEDGER.row(key)
    r.lost_note = lost_note
    r.cases += 1
    return r


# ------------------------------------------------------------------------------ .env text

names = st.sampled_from(["A", "B", "KEY", "_X", "k.y", "DB-URL", "A1", "1A", "é", "A[0]"])
bad_names = st.sampled_from(["A B", "A$", "A/B", "a,b", "A'"])
texty = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
#: Values Compose reads in every form it accepts: quotes spanning lines, escaped quotes, a
#: second statement after a closing quote, a comment right after it, octal escapes.
written_values = st.sampled_from([
    "", "a=b", "x #c", "'q'", '"dq"', '"a\\"b"', "'a\"b'", '"a\\nb"', '"\\\\n"', "tab\tx", "ü€😀", "a'b", 'a"b',
    "\\", "=", " spaced ", "'it\\'s'", '"two\nlines"', "'one\n\ntwo'", "'x' B=2", '"x"# c', '"\\0123\\c"',
])
values = st.one_of(texty, written_values, st.sampled_from(["'unterminated", '"open']))
line_endings = st.sampled_from(["\n", "\r\n"])


@st.composite
def env_lines(draw, valid: bool = False) -> str:
    kinds = ["kv", "kv", "kv", "export", "colon", "bare", "comment", "blank"] + ([] if valid else ["bad", "noeq"])
    kind = draw(st.sampled_from(kinds))
    if kind == "comment":
        return "# " + draw(texty).replace("\n", " ")
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\t"]))
    if kind == "noeq":
        return draw(texty).replace("=", "").replace("\n", "").replace("\r", "") or "x"
    key = draw(bad_names if kind == "bad" else names)
    if kind == "bare":
        return key
    prefix = "export " if kind == "export" else ""
    return f"{prefix}{key}{': ' if kind == 'colon' else '='}{draw(written_values if valid else values)}"


@st.composite
def env_texts(draw, valid: bool = False) -> str:
    lines = draw(st.lists(env_lines(valid), max_size=8))
    nl = draw(line_endings)
    bom = "\ufeff" if draw(st.booleans()) else ""
    return bom + nl.join(lines) + (nl if lines and draw(st.booleans()) else "")


@SETTINGS
@given(text=env_texts())
def test_parse_text_never_raises_and_is_deterministic(text):
    r = row("input.env-parse")
    path = Path("/nonexistent/.env")
    first = envfile.parse_text(text, path)
    again = envfile.parse_text(text, path)
    r.check(True, "returned without raising")
    r.check((first.entries, first.errors) == (again.entries, again.errors), "same entries and errors on every run")
    total = len(text.lstrip("\ufeff").split("\n"))
    r.check(all(envfile.valid_key(e.key) and 1 <= e.line <= e.end_line <= total for e in first.entries),
            "every entry has a key Compose accepts and its lines in range", first.entries)
    r.check(all(1 <= number <= total and message for number, message in first.errors),
            "every error has a line number in range and a message", first.errors)


def compose_environment(directory: Path, text: str) -> str | None:
    """Compose's own reading of ``text`` as ``.env`` (None: Compose refuses the file).

    ``docker compose config --environment`` prints the sorted ``KEY=value`` lines of the
    environment it interpolates with; the lines of the variables Compose adds itself (and of
    PATH, HOME, DOCKER_CONFIG, the only ones passed in) are dropped, so what is left comes
    from the file. Bytes, not text mode: universal newlines would turn a value's CR into LF.
    """
    (directory / ".env").write_bytes(text.encode())
    (directory / "docker-compose.yml").write_text("services:\n  s:\n    image: busybox:1.36.1\n")
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    res = subprocess.run(["docker", "compose", "--project-directory", str(directory), "config", "--environment"],
                         cwd=directory, env=env, capture_output=True, timeout=60)
    LEDGER.output("docker compose config --environment", res.stdout, res.stderr)
    if res.returncode != 0:
        return None
    own = {f"{k}={v}" for k, v in env.items()} | {f"PWD={directory}"}
    lines = res.stdout.decode("utf-8", "surrogateescape").removesuffix("\n").split("\n")
    return "\n".join(line for line in lines if line not in own
                     and not line.startswith(("COMPOSE_PROJECT_NAME=", "DOCKER_CLI_PLUGIN_")))


def reader_environment(parsed: envfile.EnvFile) -> dict[str, str]:
    """What Compose should take from a file with no ``$`` in it, by the reader's account.

    A bare ``KEY`` line keeps the value an earlier line gave (none of these keys is in the
    environment passed to Compose), so only assignments count; the last one wins.
    """
    return {e.key: e.value for e in parsed.entries if not e.inherited}


def printed(view: dict[str, str]) -> str:
    """``view`` as ``config --environment`` prints it (Go's sort of ``KEY=value`` strings)."""
    return "\n".join(sorted(f"{k}={v}" for k, v in view.items()))


def for_oracle(text: str) -> str:
    """``text`` without ``$`` and without code points this Python's Unicode database lacks.

    Interpolation is Compose's, not the reader's; and whether an unassigned code point is a
    letter depends on the Unicode version (Go's may be newer), so the reader lets it through.
    """
    return "".join("S" if ch == "$" or unicodedata.category(ch) == "Cn" else ch for ch in text)


def test_reader_agrees_with_compose(tmp_path, compose_cli):
    """A sample of generated files: Compose refuses exactly the ones the reader finds an error in,
    and takes exactly the variables and values the reader finds from the others."""
    r = LEDGER.row("input.env-parse")
    r.lost_note = PURE
    samples: list[str] = []

    @settings(max_examples=ORACLE_SAMPLE, derandomize=True, deadline=None, database=None)
    @given(text=env_texts())
    def collect(text):
        samples.append(for_oracle(text))

    collect()
    for text in samples:
        r.cases += 1
        parsed = envfile.parse_text(text, tmp_path / ".env")
        seen = compose_environment(tmp_path, text)
        r.check((seen is None) == bool(parsed.errors), "Compose refuses a file exactly when the reader finds "
                "an error in it", (text, parsed.errors))
        if seen is not None:
            r.check(seen == printed(reader_environment(parsed)), "Compose takes exactly the variables and values "
                    "the reader finds", (text, seen, printed(reader_environment(parsed))))


@SETTINGS
@given(current=env_texts(), example=env_texts())
# Regressions found while writing this suite: a newline or an escaped backslash in an example
# value was appended so that the .env could no longer be parsed (then fixed in how values were
# re-quoted; now the example's lines are copied verbatim and never re-quoted).
@example(current="X=1\n", example='K="a\\nb"\n')
@example(current="", example='L="it\'s \\\\n"\r\nM="end\\\\"\r\n')
@example(current="A=\x0c\n", example="# \x85 NEL\nB=\u2028\n")
@example(current="A=1\nLAST", example="B=2\n")  # a bare key at the very end: Compose names it ""
@example(current="B=mine\n", example="A=1 \nB='2' C=3\n")  # half a line is never copied
def test_ensure_keeps_every_byte_and_value_and_appends_the_examples_lines(current, example):
    r = row("input.env-ensure", lost_note=None)
    with tempfile.TemporaryDirectory() as tmp:
        env_path, example_path = Path(tmp) / ".env", Path(tmp) / ".env.example"
        env_path.write_bytes(current.encode())
        example_path.write_bytes(example.encode())
        try:
            result = envfile.ensure(env_path, example_path)
        except ToolkitError as exc:  # a malformed line, or a line that appending would change
            r.check(exc.where and ".env" in exc.where and exc.fix, "a refusal is a ToolkitError naming the file, "
                    "with a fix", exc.render())
            r.check(env_path.read_bytes() == current.encode(), "a refused .env is left as it was", keeps_data=True)
            return
        after = env_path.read_bytes()
        r.check(after.startswith(current.encode()), "the bytes .env had are kept", keeps_data=True)
        before = envfile.parse_text(current, env_path)
        parsed = envfile.parse_text(after.decode(), env_path)
        wanted = envfile.parse_text(example, example_path)
        r.check(not parsed.errors, "the .env written parses", parsed.errors)
        r.check(parsed.entries[:len(before.entries)] == before.entries, "every statement .env had reads as "
                "before (key, value, line)", keeps_data=True)
        lines, tail = wanted.text.split("\n"), after[len(current.encode()):].decode()
        copied = [e for e in wanted.entries if e.key in result.added]
        r.check(all("\n".join(lines[e.line - 1:e.end_line]) in tail for e in copied),
                "the appended lines are the example's, verbatim", (tail, copied))
        r.check(all(parsed.values.get(k) == wanted.values.get(k) for k in result.added),
                "every appended value reads as the example's")
        r.check(set(wanted.keys()) <= set(parsed.keys()), "every key of the example is in .env afterwards")
        again = envfile.ensure(env_path, example_path)
        r.check(again.added == [] and env_path.read_bytes() == after, "a second ensure changes nothing")


def test_ensure_keeps_composes_view_of_every_variable(tmp_path, compose_cli):
    """A sample of generated (.env, .env.example) pairs through ``ensure`` (the body of `invoke env`):
    Compose's view of every variable .env had is the same afterwards, and Compose reads the result."""
    r = LEDGER.row("input.env-ensure")
    samples: list[tuple[str, str]] = []

    @settings(max_examples=ORACLE_SAMPLE, derandomize=True, deadline=None, database=None)
    @given(current=env_texts(valid=True), wanted=env_texts(valid=True))
    def collect(current, wanted):
        samples.append((for_oracle(current), for_oracle(wanted)))

    collect()
    for current, wanted in samples:
        r.cases += 1
        env_path, example_path = tmp_path / ".env", tmp_path / ".env.example"
        seen_before = compose_environment(tmp_path, current)
        before = envfile.parse_text(current, env_path)
        r.check(seen_before == printed(reader_environment(before)), "Compose's view of .env before is the "
                "reader's", (current, seen_before))
        example_path.write_bytes(wanted.encode())
        try:
            envfile.ensure(env_path, example_path)
        except ToolkitError as exc:
            r.check(exc.fix and env_path.read_bytes() == current.encode(), "a refused .env is left as it was",
                    exc.render(), keeps_data=True)
            continue
        written = env_path.read_bytes().decode()
        seen_after = compose_environment(tmp_path, written)
        after = envfile.parse_text(written, env_path)
        r.check(seen_after == printed(reader_environment(after)), "Compose reads the .env written, as the reader "
                "does", (written, seen_after))
        old, new = reader_environment(before), reader_environment(after)
        r.check(all(new.get(k) == v for k, v in old.items()), "Compose's view of every variable .env had is "
                "unchanged", (current, written), keeps_data=True)


# ------------------------------------------------------------------------------ interpolation

var = st.sampled_from(["A", "B", "VAR", "_x", "HOST_1"])
plain = st.text(alphabet="abc -_/:.'\"=#", max_size=6)
word = st.text(alphabet="abcxyz0-_/.", min_size=1, max_size=5)


@st.composite
def simple_piece(draw) -> str:
    """One interpolation form Compose accepts, without nesting (the oracle grammar)."""
    name = draw(var)
    form = draw(st.sampled_from(["bare", "braced", "default", "dash", "required", "qmark", "alt", "escaped",
                                 "escaped_braced", "text", "dollar_escape"]))
    return {
        "bare": f"${name}", "braced": f"${{{name}}}", "default": f"${{{name}:-{draw(word)}}}",
        "dash": f"${{{name}-{draw(word)}}}", "required": f"${{{name}:?{draw(word)}}}",
        "qmark": f"${{{name}?{draw(word)}}}", "alt": f"${{{name}:+{draw(word)}}}", "escaped": f"$${name}",
        "escaped_braced": f"$${{{name}}}", "text": draw(plain), "dollar_escape": "$$",
    }[form]


@st.composite
def any_piece(draw) -> str:
    if draw(st.integers(0, 3)) == 0:
        outer, inner = draw(var), draw(simple_piece())
        return f"${{{outer}:-{inner}}}"  # a nested default
    if draw(st.integers(0, 5)) == 0:
        return draw(st.sampled_from(["$", "${", "$}", "${}", "$1", "${A", "$ ", "}", "${A:-", "$$$"]))
    return draw(simple_piece())


oracle_strings = st.lists(simple_piece(), min_size=1, max_size=5).map(" ".join)
hostile_strings = st.one_of(st.lists(any_piece(), max_size=6).map("".join), st.text(max_size=20))


@SETTINGS
@given(text=hostile_strings)
def test_unescaped_refs_never_raises_and_is_deterministic(text):
    r = row("input.interpolation")
    refs = check_compose.unescaped_refs(text)
    r.check(True, "returned without raising")
    r.check(refs == check_compose.unescaped_refs(text), "same answer on every run")
    r.check(all((name.isidentifier() or name.replace("_", "a").isalnum())
                and (f"${name}" in text or f"${{{name}}}" in text) for name in refs),
            "every name returned is a variable name written in the text", refs)


def compose_bare_variables(text: str, workdir: Path) -> set[str] | None:
    """Variables Compose interpolates in ``text`` with no default, alternative or required mark."""
    (workdir / "docker-compose.yml").write_text(yaml.safe_dump(
        {"services": {"s": {"image": "busybox:1.36.1", "command": ["sh", "-c", text]}}}))
    env = {k: v for k, v in clean_env().items() if k not in {"A", "B", "VAR", "_x", "HOST_1"}}
    res = subprocess.run(["docker", "compose", "config", "--variables", "--format", "json"], cwd=workdir,
                         capture_output=True, text=True, env=env, timeout=60)
    LEDGER.output("docker compose config --variables", res.stdout, res.stderr)
    if res.returncode != 0:
        return None
    doc = json.loads(res.stdout or "{}")
    return {n for n, v in doc.items() if not v.get("Required") and not v.get("DefaultValue")
            and not v.get("PresenceValue")}


def test_unescaped_refs_agrees_with_compose(tmp_path, compose_cli):
    """A sample of generated strings: our bare references are exactly Compose's bare variables."""
    r = LEDGER.row("input.compose-oracle")
    r.lost_note = PURE
    samples: list[str] = []

    @settings(max_examples=ORACLE_SAMPLE, derandomize=True, deadline=None, database=None)
    @given(text=oracle_strings)
    def collect(text):
        samples.append(text)

    collect()
    for text in samples:
        r.cases += 1
        bare = compose_bare_variables(text, tmp_path)
        r.check(bare is not None, "`docker compose config` accepted every string of the grammar", text)
        ours = set(check_compose.unescaped_refs(text))
        r.check(ours == bare, "`unescaped_refs` named exactly the variables Compose interpolates without a "
                "default, `?` or `+`", (text, sorted(ours), sorted(bare)))


# ------------------------------------------------------------------------------ names

odd_name = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1,
            max_size=30),
    st.sampled_from(["a.b", "-x", "x-", "UPPER", "ü", "a b", "😀", "..", ".", "x" * 200, "README.md", ".gitkeep"]),
)
odd_x = st.fixed_dictionaries({}, optional={
    "charset": st.one_of(st.sampled_from(["alnum", "password", "hex", "base64", "", "ALNUM"]), st.integers()),
    "length": st.one_of(st.integers(-5, 80), st.sampled_from(["32", "abc", "", None, 1.5, "1e3"])),
    "template": st.one_of(st.none(), st.sampled_from(["{value}", "x{value}y", "no placeholder", ""])),
    "format": st.sampled_from(["htpasswd", "other", None]),
    "certificate": st.sampled_from(["cert", "key", None, "other"]),
    "htpasswd-user": st.one_of(st.sampled_from(["admin", ""]), st.integers()),
})


@functools.cache
def engine() -> enginelib.Engine:
    """The real engine's facts (secret modes depend on them), asked once."""
    return enginelib.info()


def names_outcome(r, root: Path, secret: str, service: str, x: dict, user) -> tuple[str, ...]:
    """specs -> ensure (writes the file, named after the secret) -> check_secrets, as text."""
    rendered = {
        "name": "odd",
        "services": {service: {"image": "busybox:1.36.1", "secrets": [secret],
                               **({"x-readiness": {"user": user}} if user else {})}},
        "secrets": {secret: {"file": str(root / "secrets" / secret), "x-readiness": x}},
    }
    model = Model(root, rendered)
    try:
        specs = secretslib.specs(model)
        r.check([s.name for s in specs] == [secret], "the secret's spec carries its name", specs)
        changes = secretslib.ensure(model, engine())
        found = check_secrets.check_secrets(model, Facts())
    except ToolkitError as exc:
        r.check(exc.message and exc.fix, "a refusal is a ToolkitError with a message and a fix", exc.render())
        return ("error", exc.render().replace(str(root), "<root>"))
    r.check(all(f.id in catalog.CATALOG for f in found), "every finding's id is in the catalog", found)
    actions = [(model.relpath(c.path), c.action) for c in changes]
    return (repr(actions), findings.to_text(found), findings.to_json(found))


@SETTINGS
@given(secret=odd_name, service=odd_name, x=odd_x, user=st.sampled_from(["472:0", "0", "abc", None, "1000:1000"]))
def test_odd_names_give_a_finding_or_a_clean_error(docker, secret, service, x, user):
    """The secret modes come from the real engine's facts: without one, every example would end in
    the clean error of an engine that does not answer, and prove nothing about the names."""
    r = row("input.names")
    outcomes = []
    for _ in range(2):  # the same input twice, each in a fresh directory: the same output
        with tempfile.TemporaryDirectory() as tmp:
            outcomes.append(names_outcome(r, Path(tmp), secret, service, x, user))
    r.check(outcomes[0] == outcomes[1], "the same output twice", outcomes)
