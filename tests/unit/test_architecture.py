"""The code's shape (issue 36): no import cycle among the modules of the CLI, the agent or the lineage
plugin, counting imports inside functions too (a cycle hidden by a late import is still one)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import REPO

PACKAGES = [REPO / "cli" / "playground", REPO / "agent" / "playground_agent", REPO / "lineage" / "playground_lineage"]


def imports(package: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports."""
    names = {".".join((package.name, *p.relative_to(package).with_suffix("").parts)).removesuffix(".__init__"): p
             for p in package.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]) if node.level else node.module
                base = base.rstrip(".")
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in names:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    out.add(t)
        graph[name] = out
    return graph


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str]:
    """A path start -> ... -> start, or [] when there is none."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return []


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_import_cycle(package):
    graph = imports(package)
    cycles = {" -> ".join(c) for m in graph if (c := cycle_from(graph, m))}
    assert not cycles, "\n".join(sorted(cycles))


def test_the_walker_sees_a_cycle_through_a_late_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    assert cycle_from(imports(pkg), "pkg.a") == ["pkg.a", "pkg.b", "pkg.a"]
