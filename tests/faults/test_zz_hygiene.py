"""Hygiene after the suite; runs last in the directory (file order), on purpose.

* Secrets: every stdout/stderr the suite collected — each ``invoke`` run, killed or not, every
  ``preflight --json``, the guard, pre-commit, the second engine's log — is searched for every
  secret value found on disk after each test (``LEDGER.harvest``). Run alone, the test makes
  its own material first: a bootstrap, a ``preflight --json`` and a failing run on a mini stack.
* The machine: after the engine faults (a second dockerd) the host's ``docker0`` is still there
  if it was before, and the main engine still runs a container on its default network
  (``main_engine_baseline`` in tests/conftest.py takes the "before" when the session starts
  the second engine, or here when that module did not run).
"""

from __future__ import annotations

from conftest import isolated_repo_copy, unavailable  # tests/conftest.py

from .support import LEDGER, make_mini, remove_network, run


def test_no_output_contains_a_secret_value(tmp_path, docker):
    row = LEDGER.row("hygiene.outputs")
    row.lost_note = "n/a (reads outputs only)"
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
    # `invoke urls` names the file of every password (never a value), on the repository's own
    # stack, where every routed service has a login and the TCP entry points a connection string.
    repo, networks = isolated_repo_copy(tmp_path / "repo")
    try:
        assert run(repo, "bootstrap", "--json").returncode == 0
        for args in (("urls",), ("urls", "--json"), ("status", "--json")):
            run(repo, *args)
    finally:
        for name in networks:
            remove_network(name)
    LEDGER.harvest(tmp_path)
    values = [v for v in LEDGER.secret_values if len(v) >= 12]
    assert values, "no secret value was harvested: the scan would prove nothing"
    leaks = [(label, LEDGER.secret_values[v]) for label, text in LEDGER.outputs for v in values if v in text]
    row.cases += len(LEDGER.outputs) * len(values)
    row.check(not leaks, "no output contains any generated secret value", leaks[:5])
    row.figure(f"{len(values)} secret values x {len(LEDGER.outputs)} outputs")


def test_the_main_engine_still_runs_containers_on_its_default_network(main_engine_baseline):
    """The suite's second dockerd left the host's network alone."""
    baseline = main_engine_baseline
    if baseline.problem:
        unavailable("the main engine could not run a container on its default network before the suite's "
                    f"engine faults ({baseline.problem}); restart the Docker engine and run the suite again")
    damage = baseline.damage()
    assert not damage, "; ".join(damage)
