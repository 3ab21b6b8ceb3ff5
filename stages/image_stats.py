"""DVC stage `image_stats` (see dvc.yaml)."""
from __future__ import annotations

from data import QualityReport
from data.images import JpegPolicy
from data.supplemental import with_photos
from features.image_stats import image_stats
from infra.artifacts import FEATURES, CACHE, table, write_quality
from infra.atomic import write_parquet
from infra.compute import compute_backend


def run(params: dict) -> None:
    report = QualityReport()
    execution = params["execution"]
    # the supplemental photos beside the camera images (join keeps the camera images' rows)
    images, detections = with_photos(table("images"), table("detections"), table("supplemental"))
    with compute_backend(execution):
        stats = image_stats(images, detections, table("detector_images").index,
                            params["data"]["root"],
                            dict(params["image_stats"], n_jobs=execution["n_jobs"]), CACHE / "image_stats", report,
                            JpegPolicy.from_params(params["jpeg"]))
    write_parquet(stats, FEATURES / "image_stats.parquet")
    write_quality("image_stats", report)
