"""The README's layout table names every module, so the folder list and the table agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_of_the_layers_is_in_the_readme_layout_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Layout"):readme.index("## Configuration")]
    named = set(re.findall(r"`([\w/]+\.py)`", table))
    modules = {
        str(path.relative_to(ROOT))
        for package in ("cancelq", "worker", "producers", "web")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "cli" not in path.parts
    }
    assert sorted(modules - named) == []


def test_the_architecture_diagram_names_every_module_of_the_layers() -> None:
    """docs/architecture.md draws the layers by module name: none may go missing from it."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawing = text[text.index("```"):text.index("```", text.index("```") + 3)]
    drawn = set(re.findall(r"\w+", drawing))
    modules = {
        path.stem
        for package in ("cancelq", "worker", "producers", "web")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "cli" not in path.parts
    }
    assert sorted(modules - drawn) == []
