"""The simulator's layers hold (docs/simulator.md): no import cycle inside vault/testing/graph_sim, and each
module imports only the layers below it. Top-level, TYPE_CHECKING and function-local imports all count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vault" / "testing" / "graph_sim"

# module: the sibling modules it may import (the layers below it)
BOTTOM = {"wire", "world", "clock", "faults", "knobs", "invalidation"}
ALLOWED: dict[str, set[str]] = {
    "wire": set(), "world": set(), "clock": set(), "faults": {"wire"}, "knobs": {"faults"}, "invalidation": {"wire"},
    "auth": {"wire", "world", "invalidation"},
    "state": BOTTOM | {"auth"},
    "handlers": BOTTOM | {"auth", "state"},
    "assets": BOTTOM | {"auth", "state", "handlers"},
    "control": BOTTOM | {"state"},
    "persist": BOTTOM | {"state"},
    "router": BOTTOM | {"auth", "state", "handlers", "assets", "control"},
    "transport": {"wire"}, "server": {"wire"},
    "core": BOTTOM | {"auth", "state", "handlers", "assets", "control", "persist", "router", "transport", "server"},
}


def sibling_imports(path: Path) -> set[str]:
    """The sibling modules ``path`` imports, however and wherever (relative imports inside the package)."""
    names = {p.stem for p in PKG.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("meta_tokenvault.testing.graph_sim."):
            assert node.module is not None
            found.add(node.module.split(".")[3])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("meta_tokenvault.testing.graph_sim."):
                    found.add(alias.name.split(".")[3])
    return (found & names) - {path.stem}


def test_every_module_has_a_layer() -> None:
    assert {p.stem for p in PKG.glob("*.py")} - {"__init__"} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_imports_only_layers_below(module: str) -> None:
    extra = sibling_imports(PKG / f"{module}.py") - ALLOWED[module]
    assert not extra, f"{module} imports {sorted(extra)}, above its layer (docs/simulator.md, Layers)"


def test_no_import_cycle() -> None:
    graph = {m: sibling_imports(PKG / f"{m}.py") for m in ALLOWED}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
