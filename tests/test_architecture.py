"""The architecture, checked: no import cycles anywhere in the package, and the layers point one way.

Every import counts — top level, under ``if TYPE_CHECKING:`` and inside functions — because a cycle
hidden in a function is still a cycle a reader must hold in their head, and one refactor away from
an import-time failure.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the dotted name it is installed under
PACKAGES = {"vault": "vault", "cli": "cli"}


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for folder, dotted in PACKAGES.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = [dotted, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The innermost module of ours that ``name`` (a module or ``module.attribute``) lives in."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, by any kind of import statement anywhere in it."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                # `from pkg import name` imports the submodule pkg.name when there is one
                targets = [f"{origin}.{alias.name}" for alias in node.names] + [origin]
            for target in targets:
                owner = _owner(target, mods)
                if owner is not None and owner != module:
                    graph[module].add(owner)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # service imports use cases inside functions and under TYPE_CHECKING: both are edges
    assert "meta_tokenvault.usecases.rotate" in graph["meta_tokenvault.service"]
    assert "meta_tokenvault.usecases.run_due" in graph["meta_tokenvault.service"]
    assert "meta_tokenvault.context" in graph["meta_tokenvault.usecases.rotate"]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("forbidden", ["cli", "typer", "rich", "click"])
def test_the_library_never_imports_the_cli_layer(forbidden: str) -> None:
    offenders = []
    for path in (ROOT / "vault").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_use_cases_talk_to_ports_not_to_adapters_or_the_facade() -> None:
    """The metadata store is the one exception: it has a single adapter (SQLAlchemy over SQLite or
    PostgreSQL), and use cases name its class for typing only (under TYPE_CHECKING)."""
    graph = import_graph()
    allowed = {"meta_tokenvault.adapters", "meta_tokenvault.adapters.store_sql"}
    for module, deps in graph.items():
        if module.startswith("meta_tokenvault.usecases") or module == "meta_tokenvault.context":
            bad = {d for d in deps if (d.startswith("meta_tokenvault.adapters") and d not in allowed)
                   or d in ("meta_tokenvault.service", "meta_tokenvault.wiring")}
            assert not bad, f"{module} imports {sorted(bad)}"
