"""Precomputed ("pulled") frozen embeddings: a parquet file keyed by image id, validated before use.

The format is what the embeddings stage itself writes, so embeddings computed on a GPU machine with the
same code can be copied here: an `image_id` index (or column) and blocks of float columns
`frame_emb_0..frame_emb_{d-1}` and, optionally, `crop_emb_0..crop_emb_{d-1}` (NaN where an image has no
crop). Other columns (e.g. the stage's own `seq_crop_emb_*`) are recomputed and ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.quality import DataError

VIEWS = ("frame", "crop")
COLUMN_RE = re.compile(r"^(?P<view>frame|crop)_emb_(?P<k>\d+)$")


def load_embeddings(path: str | Path, known_ids: pd.Index) -> pd.DataFrame:
    """Frame (and crop) embedding blocks of the file, float32, indexed by image id; DataError if the file
    has duplicate or unknown image ids, or blocks with missing, extra or mismatched dimensions."""
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read embeddings parquet ({e})") from e
    if "image_id" in table.columns:
        table = table.set_index("image_id")
    table.index = table.index.astype(str)
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: {len(duplicated)} duplicate image ids, e.g. {list(duplicated[:3])}")
    unknown = table.index.difference(known_ids)
    if len(unknown):
        raise DataError(f"{path}: {len(unknown)} image ids not in the metadata, e.g. {list(unknown[:3])}")
    dims = {}
    for view in VIEWS:
        ks = sorted(int(m["k"]) for c in table.columns if (m := COLUMN_RE.match(str(c))) and m["view"] == view)
        if ks != list(range(len(ks))):
            raise DataError(f"{path}: {view}_emb columns are not numbered 0..d-1 without gaps")
        dims[view] = len(ks)
    if dims["frame"] == 0:
        raise DataError(f"{path}: no frame_emb_* columns")
    if dims["crop"] not in (0, dims["frame"]):
        raise DataError(f"{path}: {dims['crop']} crop_emb columns but {dims['frame']} frame_emb columns")
    columns = [f"{v}_emb_{k}" for v in VIEWS for k in range(dims[v])]
    block = table[columns]
    not_numeric = [c for c in columns if not np.issubdtype(block[c].dtype, np.number)]
    if not_numeric:
        raise DataError(f"{path}: non-numeric embedding columns, e.g. {not_numeric[:3]}")
    return block.astype(np.float32)
