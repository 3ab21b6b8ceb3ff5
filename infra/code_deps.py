"""The project modules a module imports, transitively: what a cache key hashes as its code part and what a
DVC stage lists as its code deps, so neither can miss a module that the code really reads."""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Iterator

from infra.hashing import source_digest

PROJECT = Path(__file__).resolve().parents[1]


def _module_file(dotted: str) -> Path | None:
    """The project file of a dotted module name, or None for a module from outside the project."""
    base = PROJECT.joinpath(*dotted.split("."))
    return next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)


def _defining_files(package_init: Path, package: str, name: str) -> list[Path]:
    """The modules a package's `__init__` takes `name` from (itself if it defines `name`)."""
    for node in ast.walk(ast.parse(package_init.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.startswith(package + ".") and any(a.name == name for a in node.names):
            return [f for f in [_module_file(node.module)] if f]
    return [package_init]


def _imported_files(path: Path) -> Iterator[Path]:
    """Project files that the import statements of `path` name, anywhere in the module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from filter(None, (_module_file(a.name) for a in node.names))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            package = _module_file(node.module)
            for alias in node.names:
                submodule = _module_file(f"{node.module}.{alias.name}")
                if submodule:
                    yield submodule
                elif package and package.name == "__init__.py":
                    yield from _defining_files(package, node.module, alias.name)
                elif package:
                    yield package


def code_files(*modules: str | os.PathLike) -> list[str]:
    """The project source files that `modules` import, transitively, themselves included, as sorted paths
    relative to the project. What a cache key hashes and what a DVC stage lists as code deps come from
    here, so neither can miss a module that the code really reads. A name taken from a package's
    `__init__` counts as the module the package took it from."""
    seen: set[Path] = set()
    todo = [Path(m).resolve() for m in modules]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imported_files(f))
    return sorted(f.relative_to(PROJECT).as_posix() for f in seen)


def code_digest(module: str | os.PathLike) -> str:
    """Hash of the module and every project module it imports: a cache key's code part."""
    return source_digest(*(PROJECT / f for f in code_files(module)))
