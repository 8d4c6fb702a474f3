#!/usr/bin/env python3
"""Finds import cycles in the Rust core (src/) and the Python package (python/ferroloop/).

    python3 tools/check_cycles.py [--graph]

Exit status 1 if there is a cycle. Layers are checked level by level: an edge from
`a::b::c` to `a::d` counts as `b -> d` among the children of `a`, and a package's own file
(mod.rs, __init__.py) is one more node among its children, named `<self>`. So a child that
uses its parent while the parent uses the child is a cycle, as are two siblings that use
each other through any of their descendants.

Rust edges are `use crate::...`, `use super::...` and inline `crate::...` paths (the
`mod x;` declarations are structure, not edges). Python edges are the imports a module
runs when it is imported (module level, outside `if TYPE_CHECKING:`); imports inside
functions run later and are not edges. Standard library only.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELF = "<self>"

Edge = tuple[tuple[str, ...], tuple[str, ...], str]  # (from module, to module, "file:line")


# ---- Rust -------------------------------------------------------------------------------


def rust_modules(src: Path) -> dict[tuple[str, ...], Path]:
    mods: dict[tuple[str, ...], Path] = {}
    for p in sorted(src.rglob("*.rs")):
        parts = p.relative_to(src).with_suffix("").parts
        if parts == ("lib",):
            parts = ()
        elif parts[-1] == "mod":
            parts = parts[:-1]
        mods[parts] = p
    return mods


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_USE = re.compile(r"\buse\s+((?:crate|super|self)\s*::[^;]*);")
_INLINE = re.compile(r"\b(crate|super)((?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)")


def _expand_use(tree: str) -> list[str]:
    """`crate::{a, b::{c, d}}` -> ["crate::a", "crate::b::c", "crate::b::d"]."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    head, _, rest = tree.partition("{")
    body = rest[: rest.rfind("}")]
    out, depth, cur = [], 0, ""
    for ch in body + ",":
        if ch == "," and depth == 0:
            if cur:
                out.extend(_expand_use(head + cur))
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    return out


def _resolve_rust(path: str, here: tuple[str, ...], mods) -> tuple[str, ...] | None:
    parts = [p for p in path.split("::") if p]
    base: list[str]
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts.pop(0) == "super":
                base = base[:-1]
    full = tuple(base + parts)
    for n in range(len(full), -1, -1):  # the longest prefix that is a module
        if full[:n] in mods:
            return full[:n]
    return None


def rust_edges(src: Path) -> list[Edge]:
    mods = rust_modules(src)
    edges: list[Edge] = []
    for here, path in mods.items():
        text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())
        seen: set[tuple[int, str]] = set()
        for m in _USE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for item in _expand_use(m.group(1)):
                seen.add((line, item))
        for m in _INLINE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            seen.add((line, m.group(1) + re.sub(r"\s+", "", m.group(2))))
        for line, item in sorted(seen):
            to = _resolve_rust(item, here, mods)
            if to is not None and to != here:
                edges.append((here, to, f"{path.relative_to(ROOT)}:{line}"))
    return edges


# ---- Python -----------------------------------------------------------------------------


def python_modules(pkg: Path) -> dict[tuple[str, ...], Path]:
    mods: dict[tuple[str, ...], Path] = {}
    base = pkg.parent
    for p in sorted(pkg.rglob("*.py")):
        parts = p.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[parts] = p
    for p in pkg.rglob("*.pyi"):  # the extension module is a node through its stub
        parts = p.relative_to(base).with_suffix("").parts
        if parts[-1] != "__init__":
            mods.setdefault(parts, p)
    return mods


def _import_time_nodes(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                yield from _import_time_nodes(node.body)
            yield from _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _import_time_nodes(block)
        elif isinstance(node, ast.With):
            yield from _import_time_nodes(node.body)


def python_edges(pkg: Path) -> list[Edge]:
    mods = python_modules(pkg)
    edges: list[Edge] = []
    for here, path in mods.items():
        if path.suffix == ".pyi":
            continue
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node in _import_time_nodes(tree.body):
            targets: list[tuple[str, ...]] = []
            if isinstance(node, ast.Import):
                targets = [tuple(a.name.split(".")) for a in node.names]
            else:
                if node.level:
                    anchor = here if is_pkg else here[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    mod = anchor + tuple(node.module.split(".") if node.module else ())
                else:
                    mod = tuple(node.module.split("."))
                for a in node.names:
                    sub = mod + (a.name,)
                    targets.append(sub if sub in mods else mod)
            for to in targets:
                if to in mods and to != here:
                    edges.append((here, to, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return edges


# ---- cycles -----------------------------------------------------------------------------


def level_edge(a: tuple[str, ...], b: tuple[str, ...]):
    """The edge between siblings that a -> b stands for: (parent, from child, to child)."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    prefix = a[:k]
    return prefix, (a[k] if len(a) > k else SELF), (b[k] if len(b) > k else SELF)


def cycles(edges: list[Edge]):
    """Strongly connected components (more than one node) per level, with the edges in them."""
    groups: dict[tuple[str, ...], dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for a, b, where in edges:
        prefix, x, y = level_edge(a, b)
        groups[prefix][x][y].append(f"{'::'.join(a) or 'crate'} -> {'::'.join(b) or 'crate'} ({where})")
    found = []
    for prefix, graph in sorted(groups.items()):
        for comp in _sccs(graph):
            inside = sorted({w for x in comp for y in comp for w in graph[x].get(y, [])})
            found.append((prefix, sorted(comp), inside))
    return found, groups


def _sccs(graph: dict[str, dict[str, list[str]]]) -> list[set[str]]:
    nodes = set(graph) | {y for x in graph for y in graph[x]}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    show_graph = "--graph" in argv
    failed = False
    for label, edges, sep in (
        ("src/", rust_edges(ROOT / "src"), "::"),
        ("python/ferroloop/", python_edges(ROOT / "python" / "ferroloop"), "."),
    ):
        found, groups = cycles(edges)
        if show_graph:
            print(f"# {label}")
            for prefix, graph in sorted(groups.items()):
                for x in sorted(graph):
                    deps = ", ".join(sorted(graph[x]))
                    print(f"  {sep.join(prefix) or '(root)'}: {x} -> {deps}")
        if not found:
            print(f"{label}: no import cycle ({len(edges)} edges)")
            continue
        failed = True
        for prefix, comp, inside in found:
            where = sep.join(prefix) or "(root)"
            print(f"{label}: import cycle among the children of {where}: {', '.join(comp)}")
            for w in inside:
                print(f"    {w}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
