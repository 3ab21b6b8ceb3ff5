"""DVC stage `landsat_summary` (see dvc.yaml)."""
from __future__ import annotations

from data import QualityReport
from features.landsat_summary import landsat_summary
from infra.artifacts import CACHE, FEATURES, table, write_quality
from infra.atomic import write_parquet
from infra.compute import compute_backend


def run(params: dict) -> None:
    report = QualityReport()
    execution = params["execution"]
    with compute_backend(execution):
        summary = landsat_summary(table("images"), table("landsat_index"),
                                  dict(params["landsat_summary"], n_jobs=execution["n_jobs"]),
                                  CACHE / "landsat_summary", report)
    write_parquet(summary, FEATURES / "landsat_summary.parquet")
    write_quality("landsat_summary", report)
