"""Preflight checks of ``.env`` and ``.env.example``.

* ``env.file-missing`` / ``env.malformed``: ``.env`` is missing, or a line cannot be parsed;
* ``env.required-unset``: a variable the stack requires is unset or empty;
* ``env.stale-default``: ``.env`` still holds a default (an image pin) that the repository has
  since moved: it was copied from ``.env.example`` once and never followed;
* ``env.example-credential``: ``.env.example`` holds something that looks like a credential.
"""

from __future__ import annotations

import re

from ..stack import envfile
from ..stack.model import Model
from .facts import ENV_EXAMPLE, ENV_FILE, Facts
from .findings import ERROR, WARNING, Finding

_CREDENTIAL_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|_PASS$|WEBHOOK)", re.I)
_URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def check_env(model: Model, facts: Facts) -> list[Finding]:
    out = []
    if facts.env is None:
        out.append(Finding("env.file-missing", ERROR, ".env does not exist",
                           "run `invoke env` (copies .env.example to .env)", file=ENV_FILE))
    else:
        for line, message in facts.env.errors:
            out.append(Finding("env.malformed", ERROR, f"line {line}: {message}",
                               "write the line as KEY=value or delete it", file=f"{ENV_FILE}:{line}"))
    if facts.env is not None and facts.example is not None:
        lines = {e.key: e.line for e in facts.env.entries}
        for key, old, new in envfile.stale_defaults(facts.env_shipped, facts.env, facts.example):
            out.append(Finding(
                "env.stale-default", WARNING,
                f"{key} in .env is still {old!r}, what .env.example shipped when it was written; the repository "
                f"now ships {new!r}",
                f"take the new default: set {key}={new} in .env (for an image, `invoke up` then pulls it and recreates "
                f"what uses it); or keep yours on purpose: `invoke env --keep {key}`",
                file=f"{ENV_FILE}:{lines[key]}" if key in lines else ENV_FILE, variable=key))
    for name in model.missing_required:
        line = next((e.line for e in (facts.env.entries if facts.env else []) if e.key == name), None)
        out.append(Finding("env.required-unset", ERROR, f"required variable {name} is unset or empty",
                           f"set {name}=<value> in .env (see the comment above it in .env.example)",
                           file=f"{ENV_FILE}:{line}" if line else ENV_FILE))
    return out


def check_example_credentials(facts: Facts) -> list[Finding]:
    out = []
    for e in facts.example.entries if facts.example else []:
        value = e.value.strip()
        if not value:
            continue
        looks_like_key = _CREDENTIAL_KEY.search(e.key) and not value.startswith("/run/secrets/")
        if looks_like_key or _URL_WITH_PASSWORD.search(value):
            out.append(Finding("env.example-credential", ERROR,
                               f"{e.key} in .env.example has a value that looks like a credential",
                               "move the value into a file secret under secrets/ (see secrets/README.md) and "
                               "leave only non-sensitive defaults in .env.example",
                               file=f"{ENV_EXAMPLE}:{e.line}"))
    return out
