"""DVC stage `load` (see dvc.yaml)."""
from __future__ import annotations

import logging
from pathlib import Path

from data import DataError, QualityReport, index_landsat, load_detections, load_metadata
from data.camtrap_dp import DESCRIPTOR, load_camtrap_dp
from data.coco import TRAIN_JSON
from data.landsat import empty_index
from data.megadetector import no_detections
from data.quality import count_per_split
from data.supplemental import load_supplemental
from data.wilds import METADATA_CSV, load_wilds
from infra.artifacts import TABLES, write_quality
from infra.atomic import write_parquet

log = logging.getLogger("stages.load")
LAYOUTS = ("kaggle", "wilds", "camtrap_dp")


def run(params: dict) -> None:
    """Read and validate every raw input once; downstream stages read only these typed tables."""
    cfg = params["data"]
    root, layout, media_root = Path(cfg["root"]), cfg["layout"], cfg["media_root"] or None
    if layout not in LAYOUTS:
        raise DataError(f"params.yaml: data.layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    report = QualityReport()
    report.note("layout", layout)
    valid_years = tuple(cfg["valid_years"])
    if layout == "wilds":
        images, labels, categories, original_locations = load_wilds(root, report, valid_years)
    elif layout == "camtrap_dp":
        images, labels, categories = load_camtrap_dp(root, report, valid_years, media_root)
        original_locations = False
    else:
        (images, labels, categories), original_locations = load_metadata(root, report, valid_years), True
    if labels.empty:
        write_quality("load", report)
        where = root / {"wilds": METADATA_CSV, "camtrap_dp": DESCRIPTOR}.get(layout, TRAIN_JSON)
        raise DataError(f"{where}: no train image has a usable label (skips in reports/quality/load.json); a model "
                        f"needs labelled train images")
    if layout != "kaggle" and not (root / cfg["detector_file"]).is_file():
        off(report, "detector", f"no MegaDetector file at {root / cfg['detector_file']} (data.detector_file): "
                                f"the detector family and the crops are off")
        detections, detector_images = no_detections(images)
    else:
        detections, detector_images = load_detections(root, images, report, cfg["detector_file"])
    if original_locations:
        landsat_index = index_landsat(root, report)
    else:
        off(report, "landsat", "a Camtrap DP package has no iWildCam Landsat tree: the Landsat family is off"
            if layout == "camtrap_dp" else f"{root / METADATA_CSV} has no original iWildCam `location` column (only "
                                           f"location_remapped): Landsat sites cannot be matched, the Landsat family "
                                           f"is off")
        landsat_index = empty_index()
    supplemental = load_supplemental(root, cfg["supplemental"], categories["name"], images.index,
                                     cfg["supplemental_detector_min_conf"], valid_years, report)
    # files that exist but do not decode are counted by the stages decoding them, and every image left without
    # pixels by the join
    count_per_split("load", images, ~images["file_ok"].to_numpy(), "without_usable_file",
                    "images without a usable file, per split", report, cfg["warn_unusable_share"],
                    "have no usable file (missing, empty, unreadable header or escaping the folder; examples in "
                    "reports/quality/load.json)")
    for name, df in (("images", images), ("labels", labels), ("categories", categories),
                     ("detections", detections), ("detector_images", detector_images),
                     ("landsat_index", landsat_index), ("supplemental", supplemental)):
        write_parquet(df, TABLES / f"{name}.parquet")
    write_quality("load", report)


def off(report: QualityReport, family: str, why: str) -> None:
    """A family the data cannot feed: one line in the log and in the load report."""
    log.warning("load: %s", why)
    report.note(f"{family} off", why)
