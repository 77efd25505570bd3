"""The documents cannot drift from the code: every check of ``python -m tools.docs`` holds on the
repository, and bites on a copy broken on purpose.

``tools/docs`` renders each table that lists what the code holds -- tasks, Nox sessions,
finding ids, secrets, what CI runs -- between marker comments, and checks what it does not
render: links and anchors, the commands named in code, ``.env.example``, the spec's
traceability table, the rotation section of the runbook. ``nox -s lint`` runs
``python -m tools.docs --check``; the tests here prove that each check still fails when it
should, and name the problem it reports.

Nothing here needs a Docker engine: the stack's model is what ``docker compose config``
renders, which needs only the Compose CLI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from readiness.preflight.catalog import CATALOG, Entry
from tools.docs import ci, commands, envexample, links, readme, secrets, sessions, tasks, traceability
from tools.docs.markdown import Doc, code_spans, markdown_files, section, tables
from tools.docs.render import RUNBOOK, SECRETS_README, render_all, render_document, stale
from tools.docs.sources import Sources

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = "OPERATIONS.md"
#: Where the original seed PRD and plan are, when a maintainer wants to compare them with the
#: translations (opt-in: the tests never look outside the repository on their own).
SEEDS_ENV = "READINESS_SEEDS_DIR"


def assert_no_problems(problems: list[str]) -> None:
    """Fail with every problem on its own line (pytest's list diff would show only the first)."""
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def read(rel: str) -> str:
    return (REPO / rel).read_text(encoding="utf-8")


def first_column(text: str, title: str | None = None) -> list[str]:
    """The first code span of each row of the tables under heading ``title`` (None: anywhere)."""
    doc = Doc.parse(text) if title is None else section(Doc.parse(text), title)
    return [spans[0] for _, rows in tables(doc) for row in rows if (spans := code_spans(row[0]))]


@pytest.fixture(scope="module")
def sources() -> Sources:
    """The repository's sources, read once for the module (tests that change one make their own)."""
    return Sources(REPO)


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """A copy of the stack's files, to break."""
    dest = tmp_path / "stack"
    dest.mkdir()
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "infra", dest / "infra")
    return dest


# ------------------------------------------------------------------------- the repository as it is


def test_every_generated_block_is_what_the_code_renders(sources, compose_cli):
    changed, problems = render_all(sources, write=False)
    assert_no_problems(problems)
    assert changed == []


