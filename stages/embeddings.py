"""DVC stage `embeddings` (see dvc.yaml)."""
from __future__ import annotations

from data import QualityReport
from data.images import JpegPolicy
from data.io import write_parquet
from features.embeddings import embeddings
from stages.common import FEATURES, CACHE, compute_backend, table, write_quality


def run(params: dict) -> None:
    report, cfg, compute = QualityReport(), params["embeddings"], params["compute"]
    if compute["backend"] == "dask":  # each worker runs torch on its own threads, not the machine's
        cfg = dict(cfg, threads=compute["threads_per_worker"])
    with compute_backend(compute):
        vectors = embeddings(table("images"), table("detections"), params["data"]["root"], cfg,
                             CACHE / "embeddings", report, JpegPolicy.from_params(params["jpeg"]))
    write_parquet(vectors, FEATURES / "embeddings.parquet")
    write_quality("embeddings", report)
