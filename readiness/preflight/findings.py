"""Findings: what preflight and validate report, in a stable order with stable ids.

Each check is a pure function returning findings; this module sorts and prints them. The
same input always gives byte-identical output, as text for people and ``--json`` for
machines. Every id is in :data:`readiness.preflight.catalog.CATALOG`, with its troubleshooting row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..enums import TextEnum


class Severity(TextEnum):
    """How much a finding matters: an error blocks the boot (exit 1), a warning does not."""

    ERROR = "error"
    WARNING = "warning"


#: The two severities by their short names, as every check writes them.
ERROR, WARNING = Severity.ERROR, Severity.WARNING
_SEVERITY_ORDER = {ERROR: 0, WARNING: 1}


@dataclass(frozen=True)
class Finding:
    """One thing preflight found: a stable id, how bad it is, what and where, and the fix.

    ``variable`` names the variable the finding is about, when it is about one: findings are
    de-duplicated by such data (:mod:`readiness.preflight.table`), never by their text. It is not output.
    """

    id: str
    severity: Severity
    message: str
    fix: str
    service: str = ""
    file: str = ""
    variable: str = field(default="", compare=False, repr=False)

    def sort_key(self) -> tuple:
        return (_SEVERITY_ORDER.get(self.severity, 9), self.id, self.service, self.file, self.message)

    def as_doc(self) -> dict[str, str]:
        """The finding as ``--json`` shows it (schemas/preflight.schema.json)."""
        return {"id": self.id, "severity": self.severity, "message": self.message, "fix": self.fix,
                "service": self.service, "file": self.file}


def sort(findings: list[Finding]) -> list[Finding]:
    unique = {f.sort_key(): f for f in findings}
    return [unique[k] for k in sorted(unique)]


def blocking(findings: list[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)


def to_doc(findings: list[Finding]) -> dict:
    """The ``--json`` document (schemas/preflight.schema.json)."""
    ordered = sort(findings)
    return {
        "ok": not blocking(ordered),
        "errors": sum(f.severity == ERROR for f in ordered),
        "warnings": sum(f.severity == WARNING for f in ordered),
        "findings": [f.as_doc() for f in ordered],
    }


def to_json(findings: list[Finding]) -> str:
    return json.dumps(to_doc(findings), indent=2, sort_keys=True) + "\n"


def to_text(findings: list[Finding], title: str = "preflight", out=None) -> str:
    """Findings for people; ``out`` (an :class:`readiness.output.Output`) adds colour on a terminal."""
    paint = out.paint if out is not None else (lambda text, style: text)
    symbol = out.symbol if out is not None else (lambda style: "")
    ordered = sort(findings)
    if not ordered:
        return f"{symbol('ok')}{title}: {paint('ok, nothing blocks boot', 'ok')}\n"
    lines = []
    for f in ordered:
        where = " ".join(x for x in (f"[{f.service}]" if f.service else "", f.file) if x)
        head = f"{f.severity.upper():7} {f.id:28} {where}".rstrip()
        lines.append(symbol(f.severity) + paint(head, f.severity))
        lines.append(f"        {f.message}")
        lines.append(f"        fix: {f.fix}")
    errors = sum(f.severity == ERROR for f in ordered)
    warnings = len(ordered) - errors
    verdict = "boot is blocked" if errors else "nothing blocks boot"
    lines.append(f"{title}: {errors} error(s), {warnings} warning(s): " + paint(verdict, "error" if errors else "ok"))
    return "\n".join(lines) + "\n"
