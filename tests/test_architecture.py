"""House rules of ARCHITECTURE.md, checked on the source tree with `ast` (issue 14).

Every module under src/sbmlhybrid is parsed (not imported). Checked:

(a) no import circle between sbmlhybrid modules (every import counts: module level,
    function-local, under ``TYPE_CHECKING``, ``from . import x``; relative imports resolved;
    ``from pkg import name`` depends on ``pkg`` and, when ``pkg.name`` is a module, on it);
(b) a module imports only from its own layer or below (`LAYERS`);
(c) modules at most `MAX_MODULE_LINES` lines, functions/methods at most `MAX_FUNCTION_LINES`;
(d) every package ``__init__.py`` defines ``__all__``;
(e) no import-time side effects outside ``cli/``: module- or class-level calls to
    ``matplotlib.use``, ``logging.basicConfig``, ``<logger>.setLevel``,
    ``warnings.filterwarnings`` / ``simplefilter``, or writes to ``os.environ``.

The checkers take plain data (a module graph, source text), so the unit tests at the end feed
them synthetic input and assert that each rule can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "sbmlhybrid"

# The one layer table (the same as ARCHITECTURE.md). Key: the first name below `sbmlhybrid`
# ("" is the package's own __init__). A module may import only from its own layer or below.
LAYERS: dict[str, int] = {
    "errors": 0, "_logs": 0,
    "problem": 1, "flux": 1,
    "build": 2,
    "objective": 3,
    "optimize": 4, "hybrid": 4, "layers": 4, "sciml": 4, "media": 4, "transfer": 4,
    "analysis": 5, "results": 5,
    "api": 6, "": 6, "testing": 6,
    "cli": 7,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
SIDE_EFFECT_FREE_EXCEPT = ("cli",)  # top-level names whose modules may configure the process

# Known violations, as exact (module, kind) pairs; `test_allowlist_is_not_stale` fails once
# one is gone, so that its entry is removed. The SciML front-door work of issue 14 removed the
# last ones (the sciml.importer <-> sciml.objective circle, the 205-line load_sciml_problem,
# package __init__ files without __all__).
ALLOWED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Finding:
    module: str
    kind: str  # cycle | layer | module-length | function-length | missing-__all__ | side-effect
    detail: str

    def __str__(self) -> str:
        return f"{self.module} [{self.kind}] {self.detail}"


# ---- reading the tree -----------------------------------------------------------------------
def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_tree(src: Path = SRC) -> dict[str, tuple[str, bool]]:
    """{module: (source, is_package)} of every .py file of the package (symlinks skipped)."""
    modules = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        if any(p.is_symlink() for p in [path, *path.parents]):
            continue
        if not (path.parent / "__init__.py").exists():
            continue  # data folders shipped inside the package are not modules
        modules[module_name(path, src)] = (path.read_text(), path.name == "__init__.py")
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The sbmlhybrid modules `module` imports anywhere in its source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in known)
    return {m for m in found if m in known and m != module}


def import_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    known = set(modules)
    return {m: imports_of(m, src, pkg, known) for m, (src, pkg) in modules.items()}


# ---- (a) circles ----------------------------------------------------------------------------
def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), sorted members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _cycle_through(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """One shortest circle start -> ... -> start inside a strongly connected component."""
    inside, start = set(members), members[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for child in sorted(graph.get(node, set()) & inside):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    return members


def cycle_findings(graph: dict[str, set[str]]) -> list[Finding]:
    findings = []
    for members in _strongly_connected(graph):
        if len(members) > 1 or members[0] in graph.get(members[0], ()):
            circle = " -> ".join(_cycle_through(graph, members))
            for member in members:
                findings.append(Finding(member, "cycle", f"{circle} (component {members})"))
    return findings


# ---- (b) layers -----------------------------------------------------------------------------
def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    if key not in LAYERS:
        raise KeyError(f"{module}: top-level name {key!r} is missing from LAYERS")
    return LAYERS[key]


def layer_findings(graph: dict[str, set[str]]) -> list[Finding]:
    findings = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                findings.append(Finding(module, "layer", f"imports {target} (layer "
                                        f"{layer_of(target)} > {layer_of(module)})"))
    return findings


# ---- (c) sizes ------------------------------------------------------------------------------
def size_findings(module: str, source: str) -> list[Finding]:
    findings = []
    n_lines = len(source.splitlines())
    if n_lines > MAX_MODULE_LINES:
        findings.append(Finding(module, "module-length", f"{n_lines} lines > {MAX_MODULE_LINES}"))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                findings.append(Finding(module, "function-length", f"{node.name} (line "
                                        f"{node.lineno}): {length} lines > {MAX_FUNCTION_LINES}"))
    return findings


# ---- (d) __all__ ----------------------------------------------------------------------------
def defines_all(source: str) -> bool:
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


# ---- (e) import-time side effects ----------------------------------------------------------
_FORBIDDEN_CALLS = {"matplotlib.use", "logging.basicConfig", "warnings.filterwarnings",
                    "warnings.simplefilter", "os.putenv"}
_ENVIRON_METHODS = {"setdefault", "update", "pop", "clear", "__setitem__"}


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted origin for imports anywhere in the module."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def _import_time_nodes(body: list[ast.stmt]):
    """Nodes executed at import: module and class bodies, not function bodies."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(stmt, ast.ClassDef):
            yield from _import_time_nodes(stmt.body)
            continue
        todo = [stmt]
        while todo:
            node = todo.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.ClassDef):
                yield from _import_time_nodes(node.body)
                continue
            yield node
            todo.extend(ast.iter_child_nodes(node))


