"""Closed sets of words (engine kinds, severities, health check kinds, pull states) are enums
that read exactly as the words did: in messages, tables, dict lookups and ``--json``. Engine-free."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from readiness.enums import TextEnum
from readiness.preflight.findings import ERROR, Finding, Severity, to_text
from readiness.run.health import Check, CheckKind
from readiness.run.pull import PullState
from readiness.system.engine import Kind

MEMBERS = [m for enum in (Kind, Severity, CheckKind, PullState) for m in enum]


@pytest.mark.parametrize("member", MEMBERS, ids=[f"{type(m).__name__}.{m.name}" for m in MEMBERS])
def test_a_member_is_its_word_everywhere(member: TextEnum):
    word = member.value
    assert isinstance(member, str) and member == word and hash(member) == hash(word)
    assert str(member) == f"{member}" == f"{member:>3}".strip() == word
    assert "%s" % member == word and {word: 1}[member] == 1  # noqa: UP031 - the old formatting too
    assert json.dumps(member) == json.dumps(word) and json.dumps({member: 1}) == json.dumps({word: 1})
    assert type(member)(word) is member


def test_documents_and_text_read_as_with_plain_words():
    check = Check("web", CheckKind.HTTPS, "https://web.localhost/", True, "HTTP 200")
    assert json.dumps(asdict(check), sort_keys=True) == json.dumps(
        {"service": "web", "kind": "https", "target": "https://web.localhost/", "ok": True, "detail": "HTTP 200"},
        sort_keys=True)
    text = to_text([Finding("secret.missing", ERROR, "secret x has no file", "run `invoke secrets`")])
    assert text.startswith("ERROR   secret.missing") and "1 error(s), 0 warning(s)" in text
    assert f"the {Kind.USERNS} engine" == "the userns-remap engine"
