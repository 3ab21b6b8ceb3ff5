"""DVC stage `embeddings` (see dvc.yaml)."""
from __future__ import annotations

from data import QualityReport
from data.io import write_parquet
from features.embeddings import embeddings
from stages.common import FEATURES, CACHE, table, write_quality


def run(params: dict) -> None:
    report = QualityReport()
    vectors = embeddings(table("images"), table("detections"), params["data"]["root"], params["embeddings"],
                         CACHE / "embeddings", report)
    write_parquet(vectors, FEATURES / "embeddings.parquet")
    write_quality("embeddings", report)