def side_effect_findings(module: str, source: str) -> list[Finding]:
    tree = ast.parse(source)
    aliases = _import_aliases(tree)
    findings = []
    for node in _import_time_nodes(tree.body):
        what = None
        if isinstance(node, ast.Call):
            name = _dotted(node.func, aliases) or ""
            if isinstance(node.func, ast.Attribute) and node.func.attr == "setLevel":
                what = "calls <logger>.setLevel"
            elif name in _FORBIDDEN_CALLS:
                what = f"calls {name}"
            elif name.startswith("os.environ.") and name.rsplit(".", 1)[1] in _ENVIRON_METHODS:
                what = f"calls {name}"
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and _dotted(t.value, aliases) == "os.environ":
                    what = "writes os.environ"
        if what:
            findings.append(Finding(module, "side-effect", f"line {node.lineno}: {what}"))
    return findings


# ---- all rules ------------------------------------------------------------------------------
def check(modules: dict[str, tuple[str, bool]]) -> list[Finding]:
    graph = import_graph(modules)
    findings = cycle_findings(graph) + layer_findings(graph)
    for module, (source, is_package) in sorted(modules.items()):
        findings += size_findings(module, source)
        if is_package and not defines_all(source):
            findings.append(Finding(module, "missing-__all__", "package without __all__"))
        top = module.split(".")[1] if "." in module else ""
        if top not in SIDE_EFFECT_FREE_EXCEPT:
            findings += side_effect_findings(module, source)
    return findings


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    return check(read_tree())


@pytest.mark.parametrize("kind", ["cycle", "layer", "module-length", "function-length",
                                  "missing-__all__", "side-effect"])
def test_house_rule(findings, kind):
    bad = [f for f in findings if f.kind == kind and (f.module, f.kind) not in ALLOWED]
    assert not bad, "\n".join(map(str, bad))


def test_allowlist_is_not_stale(findings):
    present = {(f.module, f.kind) for f in findings}
    stale = sorted(ALLOWED - present)
    assert not stale, f"allowlisted violations that are gone, remove them: {stale}"


def test_every_top_level_name_has_a_layer():
    for module in read_tree():
        layer_of(module)


