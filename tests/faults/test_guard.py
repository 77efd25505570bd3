"""Secret hygiene in git and on disk (issue #6).

* A commit that tracks a file under ``secrets/`` (other than README.md/.gitkeep) is refused by
  ``python3 -m readiness.guard`` run on ``git diff --cached --name-only`` in a real repository,
  by pre-commit itself with the repository's ``.pre-commit-config.yaml`` when pre-commit is
  installed (CI installs it with the ``dev`` extra), and by the toolkit CI runs
  (``invoke secrets`` refuses, preflight reports ``secret.tracked``).
* Generated secret files, keys and directories get the modes of the table in
  ``secrets/README.md``; the test reads them from that document, not from a second list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
from conftest import REPO

from readiness import guard
from readiness import secrets as secretslib

from .support import LEDGER, run


def git(repo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)


def guard_cli(repo, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("READINESS_PROJECT_DIR", None)
    res = subprocess.run([sys.executable, "-m", "readiness.guard", *files], cwd=repo, capture_output=True,
                         text=True, env=env, stdin=subprocess.DEVNULL)
    LEDGER.output("python -m readiness.guard", res.stdout, res.stderr)
    return res


@pytest.fixture
def git_repo(repo):
    """The repository's stack (``repo`` fixture) as a fresh git repository with a first commit."""
    assert git(repo, "init", "-q").returncode == 0
    shutil.copy2(REPO / ".pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    assert git(repo, "add", "-A").returncode == 0
    res = git(repo, "commit", "-q", "-m", "initial")
    assert res.returncode == 0, res.stderr
    return repo


def test_a_commit_tracking_a_secret_is_refused(git_repo):
    LEDGER.start("hygiene.guard")
    repo, cases = git_repo, 0
    assert run(repo, "env").returncode == 0
    assert run(repo, "secrets").returncode == 0
    leaked = "secrets/valkey_password"
    value = (repo / leaked).read_text()

    # allowed files and ordinary files pass
    (repo / "secrets" / "certs" / ".gitkeep").touch()
    (repo / "notes.txt").write_text("hello\n")
    git(repo, "add", "notes.txt", "secrets/certs/.gitkeep")
    staged = git(repo, "diff", "--cached", "--name-only").stdout.split()
    ok = guard_cli(repo, *staged)
    cases += 1
    assert ok.returncode == 0, ok.stderr
    git(repo, "commit", "-q", "-m", "notes")

    # a staged secret (git add -f: .gitignore keeps it out otherwise) is refused, by name, without its value
    assert git(repo, "add", "-f", leaked).returncode == 0
    staged = git(repo, "diff", "--cached", "--name-only").stdout.split()
    assert staged == [leaked]
    res = guard_cli(repo, *staged)
    cases += 1
    assert res.returncode == 1
    assert leaked in res.stderr and "git rm --cached" in res.stderr and "Traceback" not in res.stderr
    assert value not in res.stdout + res.stderr
    assert guard.refused(repo, staged) == secretslib.tracked_files(repo, [repo / "secrets"])  # one rule

    # pre-commit itself, with the repository's config, refuses the commit
    if shutil.which("pre-commit"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home")}
        env.pop("READINESS_PROJECT_DIR", None)
        pc = subprocess.run(["pre-commit", "run"], cwd=repo, capture_output=True, text=True, env=env)
        LEDGER.output("pre-commit run", pc.stdout, pc.stderr)
        cases += 1
        assert pc.returncode == 1, pc.stdout + pc.stderr
        assert leaked in pc.stdout and value not in pc.stdout + pc.stderr
        hooked = subprocess.run(["pre-commit", "install"], cwd=repo, capture_output=True, text=True, env=env)
        assert hooked.returncode == 0, hooked.stderr
        commit = subprocess.run(["git", "commit", "-q", "-m", "leak"], cwd=repo, capture_output=True, text=True,
                                env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                                     "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})
        LEDGER.output("git commit (pre-commit hook)", commit.stdout, commit.stderr)
        cases += 1
        assert commit.returncode != 0, "git commit went through the hook"
        assert leaked not in git(repo, "ls-tree", "-r", "--name-only", "HEAD").stdout
    via = "guard and pre-commit (hook installed: `git commit` refused)" if shutil.which("pre-commit") else "guard"

    # what CI runs refuses it too: `invoke secrets` stops, preflight reports secret.tracked
    res = run(repo, "secrets")
    cases += 1
    assert res.returncode != 0 and leaked in res.stderr and "Traceback" not in res.stderr
    pre = run(repo, "preflight", "--json")
    cases += 1
    ids = {(f["id"], f["file"]) for f in json.loads(pre.stdout)["findings"]}
    assert pre.returncode == 1 and ("secret.tracked", leaked) in ids
    assert value not in pre.stdout + pre.stderr

    # once untracked, everything passes again
    git(repo, "rm", "-q", "--cached", leaked)
    assert guard_cli(repo).returncode == 0
    LEDGER.done("hygiene.guard", cases, f"refused by the {via}, by `invoke secrets` and by preflight "
                "(`secret.tracked`); allowed files pass; the value never printed")


def documented_modes():
    """File -> mode from secrets/README.md: the registry table, the rootCA note, the file-modes list."""
    text = (REPO / "secrets" / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    header = next(line for line in text.splitlines() if line.startswith("| Secret"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    i_file, i_mode, i_policy = cols.index("File"), cols.index("Host mode"), cols.index("Character policy")
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        out[cells[i_file].strip("`")] = int(re.match(r"0[0-7]{3}", cells[i_mode]).group(0), 8)
        for side, mode in re.findall(r"`([\w.]+\.password)` \((0[0-7]{3})\)", cells[i_policy]):
            out[str(os.path.join(os.path.dirname(cells[i_file].strip("`")), side))] = int(mode, 8)
    m = re.search(r"`(secrets/certs/rootCA\.pem)`[^()]*\([^)]*?(0[0-7]{3})\)", text, re.S)
    out[m.group(1)] = int(m.group(2), 8)
    m = re.search(r"`(secrets/)` and `(secrets/certs/)`: \*\*(0[0-7]{3})\*\*", text)
    out[m.group(1).rstrip("/")] = out[m.group(2).rstrip("/")] = int(m.group(3), 8)
    return out


def test_generated_files_have_the_documented_modes(repo):
    LEDGER.start("hygiene.modes")
    assert run(repo, "secrets").returncode == 0
    assert run(repo, "certs").returncode == 0
    documented = documented_modes()
    assert len(documented) > 10
    wrong = []
    for rel, want in sorted(documented.items()):
        have = stat.S_IMODE((repo / rel).stat().st_mode)
        if have != want:
            wrong.append(f"{rel}: documented {want:04o}, is {have:04o}")
    assert not wrong, wrong
    LEDGER.done("hygiene.modes", len(documented), "every secret file, key, CA copy and directory has the mode "
                "its row in secrets/README.md documents")
