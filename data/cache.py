"""A chunked on-disk cache of per-item results, so a rerun computes only what changed.

Each finished chunk is one parquet shard written atomically, so an interrupted run keeps every chunk it
finished and never leaves a partial one. Rows carry the key they were computed for; a key should hash
everything the result depends on (input file identity, parameters, the code that computed it).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
from tqdm import tqdm

from data.io import write_parquet

KEY = "cache_key"
PROJECT = Path(__file__).resolve().parents[1]


def file_identity(path: str | os.PathLike) -> tuple[str, int, int] | None:
    """(path, size, mtime in ns) of a file, or None if it is missing: cheap to get for 280k images."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


def digest(*parts) -> str:
    """Stable hash of json-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def source_digest(*files: str | os.PathLike) -> str:
    """Hash of the files' contents (the code that computed a result, or model weights), read in blocks so
    that weights of hundreds of MB need not fit in memory."""
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


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


class ShardCache:
    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def load(self, keys: set[str]) -> pd.DataFrame:
        """Cached rows whose key is in `keys` (the newest shard wins if a key was computed twice)."""
        shards = sorted(self.folder.glob("shard-*.parquet"), key=lambda p: p.stat().st_mtime_ns)
        frames = [f for f in (pd.read_parquet(p) for p in shards) if len(f)]
        if not frames:
            return pd.DataFrame()
        rows = pd.concat(frames)  # then one lookup: one per shard was shards x keys (20 min at 280k images)
        rows = rows[rows[KEY].isin(keys)]
        return rows[~rows.index.duplicated(keep="last")]

    def add(self, rows: pd.DataFrame) -> None:
        """Store one chunk of rows (each with its `cache_key`) as a new shard."""
        name = digest(sorted(set(rows[KEY])))
        write_parquet(rows, self.folder / f"shard-{name}.parquet")

    def add_each(self, cached: pd.DataFrame, jobs: Iterable[pd.DataFrame], total: int, desc: str, unit: str,
                 columns: list[str]) -> tuple[pd.DataFrame, int]:
        """`cached` plus every chunk of rows `jobs` yields, each stored as a shard as soon as it arrives (a
        killed run keeps it), with a progress bar over `total` rows; also how many rows were computed."""
        fresh = []
        with tqdm(total=total, desc=desc, unit=unit) as bar:
            for rows in jobs:
                self.add(rows)
                fresh.append(rows)
                bar.update(len(rows))
        rows = pd.concat([cached, *fresh]) if fresh or len(cached) else pd.DataFrame(columns=columns)
        return rows, sum(len(r) for r in fresh)
