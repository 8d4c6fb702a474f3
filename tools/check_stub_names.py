#!/usr/bin/env python3
"""Checks that python/ferroloop/_ferroloop.pyi names everything the built native module
has, private names included: mypy's stubtest (run before this by `./dev lint stubtest`)
checks the signatures, but skips a runtime name starting with `_` that the stub leaves
out, and those are the core's contract with the Python face.

    python tools/check_stub_names.py      (with ferroloop built into this interpreter)

Exit status 1 if the stub misses a name or names one the module does not have.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import ferroloop._ferroloop as native

STUB = Path(__file__).resolve().parent.parent / "python" / "ferroloop" / "_ferroloop.pyi"
# What every module or class has, or pyo3 adds, without the stub naming it.
IMPLICIT = {
    "__doc__",
    "__module__",
    "__dict__",
    "__weakref__",
    "__text_signature__",
    "__new__",
    "__name__",
    "__loader__",
    "__spec__",
    "__package__",
    "__file__",
}


def defined(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def main() -> int:
    tree = ast.parse(STUB.read_text())
    nodes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def members(name: str) -> set[str]:
        """A stub class's names and those of its bases defined in the stub: a stub-only
        private base may hold what several native classes share."""
        node = nodes[name]
        bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in nodes]
        own = defined(node.body)
        return own.union(*(members(b) for b in bases if not hasattr(native, b))) if bases else own

    classes = {name: members(name) for name in nodes}
    problems = []
    runtime = set(vars(native)) - IMPLICIT
    stubbed = defined(tree.body)
    problems += [f"{name}: in the module, not in the stub" for name in sorted(runtime - stubbed)]
    for name, obj in sorted(vars(native).items()):
        if not inspect.isclass(obj):
            continue
        have, want = set(vars(obj)) - IMPLICIT, classes.get(name, set()) - IMPLICIT
        problems += [f"{name}.{attr}: in the module, not in the stub" for attr in sorted(have - want)]
        problems += [f"{name}.{attr}: in the stub, not in the module" for attr in sorted(want - have)]
    for line in problems:
        print(f"{STUB.name}: {line}")
    print(
        f"{STUB.name}: {'names differ' if problems else 'every name matches'} "
        f"({len(runtime)} module names, {sum(len(c) for c in classes.values())} class members)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
