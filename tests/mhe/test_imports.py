"""The import graph of rhode.mhe, from the AST of every module (function-level imports included):
no cycle, no deferred imports, and no package of rhode but rhode.mhe imports openfhe."""

from __future__ import annotations

import ast
from pathlib import Path

import rhode

SRC = Path(rhode.__file__).resolve().parent
PACKAGE = "rhode.mhe"


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import statement of a module."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in MODULES else base, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m, p) if t.startswith(PACKAGE) and t in MODULES and t != m}
            for m, p in MODULES.items() if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := dfs(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := dfs(m)):
            return found
    return None


def test_walker_sees_function_level_and_relative_imports(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text("import os\nfrom . import codec\nclass A:\n    def f(self):\n"
                   "        from rhode.mhe.protocols import relin\n        return relin\n")
    found = _imports(f"{PACKAGE}.mod", mod)
    assert found == [("os", 1, False), (f"{PACKAGE}.codec", 2, False),
                     (f"{PACKAGE}.protocols.relin", 5, True)]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_of_mhe_has_no_cycle():
    graph = _graph()
    assert f"{PACKAGE}.protocols.relin" in graph and f"{PACKAGE}.party" in graph
    assert f"{PACKAGE}.protocols.relin" in graph[f"{PACKAGE}.party"]
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_deferred_imports_in_mhe():
    deferred = [f"{m}:{line} imports {t}" for m, p in MODULES.items() if m.startswith(PACKAGE)
                for t, line, inside in _imports(m, p) if inside]
    assert not deferred, deferred


def test_only_mhe_imports_openfhe():
    users = sorted({m for m, p in MODULES.items() for t, _, _ in _imports(m, p)
                    if t.split(".")[0] == "openfhe"})
    assert users and all(m.startswith(PACKAGE) for m in users), users
