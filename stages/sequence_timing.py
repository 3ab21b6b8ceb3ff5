"""DVC stage `sequence_timing` (see dvc.yaml)."""
from __future__ import annotations

import pandas as pd

from data import QualityReport
from features.sequence_timing import photo_timing, sequence_timing
from infra.artifacts import FEATURES, table, write_quality
from infra.atomic import write_parquet


def run(params: dict) -> None:
    """The camera images' timing, then the season of each supplemental photo whose source dated it."""
    cfg = params["sequence_timing"]
    report = QualityReport()
    timing = sequence_timing(table("images"), cfg["max_days_from_location_median"],
                             cfg["activity_windows_hours"], report)
    photos = photo_timing(table("supplemental")["date"], timing.columns)
    report.count_read("supplemental photos dated", len(photos))
    timing = pd.concat([timing, photos]) if len(photos) else timing
    write_parquet(timing, FEATURES / "sequence_timing.parquet")
    write_quality("sequence_timing", report)
