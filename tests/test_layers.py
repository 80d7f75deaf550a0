"""The layering of docs/architecture.md, checked: arrows only point down.

Every import in every module counts, including imports inside functions, so a lazy import
cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: cancelq's layers, lowest first; a module may import its own layer and those before it.
CANCELQ_LAYERS = ("core", "care360", "store", "archive", "pipeline", "bulk", "ops")

#: top-level packages, and the ones each may import from (besides itself).
ALLOWED = {
    "cancelq": set(),
    "worker": {"cancelq"},
    "producers": {"cancelq", "simulator", "web"},  # the demo starts the simulator; `cancelq web`
    "simulator": set(),
    "web": {"cancelq"},
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_top_level_packages_import_only_downward(package: str) -> None:
    ours = set(ALLOWED)
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if _top(name) in ours and _top(name) != package and _top(name) not in ALLOWED[package]
    ]
    assert wrong == []


def test_cancelq_layers_import_only_the_layers_beneath() -> None:
    wrong: list[str] = []
    for path in _modules("cancelq"):
        parts = path.relative_to(ROOT / "cancelq").parts
        if len(parts) < 2:
            continue  # cancelq/__init__.py
        rank = CANCELQ_LAYERS.index(parts[0])
        for name in _imports(path):
            pieces = name.split(".")
            if pieces[0] == "cancelq" and len(pieces) > 1:
                if CANCELQ_LAYERS.index(pieces[1]) > rank:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_every_cancelq_subpackage_is_a_known_layer() -> None:
    packages = {p.name for p in (ROOT / "cancelq").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(CANCELQ_LAYERS)
