"""The layers run one way: ``ace`` (the library) imports neither Ray nor ``workers`` nor the
commands; ``workers`` (the Ray actors) does not import the commands; the commands sit on top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = sorted(n for n in _imports(path) if n.split(".")[0] in forbidden)
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


def test_the_library_imports_neither_ray_nor_workers_nor_commands():
    assert _offenders("ace", ("ray", "workers", "commands")) == {}


def test_the_workers_do_not_import_the_commands():
    assert _offenders("workers", ("commands",)) == {}
    assert _offenders("models", ("ray", "workers", "commands")) == {}
