"""What the docs name exists: a renamed function or a deleted file fails here, not in a reader.

The rules, kept simple. In README.md, docs/*.md, pyproject.toml and the comments and strings
of every Python source, each backticked

- file path (a name ending in a known extension, such as `cancelq/store/keys.py`,
  `lua/begin.lua` or `docs/cli.md`) must be a file of the repository: relative to its root,
  or a path that some file's path ends with (`lua/begin.lua` is `cancelq/store/lua/begin.lua`,
  `runtime.py` the pipeline's);
- dotted name that starts with `cancelq.`, `worker.`, `producers.` or `simulator.` (such as
  `cancelq.store.audit.AuditStore.enqueue`) must import: its longest importable module, then
  attributes;
- `Class.attribute` whose class is defined in the project (such as `AuditStore.promote_due`)
  must name an attribute of one of the classes of that name.

A class or function is named where it is defined (`cancelq.core.lifecycle.Outcome`, not a
module that imports it). A path into the repository's own folders (`tests/store/...py`) is
checked backticked or not; one into an installed library (`kombu/...py`) is checked there.

Globs and placeholders (`lua/*.lua`, `<run>.csv`) are not names and are skipped.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: where the Python sources are; each file's comments and strings are read.
PY_DIRS = ("cancelq", "worker", "producers", "simulator", "web", "tests", "bench")
PACKAGES = ("cancelq", "worker", "producers", "simulator", "web")
EXTENSIONS = ("py", "lua", "md", "toml", "yml", "yaml", "txt", "png", "sh")

BACKTICKED = re.compile(r"`+([^`\n]+?)`+")
FILE = re.compile(rf"^[\w./-]+\.(?:{'|'.join(EXTENSIONS)})$")
DOTTED = re.compile(rf"^(?:{'|'.join(PACKAGES)})(?:\.\w+)+$")
FOLDERS = "|".join((*PACKAGES, *PY_DIRS, "docs"))
BARE_PATH = re.compile(rf"(?<![\w/.-])((?:{FOLDERS})/[\w./-]*\w\.(?:{'|'.join(EXTENSIONS)}))\b")
#: a glob, a placeholder, a phrase or an elision: not a name
NOT_A_NAME = ("*", "<", "{", " ", "...")
CLASS_ATTR = re.compile(r"^([A-Z]\w*[a-z]\w*)\.(\w+)$")


def _repo_files() -> list[str]:
    skip = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
    return [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*")
        if path.is_file() and not skip & set(path.relative_to(ROOT).parts)
        and not path.relative_to(ROOT).parts[0].endswith(".egg-info")
    ]


def _python_sources() -> list[Path]:
    roots = sorted(ROOT.glob("*.py"))
    return roots + [path for d in PY_DIRS for path in sorted((ROOT / d).rglob("*.py"))]


def _texts() -> Iterator[tuple[Path, int, str]]:
    """(file, line, text) for every piece of prose the rules read."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
                 ROOT / "pyproject.toml"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            yield path, number, line
    for path in _python_sources():
        source = path.read_text(encoding="utf-8")
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING):
                for offset, line in enumerate(token.string.splitlines()):
                    yield path, token.start[0] + offset, line


def _names() -> Iterator[tuple[str, str]]:
    """(`file:line`, token) for every backticked token and every bare path into our folders."""
    for path, number, line in _texts():
        where = f"{path.relative_to(ROOT)}:{number}"
        for token in BACKTICKED.findall(line):
            yield where, token.strip().removesuffix("()")
        for bare in BARE_PATH.findall(BACKTICKED.sub("", line)):
            yield where, bare


def _file_exists(name: str, files: list[str]) -> bool:
    if any(f == name or f.endswith("/" + name) for f in files):
        return True
    top = name.split("/")[0]
    if "/" not in name or not top.isidentifier() or top in (*PACKAGES, *PY_DIRS):
        return False
    try:
        origin = importlib.import_module(top).__file__
    except ImportError:
        return False
    return origin is not None and (Path(origin).parent.parent / name).is_file()


def _resolves(dotted: str) -> bool:
    """Importable, and a class or function named by the module that defines it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            target: object = importlib.import_module(module)
        except ImportError:
            continue
        for number, attribute in enumerate(parts[cut:]):
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
            defined_elsewhere = getattr(target, "__module__", module) != module
            if number == 0 and (inspect.isclass(target) or inspect.isfunction(target)) \
                    and defined_elsewhere:
                return False
        return True
    return False


def _project_classes() -> dict[str, list[type]]:
    """Class name -> the classes of that name defined in the project's packages."""
    classes: dict[str, list[type]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    found = getattr(importlib.import_module(module), node.name, None)
                    if inspect.isclass(found):
                        classes.setdefault(node.name, []).append(found)
    return classes


def _has(cls: type, attribute: str) -> bool:
    """An attribute, or a field only annotated (a protocol's, a pydantic model's)."""
    return hasattr(cls, attribute) or any(
        attribute in vars(base).get("__annotations__", {}) for base in cls.__mro__
    )


def _exists(name: str, files: list[str], classes: dict[str, list[type]]) -> bool:
    if FILE.match(name):
        return _file_exists(name, files)
    if DOTTED.match(name):
        return _resolves(name)
    if (match := CLASS_ATTR.match(name)) and match.group(1) in classes:
        return any(_has(cls, match.group(2)) for cls in classes[match.group(1)])
    return True


def test_every_backticked_file_and_name_exists() -> None:
    files = _repo_files()
    classes = _project_classes()
    missing = [
        f"{where} {name}"
        for where, name in _names()
        if not any(mark in name for mark in NOT_A_NAME) and not _exists(name, files, classes)
    ]
    assert missing == [], "named in the docs but not in the repository:\n" + "\n".join(missing)
