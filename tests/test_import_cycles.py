"""No import cycles among the packages' modules (issue 32): an import of one module by
another, followed around, never comes back to where it started. Imports inside functions
count too: deferring an import hides a cycle from Python, not from a reader. Read from the
source with ``ast``.

And who may import whom at the top (docs/design.md): the shipped packages import none of
``tests``, ``bench`` and ``harness`` (the helpers both share); ``harness`` imports neither
``tests`` nor ``bench``; ``bench`` never imports ``tests``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "streamer", "offline_training", "harness")
# Top-level package -> the top-level packages of ours it must never import (at any depth,
# deferred imports included).
FORBIDDEN = {
    "models": {"tests", "bench", "harness"},
    "streamer": {"tests", "bench", "harness"},
    "offline_training": {"tests", "bench", "harness"},
    "harness": {"tests", "bench"},
    "bench": {"tests"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (``from a.b import c``: a.b.c
    when that is a module, else a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    out.add(full)
                elif node.module in known:
                    out.add(node.module)
    return out


def test_no_import_cycles() -> None:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {name: module_imports(path, set(files)) - {name} for name, path in files.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports anywhere in ``path``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_import_rules() -> None:
    broken = []
    for package, forbidden in FORBIDDEN.items():
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, f"no modules found in {package}/"
        for path in files:
            for name in sorted(top_level_imports(path) & forbidden):
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not broken, "import rules broken (docs/design.md): " + "; ".join(broken)
