"""The package's shape: no import circles between its modules, and the layers of
``docs/ARCHITECTURE.md`` (the import-linter contracts in ``pyproject.toml``) hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter is a dev dependency")

ROOT = Path(__file__).resolve().parents[1]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other (directly or not)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """Module → modules it imports (inside functions too; with ``type_only`` the imports made
    only for type annotations too).

    A package's ``__init__`` that only re-exports is left out: importing ``fastbp.devices.cpu``
    for its ``NumpyBackend`` is not a circle through every module the package re-exports.
    """
    g = grimp.build_graph("fastbp", exclude_type_checking_imports=not type_only)
    packages = {m for m in g.modules if (ROOT / m.replace(".", "/") / "__init__.py").exists()}
    nodes = set(g.modules) - packages
    return {m: {t for t in g.find_modules_directly_imported_by(m) if t in nodes}
            for m in nodes}


def test_tarjan_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [g for g in strongly_connected(graph) if len(g) > 1] == [["a", "b", "c"]]


@pytest.mark.parametrize("type_only", [False, True], ids=["at run time", "with type-only"])
def test_no_module_imports_itself_through_others(type_only: bool) -> None:
    """No circle, even counting the imports made only for type annotations: a helper of the
    network takes what it uses (:class:`fastbp.model.trainee.Trainee`), not the network."""
    circles = [g for g in strongly_connected(import_graph(type_only)) if len(g) > 1]
    assert circles == [], f"import circles: {circles}"


LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports")


@pytest.mark.skipif(LINT is None, reason="import-linter not installed")
def test_the_layer_contracts_hold() -> None:
    out = subprocess.run([LINT], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
