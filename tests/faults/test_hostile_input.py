"""Hostile input, generated with Hypothesis (issue #6): never a traceback, always the same answer.

* ``.env`` text (quotes, ``export``, CRLF, a BOM, duplicate keys, ``=`` in values, unicode)
  through :func:`readiness.envfile.parse_text` and :func:`readiness.envfile.ensure`;
* Compose interpolation forms (``$$``, ``${VAR:-x}``, ``${VAR:?err}``, nested defaults, stray
  dollars) through :func:`readiness.preflight.unescaped_refs`, and a sample compared with what
  the real ``docker compose config --variables`` says on a one-service file;
* odd secret and service names, and odd ``x-readiness`` values, through the secrets and
  findings code: a clean pass, a finding or a ToolkitError, never another exception.

The runs are derandomized (same examples on every run); ``READINESS_FAULT_EXAMPLES`` sets how
many examples each property gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml
from conftest import clean_env  # tests/conftest.py
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from readiness import envfile, findings, preflight
from readiness import secrets as secretslib
from readiness.compose import Model
from readiness.errors import ToolkitError

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

names = st.sampled_from(["A", "B", "KEY", "_X", "k.y", "DB-URL", "A1"])
bad_names = st.sampled_from(["1A", "A B", "", "é", "A$", "-x"])
texty = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
values = st.one_of(
    texty,
    st.sampled_from(["", "a=b", "x #c", "'q'", '"dq"', '"a\\"b"', "'a\"b'", '"a\\nb"', "'unterminated",
                     '"\\\\n"', "tab\tx", "ü€😀", "a'b", 'a"b', "\\", "=", " spaced "]),
)
line_endings = st.sampled_from(["\n", "\r\n"])


@st.composite
def env_lines(draw) -> str:
    kind = draw(st.sampled_from(["kv", "kv", "kv", "export", "comment", "blank", "bad", "noeq"]))
    if kind == "comment":
        return "# " + draw(texty)
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\t"]))
    if kind == "noeq":
        return draw(texty).replace("=", "").replace("\n", "").replace("\r", "") or "x"
    key = draw(bad_names if kind == "bad" else names)
    prefix = "export " if kind == "export" else ""
    return f"{prefix}{key}={draw(values)}"


@st.composite
def env_texts(draw) -> str:
    lines = draw(st.lists(env_lines(), max_size=8))
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
    r.check(all(envfile._KEY.match(e.key) and 1 <= e.line <= total for e in first.entries),
            "every entry has a valid key and a line number in range", first.entries)
    r.check(all(1 <= number <= total and message for number, message in first.errors),
            "every error has a line number in range and a message", first.errors)
    # every physical line is an entry, an error, blank or a comment: nothing vanishes
    r.check(len(first.entries) + len(first.errors) <= total, "no more entries and errors than lines")


@SETTINGS
@given(current=env_texts(), example=env_texts())
# Regressions found while writing this suite: a newline or an escaped backslash in an example
# value was appended so that the .env could no longer be parsed (fixed in envfile._quote/_unquote).
@example(current="X=1\n", example='K="a\\nb"\n')
@example(current="", example='L="it\'s \\\\n"\r\nM="end\\\\"\r\n')
@example(current="A=\x0c\n", example="# \x85 NEL\nB=\u2028\n")
def test_ensure_keeps_every_byte_and_value_and_adds_what_parses_back(current, example):
    r = row("input.env-ensure", lost_note=None)
    with tempfile.TemporaryDirectory() as tmp:
        env_path, example_path = Path(tmp) / ".env", Path(tmp) / ".env.example"
        env_path.write_bytes(current.encode())
        example_path.write_bytes(example.encode())
        try:
            result = envfile.ensure(env_path, example_path)
        except ToolkitError as exc:  # a malformed line: named with its file and line
            r.check(exc.where and ".env" in exc.where and exc.fix, "a refusal is a ToolkitError naming the file, "
                    "with a fix", exc.render())
            r.check(env_path.read_bytes() == current.encode(), "a refused .env is left as it was", keeps_data=True)
            return
        after = env_path.read_bytes()
        r.check(after.startswith(current.encode()), "the bytes .env had are kept", keeps_data=True)
        old = envfile.parse_text(current, env_path).values
        parsed = envfile.parse_text(after.decode(), env_path)
        r.check(not parsed.errors, "the .env written parses", parsed.errors)
        new, wanted = parsed.values, envfile.parse_text(example, example_path).values
        r.check(all(new[key] == value for key, value in old.items()), "every value .env had is unchanged",
                keeps_data=True)
        r.check(all(new[key] == wanted[key] for key in result.added), "every appended value parses back to the "
                "example's", {k: (new[k], wanted[k]) for k in result.added if new[k] != wanted[k]})
        r.check(set(wanted) <= set(new), "every key of the example is in .env afterwards")
        again = envfile.ensure(env_path, example_path)
        r.check(again.added == [] and env_path.read_bytes() == after, "a second ensure changes nothing")


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
    refs = preflight.unescaped_refs(text)
    r.check(True, "returned without raising")
    r.check(refs == preflight.unescaped_refs(text), "same answer on every run")
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


def test_unescaped_refs_agrees_with_compose(tmp_path, docker):
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
        ours = set(preflight.unescaped_refs(text))
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
        changes = secretslib.ensure(model)
        found = preflight.check_secrets(model, preflight.Facts())
    except ToolkitError as exc:
        r.check(exc.message and exc.fix, "a refusal is a ToolkitError with a message and a fix", exc.render())
        return ("error", exc.render().replace(str(root), "<root>"))
    r.check(all(f.id in findings.CATALOG for f in found), "every finding's id is in the catalog", found)
    actions = [(model.relpath(c.path), c.action) for c in changes]
    return (repr(actions), findings.to_text(found), findings.to_json(found))


@SETTINGS
@given(secret=odd_name, service=odd_name, x=odd_x, user=st.sampled_from(["472:0", "0", "abc", None, "1000:1000"]))
def test_odd_names_give_a_finding_or_a_clean_error(secret, service, x, user):
    r = row("input.names")
    outcomes = []
    for _ in range(2):  # the same input twice, each in a fresh directory: the same output
        with tempfile.TemporaryDirectory() as tmp:
            outcomes.append(names_outcome(r, Path(tmp), secret, service, x, user))
    r.check(outcomes[0] == outcomes[1], "the same output twice", outcomes)
