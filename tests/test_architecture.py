"""The package keeps the shape ARCHITECTURE.md describes: no import cycle, every import follows
the layer rule ("The toolkit's layers"), and the document's tree lists every module.

Engine-free and import-free: ``readiness/`` is read with ``ast``, never imported, so a cycle
that Python happens to survive at import time (a function-level import, one under
``TYPE_CHECKING``) is caught all the same. Each check is a pure function of the import graph,
and the tests at the end run it on small broken graphs to prove that it bites.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "readiness"
ARCHITECTURE = REPO / "ARCHITECTURE.md"

#: The layers of the package, lowest first; each names the packages and top-level modules in it.
#: A module imports its own package, or a layer below its own. Inside the foundation and the
#: entry layer, modules may import each other (the cycle check keeps that sane); the packages of
#: any other layer never import each other (``preflight`` and ``run`` are siblings).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("readiness", "readiness.errors", "readiness.enums", "readiness.output"),
    ("readiness.system",),
    ("readiness.stack",),
    ("readiness.prepare",),
    ("readiness.preflight", "readiness.run"),
    ("readiness.cli", "readiness.steps", "readiness.guard"),
)
#: Layers whose members may import each other (foundation, entry points).
OPEN_LAYERS = (0, len(LAYERS) - 1)


# ------------------------------------------------------------------------- the import graph


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package at ``root`` (a package by its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, package: str, known: dict[str, Path]) -> list[str]:
    """The dotted names one import statement reaches: a submodule imported by name, else the
    module the names come from."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, counting every import statement at
    any depth: module level, inside functions, under ``if TYPE_CHECKING``."""
    known = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, package, known):
                while target and target not in known:  # `import pkg.x.y` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


# ------------------------------------------------------------------------- the checks (pure)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, one per group of modules that import each other (Tarjan's strongly
    connected components), each as a path ``a -> b -> ... -> a`` through the group."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path(graph, group) for group in sorted(groups)]


def _path(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A cycle through ``group`` that starts and ends at its first module."""
    start, members = group[0], set(group)
    seen, todo = {start: [start]}, [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return seen[node] + [start]
            if nxt not in seen:
                seen[nxt] = seen[node] + [nxt]
                todo.append(nxt)
    return group  # pragma: no cover - a strongly connected group always closes


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer, unit) of a module: the unit is the layer entry it belongs to (its package)."""
    for number, units in enumerate(LAYERS):
        for unit in sorted(units, key=len, reverse=True):
            if module == unit or (unit != "readiness" and module.startswith(unit + ".")):
                return number, unit
    return None


def layer_problems(graph: dict[str, set[str]]) -> list[str]:
    """Every module without a layer, and every import the layer rule forbids."""
    problems = [f"{m}: in no layer (add it to LAYERS here and to ARCHITECTURE.md)"
                for m in sorted(graph) if layer_of(m) is None]
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is None or there is None or here[1] == there[1] or there[0] < here[0]:
                continue
            if there[0] == here[0] and here[0] in OPEN_LAYERS:
                continue
            why = "a sibling package" if there[0] == here[0] else "a higher layer"
            problems.append(f"{module} imports {target}: {why} ({there[1]})")
    return problems


def documented_tree(text: str) -> list[str]:
    """The entries of the ``readiness/`` tree in ARCHITECTURE.md's toolkit section, as paths
    relative to the package (``stack/compose.py``, ``preflight/check_*.py``, ``run/verify/``)."""
    block = re.search(r"## The readiness toolkit\n+```text\n(.*?)\n```", text, re.S)
    assert block, "ARCHITECTURE.md has no ```text tree under \"## The readiness toolkit\""
    entries, parents, inside = [], [], False
    for line in block.group(1).splitlines():
        name = line.strip().split("  ")[0]
        if name == "readiness/":
            inside = True
            continue
        depth = (len(line) - len(line.lstrip())) // 2 - 1
        if not inside or depth < 0:
            inside = inside and depth >= 0
            continue
        parents = parents[:depth]
        entries.append("".join(parents) + name)
        if name.endswith("/"):
            parents.append(name)
    return entries


def tree_problems(root: Path, entries: list[str]) -> list[str]:
    """Modules of the package the tree does not list, and entries that name nothing."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if p.name != "__init__.py")
    leaves = [e for e in entries if e.endswith("/") and not any(o != e and o.startswith(e) for o in entries)]
    problems = [f"readiness/{f}: not in ARCHITECTURE.md's tree" for f in files
                if not any(fnmatch.fnmatchcase(f, e) for e in entries) and not any(f.startswith(d) for d in leaves)]
    problems += [f"ARCHITECTURE.md's tree names readiness/{e}, which does not exist" for e in entries
                 if not (any(fnmatch.fnmatchcase(f, e) for f in files) or (e.endswith("/") and (root / e).is_dir()))]
    return problems


