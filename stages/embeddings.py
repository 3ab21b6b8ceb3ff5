"""DVC stage `embeddings` (see dvc.yaml)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from data import QualityReport
from data.images import JpegPolicy
from data.io import atomic_path
from features.embeddings import embeddings
from stages.common import FEATURES, CACHE, compute_backend, table, write_quality

ROW_GROUP = 32_768  # rows converted to Arrow at a time: pandas would convert the whole 4.3 GB table at once


def run(params: dict) -> None:
    report, cfg, compute = QualityReport(), params["embeddings"], params["compute"]
    if compute["backend"] == "dask":  # each worker runs torch on its own threads, not the machine's
        cfg = dict(cfg, threads=compute["threads_per_worker"])
    with compute_backend(compute):
        vectors = embeddings(table("images"), table("detections"), params["data"]["root"], cfg,
                             CACHE / "embeddings", report, JpegPolicy.from_params(params["jpeg"]))
    schema = pa.Schema.from_pandas(vectors.iloc[:0])
    with atomic_path(FEATURES / "embeddings.parquet") as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for lo in range(0, len(vectors), ROW_GROUP):
            writer.write_table(pa.Table.from_pandas(vectors.iloc[lo:lo + ROW_GROUP], schema=schema))
    write_quality("embeddings", report)
