"""DVC stage `load` (see dvc.yaml)."""
from __future__ import annotations

from pathlib import Path

from data import DataError, QualityReport, index_landsat, load_detections, load_metadata
from data.coco import TRAIN_JSON
from infra.atomic import write_parquet
from stages.common import TABLES, write_quality


def run(params: dict) -> None:
    """Read and validate every raw input once; downstream stages read only these typed tables."""
    root = Path(params["data"]["root"])
    report = QualityReport()
    images, labels, categories = load_metadata(root, report, tuple(params["data"]["valid_years"]))
    if labels.empty:
        write_quality("load", report)
        raise DataError(f"{root / TRAIN_JSON}: no train image has a usable label ({report.read['train annotations']} "
                        f"annotations read, skips in reports/quality/load.json); a model needs labelled train images")
    detections, detector_images = load_detections(root, images, report)
    landsat_index = index_landsat(root, report)
    for name, df in (("images", images), ("labels", labels), ("categories", categories),
                     ("detections", detections), ("detector_images", detector_images),
                     ("landsat_index", landsat_index)):
        write_parquet(df, TABLES / f"{name}.parquet")
    write_quality("load", report)