# ------------------------------------------------------------------------- the package as it is


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and graph["readiness.steps"], "the import graph was not read"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_every_import_follows_the_layer_rule():
    problems = layer_problems(import_graph(PACKAGE))
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_the_architecture_document_lists_every_module():
    entries = documented_tree(ARCHITECTURE.read_text(encoding="utf-8"))
    assert "stack/compose.py" in entries and "run/verify/" in entries, entries
    problems = tree_problems(PACKAGE, entries)
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


def imports_of(root: Path, top: str) -> list[str]:
    """``module: import`` for every import of a top-level package ``top`` in the package at ``root``."""
    found = []
    for name, path in sorted(modules(root).items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{name}: {n}" for n in names if n == top or n.startswith(top + ".")]
    return found


def test_the_package_never_imports_the_tools():
    """tools/ renders and checks the documents; the toolkit runs without it (it is not installed)."""
    assert imports_of(PACKAGE, "tools") == []
    assert imports_of(REPO / "tools", "readiness"), "tools/docs renders from the package: the check reads nothing"


def test_check_modules_import_the_facts_never_the_table():
    graph = import_graph(PACKAGE)
    checks = [m for m in graph if m.startswith("readiness.preflight.check_")]
    assert len(checks) >= 5, checks
    for module in checks:
        assert "readiness.preflight.table" not in graph[module], module
        assert graph[module] & {"readiness.preflight.facts", "readiness.preflight.findings"}, module


# ------------------------------------------------------------------------- the checks bite


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_cycle_check_bites_on_function_level_and_type_checking_imports(tmp_path):
    pkg = write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .c import thing\n    return thing\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\nthing = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "from .. import a\nfrom ..c import thing\nimport os\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.sub.d"] == {"pkg.a", "pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("thing = 1\n")
    assert cycles(import_graph(pkg)) == []


def test_the_layer_check_bites_on_an_upward_import_a_sibling_and_an_unknown_module():
    graph = {
        "readiness.system.engine": {"readiness.stack.modelcache", "readiness.errors"},
        "readiness.stack.modelcache": {"readiness.system.engine"},
        "readiness.run.start": {"readiness.preflight.facts", "readiness.run.health", "readiness.prepare.certs"},
        "readiness.output": {"readiness.errors"},
        "readiness.steps": {"readiness.cli"},
        "readiness.misc": set(),
    }
    assert layer_problems(graph) == [
        "readiness.misc: in no layer (add it to LAYERS here and to ARCHITECTURE.md)",
        "readiness.run.start imports readiness.preflight.facts: a sibling package (readiness.preflight)",
        "readiness.system.engine imports readiness.stack.modelcache: a higher layer (readiness.stack)",
    ]


def test_the_tree_check_bites_on_a_module_missing_from_the_document_and_on_a_stale_entry(tmp_path):
    pkg = write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "", "pkg/sub/__init__.py": "", "pkg/sub/b.py": "",
                           "pkg/sub/check_x.py": "", "pkg/deep/c.py": ""})
    text = ("## The readiness toolkit\n\n```text\ntasks.py   rows\nreadiness/\n  a.py      one\n  sub/\n"
            "    check_*.py  checks\n    gone.py     stale\n  deep/     a leaf directory\n```\n")
    assert documented_tree(text) == ["a.py", "sub/", "sub/check_*.py", "sub/gone.py", "deep/"]
    assert tree_problems(pkg, documented_tree(text)) == [
        "readiness/sub/b.py: not in ARCHITECTURE.md's tree",
        "ARCHITECTURE.md's tree names readiness/sub/gone.py, which does not exist",
    ]
