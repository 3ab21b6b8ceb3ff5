"""DVC stage `load` (see dvc.yaml)."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from data import DataError, QualityReport, index_landsat, load_detections, load_metadata
from data.coco import TRAIN_JSON
from data.landsat import empty_index
from data.megadetector import no_detections
from data.wilds import METADATA_CSV, load_wilds
from infra.atomic import write_parquet
from stages.common import TABLES, write_quality

log = logging.getLogger("stages.load")
LAYOUTS = ("kaggle", "wilds")


def run(params: dict) -> None:
    """Read and validate every raw input once; downstream stages read only these typed tables."""
    cfg = params["data"]
    root, layout = Path(cfg["root"]), cfg["layout"]
    if layout not in LAYOUTS:
        raise DataError(f"params.yaml: data.layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    report = QualityReport()
    report.note("layout", layout)
    valid_years = tuple(cfg["valid_years"])
    if layout == "wilds":
        images, labels, categories, original_locations = load_wilds(root, report, valid_years)
    else:
        (images, labels, categories), original_locations = load_metadata(root, report, valid_years), True
    if labels.empty:
        write_quality("load", report)
        where = root / (METADATA_CSV if layout == "wilds" else TRAIN_JSON)
        raise DataError(f"{where}: no train image has a usable label (skips in reports/quality/load.json); a model "
                        f"needs labelled train images")
    if layout == "wilds" and not (root / cfg["detector_file"]).is_file():
        off(report, "detector", f"no MegaDetector file at {root / cfg['detector_file']} (data.detector_file): "
                                f"the detector family and the crops are off")
        detections, detector_images = no_detections(images)
    else:
        detections, detector_images = load_detections(root, images, report, cfg["detector_file"])
    if original_locations:
        landsat_index = index_landsat(root, report)
    else:
        off(report, "landsat", f"{root / METADATA_CSV} has no original iWildCam `location` column (only "
                               f"location_remapped): Landsat sites cannot be matched, the Landsat family is off")
        landsat_index = empty_index()
    report_unusable(images, report, cfg["warn_unusable_share"])
    for name, df in (("images", images), ("labels", labels), ("categories", categories),
                     ("detections", detections), ("detector_images", detector_images),
                     ("landsat_index", landsat_index)):
        write_parquet(df, TABLES / f"{name}.parquet")
    write_quality("load", report)


def report_unusable(images, report: QualityReport, warn_share: float) -> None:
    """Per split (the official WILDS split, or train/test), the images whose file cannot give pixels (missing,
    escaping the folder, empty, header unreadable) and their share, with a warning past `warn_share`: a
    partial download must be obvious. Files that exist but do not decode are counted by the stages that
    decode them; the join counts every image left without pixels."""
    split = images["wilds_split"] if "wilds_split" in images else images["split"]
    counts = pd.DataFrame({"images": split.value_counts(), "without_usable_file": split[~images["file_ok"]]
                           .value_counts()}).fillna(0).astype(int)
    counts["share"] = (counts["without_usable_file"] / counts["images"]).round(4)
    report.note("images without a usable file, per split", counts.to_dict(orient="index"))
    for name, row in counts[counts["share"] > warn_share].iterrows():
        log.warning("load: %d of %d %s images (%.1f%%) have no usable file (missing, empty, unreadable header or "
                    "escaping the folder; examples in reports/quality/load.json): is the download complete?",
                    row["without_usable_file"], row["images"], name, 100 * row["share"])


def off(report: QualityReport, family: str, why: str) -> None:
    """A family the data cannot feed: one line in the log and in the load report."""
    log.warning("load: %s", why)
    report.note(f"{family} off", why)
