"""Hashes that decide reuse: of json-serialisable parts, of file contents, and a file's cheap identity."""
from __future__ import annotations

import hashlib
import json
import os


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
