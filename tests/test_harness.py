"""The test harness itself holds on any contributor machine.

* ``run_invoke`` gives the toolkit the caller's environment without the stack's variables:
  an exported ``LOCAL_DOMAIN`` (or ``COMPOSE_*``, ``READINESS_*``) in the shell that runs
  pytest changes nothing, and what a test passes explicitly still wins;
* a missing tool fails in CI and skips elsewhere, by the same rule as ``noxfile.py``.
"""

from __future__ import annotations

import ast
import os

import pytest
from conftest import REPO, in_ci, invoke_env, require_tool, run_invoke
from cryptography import x509


def san_names(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)


def test_an_exported_stack_variable_does_not_reach_the_toolkit(mini_files, monkeypatch):
    """An exported ``LOCAL_DOMAIN`` once got the certificate issued for the caller's domain, not .env's."""
    monkeypatch.setenv("LOCAL_DOMAIN", "exported.invalid")
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "exported-project")
    monkeypatch.setenv("READINESS_EXTRA_COMPOSE_FILES", "does-not-exist.yml")
    res = run_invoke(mini_files, "certs")
    assert res.returncode == 0, res.stdout + res.stderr
    names = san_names((mini_files / "secrets" / "certs" / "cert.pem").read_bytes())
    assert "web.localhost" in names and not any("exported" in n for n in names), names


def test_invoke_env_scrubs_the_stack_and_keeps_what_the_test_passes(mini_files, monkeypatch):
    monkeypatch.setenv("LOCAL_DOMAIN", "exported.invalid")
    monkeypatch.setenv("WEB_PORT", "1")  # a key of the mini_files stack's own .env.example
    monkeypatch.setenv("COMPOSE_ANSI", "never")
    monkeypatch.setenv("READINESS_ANYTHING", "x")
    monkeypatch.setenv("HOME_KEPT_FOR_TEST", "yes")
    env = invoke_env(mini_files, {"LOCAL_DOMAIN": "explicit.test", "READINESS_FAULT_LOG": "/tmp/x"})
    assert env["LOCAL_DOMAIN"] == "explicit.test" and env["READINESS_FAULT_LOG"] == "/tmp/x"
    assert env["READINESS_PROJECT_DIR"] == str(mini_files)
    assert not {"WEB_PORT", "COMPOSE_ANSI", "READINESS_ANYTHING"} & set(env)
    assert env["HOME_KEPT_FOR_TEST"] == "yes" and env["PATH"]


def noxfile_ci_rule() -> ast.expr:
    """The expression ``noxfile.py`` assigns to ``CI`` (read, not imported: nox may not be installed
    in the environment that runs the tests)."""
    tree = ast.parse((REPO / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CI"]:
            return node.value
    raise AssertionError("noxfile.py assigns no CI")


@pytest.mark.parametrize("value, truthy", [("1", True), ("true", True), ("TRUE", True), ("yes", True),
                                           ("Yes", True), ("0", False), ("false", False), ("", False),
                                           ("no", False), (None, False)])
def test_ci_means_the_same_to_the_tests_and_to_nox(value, truthy, monkeypatch):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    rule = compile(ast.Expression(noxfile_ci_rule()), "noxfile.py", "eval")
    assert in_ci() is truthy
    assert eval(rule, {"os": os}) is truthy  # noqa: S307 - the repository's own expression


def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch):
    missing = "readiness-no-such-tool"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="readiness-no-such-tool is not installed: why"):
        require_tool(missing, "why")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="readiness-no-such-tool is not installed: why"):
        require_tool(missing, "why")
    assert require_tool("sh", "why").endswith("/sh")


def test_output_that_is_not_utf8_never_stops_the_runner():
    """A byte that is not UTF-8 (a C locale, a program's stray output) is replaced, not raised:
    captured by `run`, and streamed by `Lines` to its end (its reader once died silently and
    left `up` printing heartbeats for ever)."""
    from readiness.system import runner

    script = "printf 'ok \\377\\n'; printf 'done\\n'"
    res = runner.run(["sh", "-c", script], timeout=30)
    assert res.ok and res.stdout == "ok \ufffd\ndone\n"
    with runner.Lines(["sh", "-c", script]) as lines:
        while not lines.next(timeout=10)[0]:
            pass
    assert lines.output == ["ok \ufffd", "done"]
