"""DVC stage `detector_stats` (see dvc.yaml)."""
from __future__ import annotations


from features.detector_stats import detector_stats
from infra.artifacts import FEATURES, table
from infra.atomic import write_parquet


def run(params: dict) -> None:

    cfg = params["detector_stats"]
    stats = detector_stats(table("images"), table("detections"), table("detector_images"),
                           cfg["thresholds"], cfg["empty_threshold"], cfg["location_box_threshold"])
    write_parquet(stats, FEATURES / "detector_stats.parquet")
