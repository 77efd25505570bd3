"""Preflight checks of the compose files: what Compose warns about, and what it does not check.

* ``compose.warning``: ``docker compose config`` printed a warning;
* ``compose.unescaped-dollar``: a ``$VAR`` in a command, entrypoint or healthcheck that Compose
  would interpolate (checked on the files as written: the rendered model is interpolated);
* ``compose.unpinned-image``: an image without a pinned tag or digest.

A finding about a variable carries its name (``Finding.variable``), so that the table can say
a variable once when Compose warns about what the ``$``-check reports.
"""

from __future__ import annotations

import re

from ..stack.model import Model
from .facts import Facts
from .findings import ERROR, Finding

#: Compose's warning about an unset variable (``The "NAME" variable is not set. Defaulting to a
#: blank string.``): the finding names the variable, as the ``$``-check's findings do.
_UNSET = re.compile(r'"(\w+)" variable is not set')


def check_compose_warnings(model: Model) -> list[Finding]:
    return [Finding("compose.warning", ERROR, f"docker compose config warns: {w}",
                    "fix the cause in the compose files or .env; `invoke config` shows it again",
                    file="docker-compose.yml", variable=m.group(1) if (m := _UNSET.search(w)) else "")
            for w in model.warnings]


_REF = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def unescaped_refs(text: str) -> list[str]:
    """Variables Compose would interpolate in ``text`` whose intent is unclear.

    ``$$`` is a literal dollar for the container; ``${VAR:-x}``/``${VAR:?err}`` (any
    modifier) are deliberate interpolations. A bare ``$VAR`` or ``${VAR}`` is returned, unless
    the same variable is written with a modifier elsewhere in ``text``: Compose then takes it as
    required or defaulted everywhere (``docker compose config --variables`` merges them), so its
    bare uses are deliberate too.
    """
    out, deliberate = [], set()
    i = 0
    while i < len(text):
        if text[i] != "$":
            i += 1
            continue
        if text.startswith("$$", i):
            i += 2
            continue
        m = _REF.match(text, i)
        if not m:
            i += 1
            continue
        name = m.group("braced") or m.group("bare")
        if not (m.group("braced") and m.group("rest")):
            out.append(name)
        else:
            deliberate.add(name)
        i = m.end()
    return [name for name in out if name not in deliberate]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def check_dollars(raw: dict[str, tuple[str, dict]], facts: Facts) -> list[Finding]:
    declared = set(facts.example.keys()) if facts.example else set()
    out = []
    for svc, (file, spec) in sorted(raw.items()):
        fields = {"command": spec.get("command"), "entrypoint": spec.get("entrypoint"),
                  "healthcheck": (spec.get("healthcheck") or {}).get("test")}
        for field_name, value in fields.items():
            for text in _strings(value):
                for name in unescaped_refs(text):
                    if name in declared:
                        continue
                    out.append(Finding("compose.unescaped-dollar", ERROR,
                                       f"{field_name} uses ${name}, which Compose interpolates (it is blanked "
                                       "when unset)", f"write $${name} for the container's shell, or "
                                       f"declare {name} in .env.example and use ${{{name}:-default}}",
                                       svc, file, variable=name))
    return out


def check_images(model: Model, files: dict[str, str]) -> list[Finding]:
    out = []
    for svc, spec in sorted(model.services.items()):
        image = str(spec.get("image") or "")
        if not image or "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest":
            out.append(Finding("compose.unpinned-image", ERROR, f"image {image} has no pinned tag",
                               "pin a version tag (or digest) as the default of its *_IMAGE variable",
                               svc, files.get(svc, "")))
    return out
