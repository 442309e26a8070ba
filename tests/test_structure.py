"""The package's structure, checked from its source: what imports what."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from .helpers.cli import ROOT


def test_reading_a_sweep_imports_no_torch():
    """The aggregator reads CSV and JSON files: a report of a sweep copied from a
    cluster must not pay torch's import (seconds) or need torch at all (shared/DESIGN.md:
    the aggregator reads files only)."""
    code = (
        "import sys, flowers_sweep.aggregate, flowers_sweep.aggregate.cli; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout[:500]


# ---------------------------------------------------------------- the import graph
# Doors: what a user or Hydra calls (the commands, the Python API, the Hydra task and
# callback). Everything else is a wing (a sub-package by concern) or the ground floor
# (errors, atomic, paths, and optim, which conf/ names as _target_).
DOORS = {
    "flowers_sweep", "flowers_sweep.__main__", "flowers_sweep.api", "flowers_sweep.app",
    "flowers_sweep.callbacks", "flowers_sweep.evaluate", "flowers_sweep.predict",
    "flowers_sweep.summary", "flowers_sweep.status", "flowers_sweep.plan",
}  # fmt: skip
MAX_ROOT_FILES = 16


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package (`a.b` for a/b.py, `a` for a/__init__.py)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports, wherever the import stands (at the
    top, inside a function, under TYPE_CHECKING): a lazy import hides no edge."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for target in targets:
            while target and target not in modules:  # a.b.func -> a.b
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):
                found.add(target)  # (a module's own package is not an import of it)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles: each strongly connected set of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            if group:
                found.append(sorted([v, *group]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def into_doors(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} imports {d}"
        for m, targets in graph.items()
        if m not in DOORS
        for d in targets & DOORS
    )


def test_the_import_graph_has_no_circle_and_no_wing_imports_a_door():
    graph = import_graph(ROOT / "flowers_sweep")
    assert len(graph) > 60  # the walker found the package
    assert cycles(graph) == []
    assert into_doors(graph) == []
    root_files = sorted((ROOT / "flowers_sweep").glob("*.py"))
    assert len(root_files) <= MAX_ROOT_FILES, [p.name for p in root_files]


def test_the_checks_find_a_planted_circle_and_a_planted_door_import(tmp_path):
    pkg = tmp_path / "flowers_sweep"
    (pkg / "wing").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "wing" / "__init__.py").write_text("")
    (pkg / "wing" / "a.py").write_text("def f():\n    from flowers_sweep.wing import b\n")
    (pkg / "wing" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
    )
    (pkg / "wing" / "c.py").write_text("from flowers_sweep.api import train\n")
    (pkg / "api.py").write_text("from flowers_sweep.wing.c import *\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["flowers_sweep.api", "flowers_sweep.wing.c"],
                             ["flowers_sweep.wing.a", "flowers_sweep.wing.b"]]  # fmt: skip
    assert into_doors(graph) == ["flowers_sweep.wing.c imports flowers_sweep.api"]