def test_python_m_tools_docs_check_passes_on_the_repository(compose_cli):
    """What ``nox -s lint`` runs: the entry point renders and checks everything, and writes nothing."""
    res = subprocess.run([sys.executable, "-m", "tools.docs", "--check"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "every generated block is up to date" in res.stdout


def test_runbook_has_one_troubleshooting_row_per_finding_id():
    assert first_column(read(RUNBOOK), "Troubleshooting") == list(CATALOG)


def test_secrets_readme_lists_exactly_the_compose_secrets(sources, compose_cli):
    registry = sorted(name for name, spec in sources.model.secrets.items() if spec.get("file"))
    assert len(registry) >= 14, registry
    assert first_column(read(SECRETS_README), "Secrets registry") == registry


def test_operations_tables_are_rendered_from_tasks_py_and_the_noxfile(sources):
    text = read(OPERATIONS)
    commands_shown = {" ".join(span.split()[:2]) for span in first_column(text)}
    assert {f"invoke {t.name}" for t in sources.tasks} <= commands_shown, "a task has no row"
    assert [f"nox -s {s.name}" for s in sources.sessions] == first_column(text, "Validation sessions")


def test_env_example_lists_exactly_the_stack_variables_each_with_a_comment(sources, compose_cli):
    assert "LOCAL_DOMAIN" in sources.variables, sources.variables
    assert_no_problems(envexample.problems(sources.variables, REPO / ".env.example"))


def test_every_relative_markdown_link_resolves():
    files = markdown_files(REPO)
    assert REPO / RUNBOOK in files and REPO / "README.md" in files
    assert_no_problems(links.problems(REPO, files))


def test_every_invoke_task_and_nox_session_named_in_the_documents_exists(sources):
    assert_no_problems(commands.problems(REPO, markdown_files(REPO), [t.name for t in sources.tasks],
                                         [s.name for s in sources.sessions]))


def test_spec_traces_every_requirement_id_to_existing_files_tests_and_tasks(sources):
    paths = [REPO / rel for rel in traceability.REQUIREMENT_DOCS]
    assert_no_problems([f"{p.relative_to(REPO)} is missing" for p in paths if not p.is_file()])
    ids = traceability.requirement_ids(paths)
    for expected in ("REQ-BOOT-001", "REQ-BOOT-008", "REQ-PRD-FUN-06", "REQ-PRD-MET-04", "STORY-03",
                     "TASK-007", "VAL-PLN-004"):
        assert expected in ids, f"{expected} not found in {[str(p) for p in paths]}"
    assert_no_problems(traceability.problems(ids, sources.doc(traceability.SPEC), REPO,
                                             [t.name for t in sources.tasks], [s.name for s in sources.sessions]))


def test_seed_ids_are_all_in_the_repository_prd_and_plan():
    """The translated PRD and plan keep every seed id (so the check above needs only the repository).

    A maintainer's check, opt-in: it runs when ``$READINESS_SEEDS_DIR`` names the seeds."""
    if not os.environ.get(SEEDS_ENV):
        pytest.skip(f"opt-in: set ${SEEDS_ENV} to the directory of the seed PRD and plan")
    seeds = sorted(p for p in Path(os.environ[SEEDS_ENV]).glob("*.txt") if p.is_file())
    assert seeds, f"${SEEDS_ENV}={os.environ[SEEDS_ENV]} holds no seed file (*.txt)"
    docs = [REPO / rel for rel in traceability.REQUIREMENT_DOCS]
    missing = traceability.requirement_ids(seeds) - traceability.requirement_ids(docs)
    assert not missing, f"ids of the seeds missing from {traceability.REQUIREMENT_DOCS}: {sorted(missing)}"


def test_the_runbook_says_how_to_rotate_every_generated_secret(sources, compose_cli):
    assert_no_problems(secrets.rotation_problems(sources.model, sources.doc(RUNBOOK), RUNBOOK))


def test_ci_runs_the_readme_commands_as_they_read():
    """``.ci/run`` takes both commands from the README through this entry point, and runs them."""
    script = read(".ci/run")
    for which in readme.COMMANDS:
        res = subprocess.run([sys.executable, "-m", "tools.docs.readme", which], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0 and res.stdout.strip() == readme.command(read("README.md"), which), res.stderr
        assert f"$(python -m tools.docs.readme {which})" in script
    assert readme.command(read("README.md"), "test").startswith("nox -s ")
    assert 'bash -c "$readme_test_command"' in script


# ------------------------------------------------------------------------- each check bites


def test_bites_on_a_variable_missing_from_env_example(sources, compose_cli, tmp_path):
    example = tmp_path / ".env.example"
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    example.write_text("\n".join(ln for ln in lines if not ln.startswith("VALKEY_PORT=")) + "\n")
    assert envexample.problems(sources.variables, example) == [
        "VALKEY_PORT: the stack references it but .env.example does not list it"]


def test_bites_on_a_new_compose_variable_an_uncommented_one_and_a_stale_one(stack, compose_cli):
    cache = stack / "infra" / "07-cache" / "docker-compose.yml"
    text = cache.read_text(encoding="utf-8")
    assert "--maxmemory-policy allkeys-lru" in text
    cache.write_text(text.replace("--maxmemory-policy allkeys-lru", "--maxmemory-policy ${VALKEY_POLICY:-allkeys-lru}"))
    example = stack / ".env.example"
    lines = example.read_text(encoding="utf-8").splitlines()
    i = lines.index(next(ln for ln in lines if ln.startswith("HTTP_PORT=")))
    del lines[i - 1]  # its comment
    example.write_text("\n".join(lines) + "\n# An old knob.\nOLD_KNOB=1\n")
    problems = envexample.problems(Sources(stack).variables, example)
    assert "VALKEY_POLICY: the stack references it but .env.example does not list it" in problems
    assert any(p.startswith("HTTP_PORT: .env.example:") and "no comment line" in p for p in problems), problems
    assert any(p.startswith("OLD_KNOB: in .env.example:") and "does not use it" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_bites_on_a_secret_added_to_the_registry(stack, compose_cli):
    """A new secret gets its row (and needs its rotation procedure) once the README is rendered."""
    with (stack / "docker-compose.yml").open("a", encoding="utf-8") as f:
        f.write("  undocumented_token:\n    file: ./secrets/undocumented_token\n")
    cache = stack / "infra" / "07-cache" / "docker-compose.yml"
    mount = "    secrets:\n      - valkey_password\n"
    assert cache.read_text(encoding="utf-8").count(mount) == 1
    cache.write_text(cache.read_text(encoding="utf-8").replace(mount, mount + "      - undocumented_token\n"))
    broken = Sources(stack)
    [problem] = stale(SECRETS_README, read(SECRETS_README), broken)
    assert problem.startswith(f"{SECRETS_README}:") and "the secrets block is not what python -m tools.docs " \
        "renders from the secrets registry of docker-compose.yml" in problem, problem
    assert "+ | `undocumented_token` | `secrets/undocumented_token` | valkey (root, keeps DAC_OVERRIDE) |" in problem
    assert secrets.rotation_problems(broken.model, Doc.parse(read(RUNBOOK)), RUNBOOK) == [
        f"{RUNBOOK} section 'Rotate a secret' does not say how to rotate secret undocumented_token"]


def test_bites_on_a_hand_edited_secrets_row(sources, compose_cli):
    text = read(SECRETS_README)
    row = next(ln for ln in text.splitlines() if ln.startswith("| `valkey_password` |"))
    for edited in (text.replace(row, row + "\n" + row.replace("valkey_password", "alertmanager_smtp")),
                   text.replace(row + "\n", ""), text.replace(row, row.replace("0400", "0600"))):
        [problem] = stale(SECRETS_README, edited, sources)
        assert "the secrets block is not what" in problem, problem


def test_bites_on_a_renamed_invoke_task(tmp_path, sources):
    source = (REPO / "tasks.py").read_text(encoding="utf-8")
    assert len(re.findall(r"(?m)^def status\(", source)) == 1
    renamed = tmp_path / "tasks.py"
    renamed.write_text(re.sub(r"(?m)^def status\(", "def service_state(", source))
    broken = Sources(REPO)
    broken.tasks = tasks.load_tasks(renamed)
    names = [t.name for t in broken.tasks]
    assert "service-state" in names and "status" not in names
    [problem] = stale("README.md", read("README.md"), broken)
    assert "the tasks block is not what" in problem and "+ | `invoke service-state" in problem, problem
    assert stale(OPERATIONS, read(OPERATIONS), broken) == [f"{OPERATIONS}: tasks:begin only= names no task: status"]
    named = commands.problems(REPO, [REPO / OPERATIONS], names, [s.name for s in sources.sessions])
    assert named and all("`invoke status` names no Invoke task" in p for p in named), named


NEW_TASK = '''

from invoke import task as _plain_task  # noqa: E402


@_plain_task(help={"hard": "stop first"})
def restart(c, service, hard=False):
    """Restart one service."""
'''


def test_bites_on_a_new_task_a_new_option_and_a_hand_edited_row(tmp_path, sources):
    """A task or option added to tasks.py shows in the rendered tables; a hand edit is stale."""
    copy = tmp_path / "tasks.py"
    copy.write_text((REPO / "tasks.py").read_text(encoding="utf-8") + NEW_TASK)
    broken = Sources(REPO)
    broken.tasks = tasks.load_tasks(copy)
    assert "| `invoke restart SERVICE [--hard]` | Restart one service. |" in render_document(read("README.md"), broken)
    assert "`--hard` (`-h`): stop first" in render_document(read(OPERATIONS), broken)
    for rel in ("README.md", OPERATIONS):
        assert any("+ | `invoke restart" in p for p in stale(rel, read(rel), broken))
    row = next(ln for ln in read("README.md").splitlines() if ln.startswith("| `invoke logs"))
    edited = read("README.md").replace(row, "| `invoke logs` | the last lines of every service |")
    [problem] = stale("README.md", edited, sources)
    assert problem.endswith("\n    - | `invoke logs` | the last lines of every service |\n    + " + row), problem


def test_bites_on_a_new_nox_session_named_by_its_name_argument(tmp_path, sources):
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text((REPO / "noxfile.py").read_text(encoding="utf-8") + '\n\n@nox.session(name="docs-check", '
                       'python=False)\ndef docs_check(session):\n    """Check the documents."""\n')
    broken = Sources(REPO)
    broken.sessions = sessions.load(noxfile)
    assert [s.name for s in broken.sessions][-1] == "docs-check"
    [problem] = stale(OPERATIONS, read(OPERATIONS), broken)
    assert "the sessions block is not what" in problem and "+ | `nox -s docs-check` | Check the documents. |" in problem


def test_bites_on_a_finding_id_without_a_troubleshooting_row(sources):
    broken = Sources(REPO)
    broken.catalog = dict(CATALOG, **{"disk.full": Entry("The disk is full", "`disk full`", "a full disk", "Free it")})
    [problem] = stale(RUNBOOK, read(RUNBOOK), broken)
    assert "the troubleshooting block is not what python -m tools.docs renders from readiness/preflight/catalog.py" \
        in problem and problem.endswith("+ | `disk.full` | The disk is full | `disk full` | a full disk | Free it |")
    text = read(RUNBOOK)
    row = next(ln for ln in text.splitlines() if ln.startswith("| `port.in-use` |"))
    [problem] = stale(RUNBOOK, text.replace(row + "\n", ""), sources)
    assert problem.endswith("+ " + row), problem


def test_bites_on_a_ci_step_that_runs_something_else(sources):
    script = read(".ci/run")
    assert script.count('nox -s e2e"') == 1
    broken = Sources(REPO)
    broken.ci_script = script.replace('nox -s e2e"', 'nox -s e2e && nox -s validate"')
    [problem] = stale(OPERATIONS, read(OPERATIONS), broken)
    assert "the ci block is not what python -m tools.docs renders from .ci/run and noxfile.py" in problem
    assert "`nox -s validate`" in problem, problem
    broken.ci_script = script.replace('nox -s e2e"', 'nox -s smoke"')
    [problem] = stale(OPERATIONS, read(OPERATIONS), broken)
    assert "'nox -s smoke' runs Nox session(s) noxfile.py does not have: smoke" in problem, problem


def test_bites_on_a_changed_readme_test_command(sources):
    """CI runs the README's test command as it reads: the CI list shows the new one."""
    broken = Sources(REPO)
    broken.readme = read("README.md").replace("nox -s lint config validate tests e2e", "nox -s lint tests")
    assert readme.command(broken.readme, "test") == "nox -s lint tests"
    [problem] = stale(OPERATIONS, read(OPERATIONS), broken)
    assert "the ci block is not what" in problem and "the README's test command `nox -s lint tests`" in problem


CI_SAMPLE = """\
#!/usr/bin/env bash
step "packages"
#: For the checks.
apt-get install -y -qq --no-install-recommends \\
  mkcert yamllint >/dev/null   # a comment: not-a-package
command -v node >/dev/null || apt-get install -y nodejs
end
step "tools"
pip install -q -e '.[test,dev]'
readme_test_command=$(python -m tools.docs.readme test)
end
step "tests"
#: As root, then as a user.
bash -c "$readme_test_command"
as user ". .venv/bin/activate && nox -s tests -- tests/test_x.py"
nohup dockerd --storage-driver=vfs >/tmp/d.log 2>&1 &
end
step "figures"
for bench in benchmarks/bench_*.py; do python "$bench"; done
end
"""


def test_the_ci_list_says_what_each_step_runs(sources):
    rendered = ci.render(CI_SAMPLE, "```sh\nmake install\n```\n\n```sh\nnox -s lint e2e\n```\n", sources.sessions, {})
    assert rendered.splitlines() == [
        "1. **packages.** For the checks. Runs: `apt-get install -y -qq --no-install-recommends mkcert yamllint`; "
        "`apt-get install -y nodejs`.",
        "2. **tools.** Runs: `pip install -q -e '.[test,dev]'`.",
        "3. **tests.** As root, then as a user. Runs: the README's test command `nox -s lint e2e` (`e2e` runs "
        "`pytest -m e2e -x`); `nox -s tests -- tests/test_x.py` (`tests` runs `pytest -m 'not e2e' --durations=15`); "
        "`dockerd --storage-driver=vfs`.",
        "4. **figures.** Runs: `benchmarks/bench_*.py`.",
    ]


def test_bites_on_a_document_without_its_block_an_unknown_kind_or_an_open_marker(sources):
    text = read("README.md")
    begin = text.index("<!-- tasks:begin -->")
    end = text.index("<!-- tasks:end -->") + len("<!-- tasks:end -->")
    assert stale("README.md", text[:begin] + text[end:], sources) == [
        "README.md has no generated tasks block (<!-- tasks:begin --> ... <!-- tasks:end -->)"]
    assert stale("x.md", "<!-- weather:begin -->\n<!-- weather:end -->\n", sources) == [
        "x.md: unknown block kind 'weather' (one of tasks, sessions, troubleshooting, secrets, ci)"]
    assert stale("x.md", "<!-- tasks:begin -->\n| stale |\n", sources) == [
        "x.md: <!-- tasks:begin --> has no <!-- tasks:end -->"]
    assert stale("x.md", "<!-- tasks:begin only=nothing -->\n<!-- tasks:end -->\n", sources) == [
        "x.md: tasks:begin only= names no task: nothing"]


def test_rendering_rewrites_the_blocks_and_nothing_else(tmp_path, sources):
    for rel in ("README.md", OPERATIONS, RUNBOOK, SECRETS_README):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, tmp_path / rel)
    copy = Sources(tmp_path)
    for name in ("tasks", "sessions", "catalog", "ci_script"):
        setattr(copy, name, getattr(sources, name))
    readme_path = tmp_path / "README.md"
    row = next(ln for ln in readme_path.read_text().splitlines() if ln.startswith("| `invoke logs"))
    readme_path.write_text(readme_path.read_text().replace(row, "| `invoke logs` | hand-written |") + "\nTail.\n")
    text = readme_path.read_text()
    changed, problems = render_all(copy, write=True, only=("README.md",))
    assert changed == ["README.md"] and problems == []
    assert readme_path.read_text() == text.replace("| `invoke logs` | hand-written |", row)


def test_bites_on_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n\n## Second part\n\n## `code` in a heading\n")
    (tmp_path / "a.md").write_text(
        "[ok](docs/b.md) [ok](docs/b.md#second-part) [web](https://example.invalid/x.md) [self](#top)\n"
        "# Top\n"
        "[gone](docs/missing.md) `[code](nope.md)` [ok](docs/b.md#code-in-a-heading)\n"
        "```\n[fenced](nope.md)\n```\n"
        "[bad anchor](docs/b.md#third-part)\n"
        "\n[ref]: ./nowhere.md\n")
    assert links.problems(tmp_path) == [
        "a.md:3: link to docs/missing.md does not resolve (docs/missing.md is missing)",
        "a.md:7: link to docs/b.md#third-part: no heading #third-part in docs/b.md",
        "a.md:9: link to ./nowhere.md does not resolve (./nowhere.md is missing)",
    ]


def test_bites_on_a_document_naming_a_task_or_session_that_does_not_exist(tmp_path, sources):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `invoke up --timeout 9`, then `invoke restart`.\n\n```sh\ninvoke status && invoke validate\n"
                   "nox -s lint config smoke -- -k x\n```\nInvoke the tasks; `nox -s tests`.\n")
    assert commands.problems(tmp_path, [doc], [t.name for t in sources.tasks], [s.name for s in sources.sessions]) == [
        "doc.md:1: `invoke restart` names no Invoke task",
        "doc.md:4: `invoke validate` names no Invoke task",
        "doc.md:5: `nox -s smoke` names no Nox session",
    ]


def test_bites_on_an_untraced_id_and_on_names_that_do_not_exist(tmp_path, sources):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_real():\n    pass\n")
    (tmp_path / "real.md").write_text("")
    spec = ("# Spec\n\n## Traceability\n\n| ID | Requirement | Files | Task | Tests |\n|---|---|---|---|---|\n"
            "| REQ-BOOT-001 | a | `real.md` | `invoke secrets` | `tests/test_x.py::test_real` |\n"
            "| TASK-001 | b | `gone.md` | `invoke nothing` | `tests/test_x.py::test_gone` |\n"
            "| VAL-PLN-001 | c | | `nox -s lint nowhere` | `tests/test_y.py::test_real` |\n")
    assert traceability.problems({"REQ-BOOT-001", "TASK-001", "VAL-PLN-001", "STORY-09"}, Doc.parse(spec), tmp_path,
                                 [t.name for t in sources.tasks], [s.name for s in sources.sessions]) == [
        "TASK-001: file gone.md named in the traceability table does not exist",
        "TASK-001: tests/test_x.py defines no test test_gone",
        "TASK-001: task `invoke nothing` names no Invoke task",
        "VAL-PLN-001: test file tests/test_y.py (for tests/test_y.py::test_real) does not exist",
        "VAL-PLN-001: `nox -s lint nowhere` names no Nox session",
        f"STORY-09: no row in the traceability table of {traceability.SPEC}",
    ]


def test_bites_on_a_secret_without_a_rotation_procedure(sources, compose_cli):
    text = read(RUNBOOK)
    rotation = section(Doc.parse(text), "Rotate a secret").text
    assert "`valkey_password`" in rotation
    broken = text.replace(rotation, rotation.replace("`valkey_password`", "the Valkey password"))
    assert secrets.rotation_problems(sources.model, Doc.parse(broken), RUNBOOK) == [
        f"{RUNBOOK} section 'Rotate a secret' does not say how to rotate secret valkey_password"]
