"""DVC stage `landsat_summary` (see dvc.yaml)."""
from __future__ import annotations

from data import QualityReport
from features.landsat_summary import landsat_summary
from infra.atomic import write_parquet
from stages.common import CACHE, FEATURES, compute_backend, table, write_quality


def run(params: dict) -> None:
    report = QualityReport()
    with compute_backend(params["compute"]):
        summary = landsat_summary(table("images"), table("landsat_index"), params["landsat_summary"],
                                  CACHE / "landsat_summary", report)
    write_parquet(summary, FEATURES / "landsat_summary.parquet")
    write_quality("landsat_summary", report)
