"""DVC stage `sequence_timing` (see dvc.yaml)."""
from __future__ import annotations


from data import QualityReport
from features.sequence_timing import sequence_timing
from infra.atomic import write_parquet
from stages.common import FEATURES, table, write_quality


def run(params: dict) -> None:

    cfg = params["sequence_timing"]
    report = QualityReport()
    timing = sequence_timing(table("images"), cfg["max_days_from_location_median"],
                             cfg["activity_windows_hours"], report)
    write_parquet(timing, FEATURES / "sequence_timing.parquet")
    write_quality("sequence_timing", report)
