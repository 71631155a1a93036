"""The import graph of ``speakerid/``: no cycles (module-level or inside functions), and the library never
imports its command line (``speakerid.cli``), so it can be used, tested and replaced without it."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "speakerid"
CLI_SIDE = {"speakerid.cli"}  # the console script: it may import anything, nothing may import it
# Known edges still to remove (none: the training refactor removed tasks.runner -> cli); the test fails on any
# cycle or CLI import not listed here, and on a listed one once it is gone from the code.
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, module: str, is_pkg: bool, known: set[str]) -> set[str]:
    """speakerid modules an import statement refers to (``from . import x`` -> the submodule x if it is one)."""
    out: set[str] = set()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_pkg else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    for name in names:
        while name and name not in known:  # "speakerid.models.classifier.X" -> the module that holds it
            name = name.rpartition(".")[0]
        if name.startswith("speakerid"):
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> speakerid modules it imports anywhere in its file (top level, functions, TYPE_CHECKING)."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    known = set(files)
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _targets(node, mod, path.name == "__init__.py", known)
        # A package importing its own submodules (``from .models import X`` in speakerid/__init__) and a module
        # importing its parent package are not cycles of ideas; keep only edges between sibling modules.
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".") and d != "speakerid"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_walker_sees_relative_absolute_and_function_level_imports():
    graph = import_graph()
    assert "speakerid.audio" in graph["speakerid.pipeline"]  # from .audio import ... (module level)
    assert "speakerid.onnx_engine" in graph["speakerid.runtime"]  # inside load_engine
    assert "speakerid.models" in graph["speakerid.card"]  # inside ModelCard.from_dict
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _graph_without_known() -> dict[str, set[str]]:
    graph = import_graph()
    for a, b in KNOWN:
        assert b in graph.get(a, ()), f"{a} no longer imports {b}: remove it from KNOWN"
        graph[a] = graph[a] - {b}
    return graph


def test_no_import_cycles_in_speakerid():
    cycle = find_cycle(_graph_without_known())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_library_never_imports_the_cli():
    graph = _graph_without_known()
    offenders = sorted(m for m, deps in graph.items() if deps & CLI_SIDE and m not in CLI_SIDE)
    assert not offenders, f"library modules import speakerid.cli: {offenders}"
