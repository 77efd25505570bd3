"""Secret hygiene in git and on disk.

* A commit that tracks a file under ``secrets/`` (other than README.md/.gitkeep) is refused by
  ``python3 -m readiness.guard`` run on ``git diff --cached --name-only`` in a real repository,
  by the toolkit CI runs (``invoke secrets`` refuses, preflight reports ``secret.tracked``),
  and by pre-commit itself with the repository's ``.pre-commit-config.yaml`` (its own test:
  pre-commit comes with the ``dev`` extra; missing, it fails in CI and is skipped elsewhere).
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
from conftest import REPO, clean_env, require_tool

from readiness import guard
from readiness.prepare import secrets as secretslib
from tools.docs.markdown import Doc, code_spans, inline_text, tables

from .support import LEDGER, run

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env=clean_env(GIT_IDENTITY))


def guard_cli(repo, *files: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "readiness.guard", *files], cwd=repo, capture_output=True,
                         text=True, env=clean_env({"PYTHONPATH": str(REPO)}), stdin=subprocess.DEVNULL)
    LEDGER.output("python -m readiness.guard", res.stdout, res.stderr)
    return res


@pytest.fixture
def git_repo(repo):
    """The repository's stack (``repo`` fixture) as a fresh git repository with a first commit."""
    require_tool("git", "the guard is tested on a real git repository")
    assert git(repo, "init", "-q").returncode == 0
    shutil.copy2(REPO / ".pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    assert git(repo, "add", "-A").returncode == 0
    res = git(repo, "commit", "-q", "-m", "initial")
    assert res.returncode == 0, res.stderr
    return repo


LEAKED = "secrets/valkey_password"


def stage_a_secret(repo) -> str:
    """Generate the secrets and force-add one of them (``.gitignore`` keeps it out otherwise)."""
    assert run(repo, "env").returncode == 0
    assert run(repo, "secrets").returncode == 0
    assert git(repo, "add", "-f", LEAKED).returncode == 0
    return (repo / LEAKED).read_text()


def test_a_commit_tracking_a_secret_is_refused(git_repo):
    row = LEDGER.row("hygiene.guard")
    row.lost_note = "n/a (a refused commit)"
    repo = git_repo
    assert run(repo, "env").returncode == 0
    assert run(repo, "secrets").returncode == 0

    # allowed files and ordinary files pass
    (repo / "secrets" / "certs" / ".gitkeep").touch()
    (repo / "notes.txt").write_text("hello\n")
    git(repo, "add", "notes.txt", "secrets/certs/.gitkeep")
    staged = git(repo, "diff", "--cached", "--name-only").stdout.split()
    ok = guard_cli(repo, *staged)
    row.cases += 1
    row.check(ok.returncode == 0, "the guard lets README.md/.gitkeep and ordinary files through", ok.stderr)
    git(repo, "commit", "-q", "-m", "notes")

    # a staged secret is refused, by name, without its value
    value = stage_a_secret(repo)
    staged = git(repo, "diff", "--cached", "--name-only").stdout.split()
    assert staged == [LEAKED]
    res = guard_cli(repo, *staged)
    row.cases += 1
    row.check(res.returncode == 1 and LEAKED in res.stderr and "git rm --cached" in res.stderr
              and "Traceback" not in res.stderr, "`python -m readiness.guard` refuses a staged secret by name, "
              "with the fix `git rm --cached`", res.stderr)
    row.check(value not in res.stdout + res.stderr, "no output printed the secret's value")
    row.check(guard.refused(repo, staged) == secretslib.tracked_files(repo, [repo / "secrets"]),
              "the guard and the toolkit apply one rule (`secrets.tracked_files`)")

    # what CI runs refuses it too: `invoke secrets` stops, preflight reports secret.tracked
    res = run(repo, "secrets")
    row.cases += 1
    row.check(res.returncode != 0 and LEAKED in res.stderr and "Traceback" not in res.stderr,
              "`invoke secrets` refuses to run while a secret is tracked", res.stderr)
    pre = run(repo, "preflight", "--json")
    row.cases += 1
    ids = {(f["id"], f["file"]) for f in json.loads(pre.stdout)["findings"]}
    row.check(pre.returncode == 1 and ("secret.tracked", LEAKED) in ids, "preflight reports `secret.tracked`",
              pre.stdout)
    row.check(value not in pre.stdout + pre.stderr, "no output printed the secret's value")

    # once untracked, everything passes again
    git(repo, "rm", "-q", "--cached", LEAKED)
    row.check(guard_cli(repo).returncode == 0, "once untracked, the guard passes again")


def test_pre_commit_refuses_a_commit_tracking_a_secret(git_repo):
    """pre-commit itself, with the repository's ``.pre-commit-config.yaml``: ``pre-commit run``
    and the installed hook (``git commit``) refuse a staged secret."""
    row = LEDGER.row("hygiene.guard")
    row.lost_note = "n/a (a refused commit)"
    pre_commit = require_tool("pre-commit", "the repository's hook runs through pre-commit (the `dev` extra)")
    repo = git_repo
    value = stage_a_secret(repo)
    env = clean_env({"PYTHONPATH": str(REPO), "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
                     **GIT_IDENTITY})
    pc = subprocess.run([pre_commit, "run"], cwd=repo, capture_output=True, text=True, env=env)
    LEDGER.output("pre-commit run", pc.stdout, pc.stderr)
    row.cases += 1
    row.check(pc.returncode == 1 and LEAKED in pc.stdout, "`pre-commit run` refuses a staged secret",
              pc.stdout + pc.stderr)
    row.check(value not in pc.stdout + pc.stderr, "no output printed the secret's value")
    hooked = subprocess.run([pre_commit, "install"], cwd=repo, capture_output=True, text=True, env=env)
    assert hooked.returncode == 0, hooked.stderr
    commit = subprocess.run(["git", "commit", "-q", "-m", "leak"], cwd=repo, capture_output=True, text=True, env=env)
    LEDGER.output("git commit (pre-commit hook)", commit.stdout, commit.stderr)
    row.cases += 1
    row.check(commit.returncode != 0 and LEAKED not in git(repo, "ls-tree", "-r", "--name-only", "HEAD").stdout,
              "with the hook installed, `git commit` is refused and the secret never enters a commit",
              commit.stdout + commit.stderr)


def documented_modes():
    """File -> mode from secrets/README.md: the registry table (rendered from the registry by
    ``python -m tools.docs``), the rootCA note, the file-modes list."""
    text = (REPO / "secrets" / "README.md").read_text()
    [(header, rows)] = [(h, r) for h, r in tables(Doc.parse(text)) if h[:1] == ["Secret"]]
    i_file, i_value = header.index("File"), header.index("Value")
    i_mode = next(i for i, h in enumerate(header) if h.startswith("Host mode"))
    out = {}
    for row in rows:
        file, cell = code_spans(row[i_file])[0], inline_text(row[i_mode])
        # "0400 (invoke run as root) / 0444 (as another user)": the mode for whoever runs this.
        modes = re.findall(r"0[0-7]{3}", cell)
        mode = modes[1] if " / " in cell and len(modes) > 1 and os.geteuid() != 0 else modes[0]
        out[file] = int(mode, 8)
        for side, side_mode in re.findall(r"(secrets/[\w./-]+\.password) \((0[0-7]{3})\)", inline_text(row[i_value])):
            out[side] = int(side_mode, 8)
    m = re.search(r"`(secrets/certs/rootCA\.pem)`[^()]*\([^)]*?(0[0-7]{3})\)", text, re.S)
    out[m.group(1)] = int(m.group(2), 8)
    m = re.search(r"`(secrets/)` and `(secrets/certs/)`: \*\*(0[0-7]{3})\*\*", text)
    out[m.group(1).rstrip("/")] = out[m.group(2).rstrip("/")] = int(m.group(3), 8)
    return out


def test_generated_files_have_the_documented_modes(repo):
    row = LEDGER.row("hygiene.modes")
    row.lost_note = "n/a (reads modes only)"
    assert run(repo, "secrets").returncode == 0
    assert run(repo, "certs").returncode == 0
    documented = documented_modes()
    assert len(documented) > 10
    wrong = []
    for rel, want in sorted(documented.items()):
        have = stat.S_IMODE((repo / rel).stat().st_mode)
        if have != want:
            wrong.append(f"{rel}: documented {want:04o}, is {have:04o}")
    row.cases += len(documented)
    row.check(not wrong, "every secret file, key, CA copy and directory has the mode its row in "
              "secrets/README.md documents", wrong)
