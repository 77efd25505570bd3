"""The table of preflight checks: what each check is given, and how findings that say the same
thing twice are told apart -- by their data (id, variable), never by their text. Engine-free."""

from __future__ import annotations

import inspect
from pathlib import Path

from readiness.preflight import check_compose, table
from readiness.preflight.findings import ERROR, Finding, to_doc
from readiness.stack.model import Model


def test_every_check_asks_only_for_inputs_the_table_has():
    assert len(table.CHECKS) == len(set(table.CHECKS)), "a check is listed twice"
    for check in table.CHECKS:
        asked = set(inspect.signature(check).parameters)
        assert asked and asked <= set(table.INPUTS), (check.__qualname__, asked)


def test_a_compose_warning_about_a_variable_the_dollar_check_reports_is_said_once():
    model = Model(Path("/nonexistent"), {"services": {}},
                  warnings=['The "PROBE_TOKEN" variable is not set. Defaulting to a blank string.',
                            'The "OTHER" variable is not set. Defaulting to a blank string.',
                            "service web: something else"])
    warnings = check_compose.check_compose_warnings(model)
    assert [w.variable for w in warnings] == ["PROBE_TOKEN", "OTHER", ""]
    dollar = Finding("compose.unescaped-dollar", ERROR, "healthcheck uses $PROBE_TOKEN, which Compose interpolates",
                     "write $$PROBE_TOKEN", "web", "docker-compose.yml", variable="PROBE_TOKEN")
    kept = table.without_superseded([dollar, *warnings])
    assert kept == [dollar, warnings[1], warnings[2]]


def test_de_duplication_reads_the_data_not_the_message():
    """A reworded message changes nothing; a message that merely mentions a variable drops nothing."""
    dollar = Finding("compose.unescaped-dollar", ERROR, "reworded entirely", "fix", variable="TOKEN")
    warning = Finding("compose.warning", ERROR, "docker compose config warns: anything", "fix", variable="TOKEN")
    mention = Finding("compose.warning", ERROR, 'uses $TOKEN; "TOKEN" variable is not set', "fix")
    assert table.without_superseded([dollar, warning, mention]) == [dollar, mention]


def test_the_variable_is_not_part_of_the_output():
    doc = to_doc([Finding("compose.warning", ERROR, "m", "f", variable="X")])
    assert doc["findings"] == [{"id": "compose.warning", "severity": "error", "message": "m", "fix": "f",
                                "service": "", "file": ""}]


def finding_ids_in_code(package: Path) -> set[str]:
    """The id of every ``Finding(...)`` the package builds: its first argument, a string, either
    branch of a conditional, or what a variable of that name is assigned in the module."""
    import ast

    def strings(node: ast.expr, assigned: dict[str, list[ast.expr]]) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return strings(node.body, assigned) | strings(node.orelse, assigned)
        if isinstance(node, ast.Name):
            return {s for value in assigned.get(node.id, []) for s in strings(value, {})}
        return set()

    ids = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding" and node.args:
                ids |= strings(node.args[0], assigned)
    return ids


def test_every_finding_the_checks_report_is_in_the_catalogue_and_no_entry_is_dead():
    """The runbook's troubleshooting table is rendered from the catalogue: an id missing from it
    would have no row, and an entry no check reports would document nothing."""
    from readiness.preflight.catalog import CATALOG

    used = finding_ids_in_code(Path(table.__file__).resolve().parent.parent)
    assert len(used) > 30, used
    assert sorted(used - set(CATALOG)) == [], "ids reported but not in readiness/preflight/catalog.py"
    assert sorted(set(CATALOG) - used) == [], "catalogue entries no check reports"
