"""Every exception the project defines is in `cancelq.core.errors`' drawing, or in its list
of those apart from the tree: a reader looking for what to catch finds them all there."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import cancelq.core.errors as errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cancelq", "worker", "producers", "simulator", "web")


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.stem == "__main__" or "migrations" in path.parts:
                continue  # Alembic's scripts run when imported: Alembic loads them itself
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = importlib.import_module(name.removesuffix(".__init__"))
            for value in vars(module).values():
                if inspect.isclass(value) and issubclass(value, BaseException) \
                        and value.__module__ == module.__name__:
                    found[f"{module.__name__}.{value.__qualname__}"] = value
    return found


def test_every_exception_of_the_project_is_in_the_drawing() -> None:
    drawn = set(re.findall(r"\w+", errors.__doc__ or ""))
    exceptions = _defined_exceptions()
    assert len(exceptions) > 10  # the walk found them
    assert sorted(name for name, cls in exceptions.items() if cls.__name__ not in drawn) == []


def test_the_drawn_tree_is_the_class_tree() -> None:
    """Under `CancelqError`, each class is drawn one level under its parent."""
    doc = errors.__doc__ or ""
    tree = doc[:doc.index("\n\n", doc.index("CancelqError"))]
    by_name = {cls.__name__: cls for cls in _defined_exceptions().values()}
    parents: list[tuple[int, str]] = []
    for line in tree.splitlines()[2:]:
        match = re.search(r"(?:── )?\b([A-Z]\w+)", line)
        if match is None:
            continue
        depth = match.start(1)
        while parents and parents[-1][0] >= depth:
            parents.pop()
        name = match.group(1)
        cls = by_name[name]
        if parents:
            assert parents[-1][1] in {base.__name__ for base in cls.__bases__}, name
        parents.append((depth, name))

