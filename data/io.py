"""File I/O of the stages: json input as Windows tools write it too, and atomic output writers, so a crashed
or killed stage never leaves a half-written file behind."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from data.quality import DataError

UTF8_BOM = b"\xef\xbb\xbf"


def json_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a json file without the UTF-8 byte-order mark that Windows tools write; a missing file
    is a DataError naming it."""
    try:
        return Path(path).read_bytes().removeprefix(UTF8_BOM)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise DataError(f"{path}: file not found") from e


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def file_inventory(root: str | os.PathLike, folders: tuple[str, ...]) -> pd.DataFrame:
    """Every file under `root`/<folder> (recursively, links not followed): relative path, size and
    modification time in ns, sorted by path, so the table is the same bytes while no file changes."""
    rows = []
    stack = [Path(root) / f for f in folders]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                rows.append((os.path.relpath(entry.path, root), st.st_size, st.st_mtime_ns))
    table = pd.DataFrame(rows, columns=["path", "size", "mtime_ns"]).astype({"size": "int64", "mtime_ns": "int64"})
    return table.sort_values("path", ignore_index=True)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
