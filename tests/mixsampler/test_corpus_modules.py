"""The reading modules form no import cycle and share only public names (issue 18)."""

from __future__ import annotations

import ast
from pathlib import Path

import mixsampler

MODULES = ["readers", "sources", "tarreader", "tario", "index", "shards", "corpus", "tokens"]
MODULES += ["collate"]


def _imports(name: str) -> list[tuple[str, str]]:
    tree = ast.parse((Path(mixsampler.__file__).parent / f"{name}.py").read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixsampler."):
            out += [(node.module.split(".", 1)[1], a.name) for a in node.names]
    return out


def test_no_cycle_and_no_private_name_crosses_a_module():
    graph = {m: {mod for mod, _ in _imports(m)} for m in MODULES}
    for m in MODULES:
        seen, todo = set(), list(graph[m])
        while todo:
            n = todo.pop()
            assert n != m, f"import cycle through mixsampler.{m}"
            if n not in seen:
                seen.add(n)
                todo += graph.get(n, ())
        privates = [f"{mod}.{name}" for mod, name in _imports(m) if name.startswith("_")]
        assert not privates, f"mixsampler.{m} imports private names {privates}"
    assert graph["readers"] == set(), "readers is the bottom: it imports no sibling"