# ---- the checkers can fail ------------------------------------------------------------------
def _synthetic(**sources: str) -> dict[str, tuple[str, bool]]:
    """{"sbmlhybrid.problem.a": source} style input; names ending in __init__ are packages."""
    modules = {}
    for name, source in sources.items():
        dotted = name.replace("__", ".").removesuffix(".init")
        modules[f"{ROOT}.{dotted}" if dotted else ROOT] = (source,
                                                            name.endswith("__init"))
    return modules


def test_circle_is_reported_with_its_path():
    # a -> b: function-local `from pkg import submodule`; b -> c, c -> a: relative imports
    modules = _synthetic(problem__a="def f():\n    from sbmlhybrid.problem import b\n",
                         problem__b="from .c import y\n", problem__c="from .a import z\n",
                         build__d="import sbmlhybrid.problem.a\n")
    cycles = [f for f in check(modules) if f.kind == "cycle"]
    assert {f.module for f in cycles} == {"sbmlhybrid.problem.a", "sbmlhybrid.problem.b",
                                          "sbmlhybrid.problem.c"}
    assert cycles[0].detail.startswith("sbmlhybrid.problem.a -> sbmlhybrid.problem.b -> "
                                       "sbmlhybrid.problem.c -> sbmlhybrid.problem.a")


def test_relative_imports_resolve():
    known = {"sbmlhybrid.problem", "sbmlhybrid.problem.a", "sbmlhybrid.errors"}
    assert imports_of("sbmlhybrid.problem.a", "from ..errors import E\nfrom . import a\n",
                      False, known) == {"sbmlhybrid.errors", "sbmlhybrid.problem"}
    assert imports_of("sbmlhybrid.problem", "from . import a\n", True, known) == \
        {"sbmlhybrid.problem.a"}


def test_upward_import_is_reported():
    modules = _synthetic(problem__a="def f():\n    from sbmlhybrid.objective import o\n",
                         objective="from sbmlhybrid.problem import a\n")
    layer = [f for f in check(modules) if f.kind == "layer"]
    assert [(f.module, "sbmlhybrid.objective" in f.detail) for f in layer] == \
        [("sbmlhybrid.problem.a", True)]


def test_long_module_and_function_are_reported():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"class C:\n    def long(self):\n{body}\n        return 0\n"
    source = source.replace("\n    x", "\n        x")
    kinds = [(f.kind, f.detail.split()[0]) for f in size_findings("m", source)]
    assert kinds == [("function-length", "long")]
    short = "def ok():\n" + "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    assert size_findings("m", short) == []
    assert [f.kind for f in size_findings("m", "x = 1\n" * (MAX_MODULE_LINES + 1))] == \
        ["module-length"]


def test_package_without_all_is_reported():
    modules = _synthetic(problem__init='"""doc"""\nfrom .a import f\n', problem__a="",
                         build__init="__all__: list[str] = []\n")
    missing = [f.module for f in check(modules) if f.kind == "missing-__all__"]
    assert missing == ["sbmlhybrid.problem"]


def test_import_time_side_effects_are_reported():
    source = ("import logging\nimport os\nimport matplotlib as mpl\n"
              "from warnings import simplefilter\n"
              "mpl.use('Agg')\nlogging.getLogger('x').setLevel(10)\nsimplefilter('ignore')\n"
              "os.environ['A'] = '1'\nif True:\n    os.environ.setdefault('B', '2')\n"
              "class K:\n    logging.basicConfig()\n"
              "def later():\n    mpl.use('Agg')\n    os.environ['C'] = '3'\n")
    lines = sorted(int(f.detail.split()[1].rstrip(":"))
                   for f in side_effect_findings("m", source))
    assert lines == [5, 6, 7, 8, 10, 12]
    modules = _synthetic(cli__main="import matplotlib\nmatplotlib.use('Agg')\n",
                         results="import matplotlib\nmatplotlib.use('Agg')\n")
    assert [f.module for f in check(modules) if f.kind == "side-effect"] == \
        ["sbmlhybrid.results"]
