"""Secret hygiene of every output (issue #6); runs last in the directory (file order), on purpose.

Every stdout/stderr the suite collected — each ``invoke`` run, killed or not, every
``preflight --json``, the guard, pre-commit, the second engine's log — is searched for every
secret value found on disk after each test (``LEDGER.harvest``). Run alone, the test makes its
own material first: a bootstrap, a ``preflight --json`` and a failing run on a mini stack.
"""

from __future__ import annotations

from .support import LEDGER, make_mini, remove_network, run


def test_no_output_contains_a_secret_value(tmp_path, docker):
    LEDGER.start("hygiene.outputs")
    project, net = make_mini(tmp_path / "mini")
    try:
        assert run(project, "bootstrap").returncode == 0
        assert run(project, "preflight", "--json").returncode == 0
        (project / "secrets" / "web_password").chmod(0o600)  # a finding that names a secret file
        run(project, "preflight", "--json")
        (project / ".env").write_text((project / ".env").read_text() + "NOT AN ASSIGNMENT\n")
        assert run(project, "secrets").returncode != 0  # an error paragraph
    finally:
        remove_network(net)
    LEDGER.harvest(tmp_path)
    values = [v for v in LEDGER.secret_values if len(v) >= 12]
    assert values, "no secret value was harvested: the scan would prove nothing"
    leaks = [(label, LEDGER.secret_values[v]) for label, text in LEDGER.outputs for v in values if v in text]
    assert not leaks, f"secret values printed: {leaks[:5]}"
    LEDGER.done("hygiene.outputs", len(LEDGER.outputs) * len(values),
                f"{len(values)} secret values x {len(LEDGER.outputs)} outputs: no output contains any of them")
