"""DVC stage `join` (see dvc.yaml)."""
from __future__ import annotations

import logging

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from infra.atomic import atomic_path
from stages.common import EMBEDDINGS, FEATURES, FAMILIES, FEATURE_TABLE, table

log = logging.getLogger("stages.join")


def run(params: dict) -> None:
    """One feature table keyed by image id; family switches choose the columns, prefixed by family. Joined
    in Arrow, column by column: a family already in the image order (the 4.3 GB of embeddings at full
    scale) is not copied, where pandas' concat and reindex copied everything two or three times."""
    images = table("images")
    chosen = [f for f in FAMILIES if params["features"][f]]
    if not chosen:
        raise SystemExit("features: every family is switched off; switch at least one on")
    # the embeddings switch brings every backbone's family the embeddings stage wrote
    files = {f: [FEATURES / f"{f}.parquet"] for f in chosen}
    files["embeddings"] = sorted(EMBEDDINGS.glob("*.parquet")) if "embeddings" in chosen else []
    # the index column, and pandas metadata for string column names
    skeleton = pa.Table.from_pandas(pd.DataFrame(index=images.index, columns=pd.Index([], dtype=str)))
    columns = dict(zip(skeleton.column_names, skeleton.columns))
    for path in (p for f in chosen for p in files[f]):
        family, part = path.stem, pq.read_table(path)
        index = part.schema.pandas_metadata["index_columns"][0]
        ids = pd.Index(part.column(index).to_pandas())
        if not ids.equals(images.index):
            positions = ids.get_indexer(images.index)  # -1: an image the family has no row for, null
            part = part.take(pa.array(positions, mask=positions < 0))
        columns.update((f"{family}__{name}", part.column(name)) for name in part.column_names if name != index)
    joined = pa.table(columns).replace_schema_metadata(skeleton.schema.metadata)
    log.info("join: %d images x %d features from %s", joined.num_rows, joined.num_columns - 1, chosen)
    with atomic_path(FEATURE_TABLE) as tmp:
        pq.write_table(joined, tmp)
