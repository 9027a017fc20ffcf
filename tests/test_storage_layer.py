"""Storage owns the SQL connections, and imports nothing of the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

HUB = Path(__file__).resolve().parent.parent / "hub"
# The leaves storage may use besides itself: error values (OperationOutcome) only.
STORAGE_MAY_IMPORT = {"hub.outcomes"}


def _modules(*, inside: str | None = None, outside: tuple[str, ...] = ()):
    for path in sorted(HUB.rglob("*.py")):
        rel = path.relative_to(HUB).as_posix()
        if inside is not None and not rel.startswith(inside):
            continue
        if any(rel.startswith(o) for o in outside):
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_connections_are_opened_only_in_storage():
    """No ``x.connect()`` or ``x.begin()`` outside hub/storage (and the migrations)."""
    found = []
    for rel, tree in _modules(outside=("storage/", "migrations/")):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("connect", "begin")
                and not node.args
                and not node.keywords
            ):
                found.append(f"hub/{rel}:{node.lineno}")
    assert found == []


def test_storage_imports_nothing_above_it():
    found = []
    for rel, tree in _modules(inside="storage/"):
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                names = [node.module] if node.module != "hub" else names[1:]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("hub") and not name.startswith("hub.storage"):
                    if name not in STORAGE_MAY_IMPORT:
                        found.append(f"hub/{rel}:{node.lineno} {name}")
    assert found == []
