"""The shape of the code, from the AST of every module of rhode (function-level imports included):
no import cycle anywhere, no deferred imports in rhode.mhe, no package but rhode.mhe imports openfhe,
no function over 80 lines or over 8 parameters, no file over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import rhode

SRC = Path(rhode.__file__).resolve().parent
PACKAGE = "rhode.mhe"
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 8
MAX_FILE_LINES = 500


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


def _graph(package: str = "rhode") -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (at any depth of its code)."""
    return {m: {t for t, _, _ in _imports(m, p) if t.startswith(package) and t in MODULES and t != m}
            for m, p in MODULES.items() if m == package or m.startswith(package + ".")}


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
    mod.write_text("import os\nfrom . import serial\nclass A:\n    def f(self):\n"
                   "        from rhode.mhe.protocols import relin\n        return relin\n")
    found = _imports(f"{PACKAGE}.mod", mod)
    assert found == [("os", 1, False), (f"{PACKAGE}.serial", 2, False),
                     (f"{PACKAGE}.protocols.relin", 5, True)]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_import_graph_of_rhode_has_no_cycle():
    graph = _graph()
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"
    graph = _graph(PACKAGE)
    assert f"{PACKAGE}.protocols.relin" in graph and f"{PACKAGE}.party" in graph
    assert f"{PACKAGE}.protocols.public_key" in graph[f"{PACKAGE}.party"]  # the walker sees edges
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_deferred_imports_in_mhe():
    deferred = [f"{m}:{line} imports {t}" for m, p in MODULES.items() if m.startswith(PACKAGE)
                for t, line, inside in _imports(m, p) if inside]
    assert not deferred, deferred


def test_only_mhe_imports_openfhe():
    users = sorted({m for m, p in MODULES.items() for t, _, _ in _imports(m, p)
                    if t.split(".")[0] == "openfhe"})
    assert users and all(m.startswith(PACKAGE) for m in users), users


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _n_parameters(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return len([n for n in names if n not in ("self", "cls")])


def test_functions_are_short_and_take_few_parameters():
    long, wide = [], []
    for m, p in MODULES.items():
        for fn in _functions(ast.parse(p.read_text(), str(p))):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{m}.{fn.name} ({lines} lines)")
            if _n_parameters(fn) > MAX_PARAMETERS:
                wide.append(f"{m}.{fn.name} ({_n_parameters(fn)} parameters)")
    assert not long, long
    assert not wide, wide


def test_files_are_short():
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    big = [f"{m} ({n} lines)" for m, n in sizes.items() if n > MAX_FILE_LINES]
    assert not big, big


def test_shape_checks_can_fail(tmp_path):
    """The checks above see what they must: a long function, a wide one, a big file."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def f(a, b, c, d, e, f, g, h, i):\n{body}\n")
    fn = next(_functions(tree))
    assert fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    assert _n_parameters(fn) == 9 > MAX_PARAMETERS
    assert _n_parameters(next(_functions(ast.parse("class A:\n    def f(self, a): pass\n")))) == 1
