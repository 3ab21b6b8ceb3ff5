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
import pyarrow as pa
import pyarrow.parquet as pq

from data.quality import DataError

VIEWS = ("frame", "crop")
COLUMN_RE = re.compile(r"^(?P<view>frame|crop)_emb_(?P<k>\d+)$")


def float_block(path: str | Path, columns: list[str]) -> np.ndarray:
    """(rows, len(columns)) float32 of these parquet columns, read column by column: a 1280-wide block of
    280k rows is 1.4 GB, and pandas would hold the file's other blocks too."""
    read = pq.read_table(path, columns=columns)
    out = np.empty((read.num_rows, len(columns)), np.float32)
    for j, c in enumerate(columns):
        out[:, j] = read.column(c).to_numpy()
    return out


def load_embeddings(path: str | Path, known_ids: pd.Index) -> tuple[pd.Index, np.ndarray, np.ndarray | None]:
    """(image ids, frame block, crop block or None) of the file, float32, one view in memory at a time;
    DataError if the file has duplicate or unknown image ids, or blocks with missing, extra or mismatched
    dimensions."""
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read embeddings parquet ({e})") from e
    index_columns = (schema.pandas_metadata or {}).get("index_columns", [])
    id_column = "image_id" if "image_id" in schema.names else next(
        (c for c in index_columns if isinstance(c, str)), None)
    if id_column is None:
        raise DataError(f"{path}: no image_id column or index")
    ids = pd.Index(pq.read_table(path, columns=[id_column]).column(0).to_pandas()).astype(str)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: {len(duplicated)} duplicate image ids, e.g. {list(duplicated[:3])}")
    unknown = ids.difference(known_ids)
    if len(unknown):
        raise DataError(f"{path}: {len(unknown)} image ids not in the metadata, e.g. {list(unknown[:3])}")
    dims = {}
    for view in VIEWS:
        ks = sorted(int(m["k"]) for c in schema.names if (m := COLUMN_RE.match(str(c))) and m["view"] == view)
        if ks != list(range(len(ks))):
            raise DataError(f"{path}: {view}_emb columns are not numbered 0..d-1 without gaps")
        dims[view] = len(ks)
    if dims["frame"] == 0:
        raise DataError(f"{path}: no frame_emb_* columns")
    if dims["crop"] not in (0, dims["frame"]):
        raise DataError(f"{path}: {dims['crop']} crop_emb columns but {dims['frame']} frame_emb columns")
    columns = {v: [f"{v}_emb_{k}" for k in range(dims[v])] for v in VIEWS}
    not_numeric = [c for cols in columns.values() for c in cols
                   if not (pa.types.is_floating(schema.field(c).type) or pa.types.is_integer(schema.field(c).type))]
    if not_numeric:
        raise DataError(f"{path}: non-numeric embedding columns, e.g. {not_numeric[:3]}")
    return ids, float_block(path, columns["frame"]), float_block(path, columns["crop"]) if dims["crop"] else None
