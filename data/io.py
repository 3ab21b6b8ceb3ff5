"""Reading the raw files: json input as Windows tools write it too, and the inventory of the data folders."""
from __future__ import annotations

import os
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


def file_inventory(root: str | os.PathLike, folders: tuple[str, ...]) -> pd.DataFrame:
    """Every file under `root`/<folder> (recursively, links not followed), or `root`/<folder> itself where it
    is a file: relative path, size and modification time in ns, sorted by path, so the table is the same
    bytes while no file changes."""
    rows = []
    stack = [Path(root) / f for f in folders]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except NotADirectoryError:
            st = top.stat(follow_symlinks=False)
            rows.append((os.path.relpath(top, root), st.st_size, st.st_mtime_ns))
            continue
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                rows.append((os.path.relpath(entry.path, root), st.st_size, st.st_mtime_ns))
    table = pd.DataFrame(rows, columns=["path", "size", "mtime_ns"]).astype({"size": "int64", "mtime_ns": "int64"})
    return table.sort_values("path", ignore_index=True)
