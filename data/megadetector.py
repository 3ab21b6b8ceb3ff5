"""MegaDetector batch results as one row per box, boxes normalised to [0, 1] of the frame."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from data.coco import read_json
from data.quality import DataError, QualityReport

log = logging.getLogger(__name__)

DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"
CATEGORY_CODES = {"animal": 1, "person": 2, "vehicle": 3}
# A normalised box never has a coordinate above ~1; absolute pixel boxes are almost never that small.
ABSOLUTE_THRESHOLD = 2.0
FRAME_TOLERANCE = 1e-3


def _flatten(entries: list, path: Path) -> tuple[list, np.ndarray, list, np.ndarray, np.ndarray]:
    """Per-image ids and box counts, and per-box bbox/category/conf, with list comprehensions (no per-box loop body)."""
    try:
        ids = [str(e["id"]) for e in entries]
        dets = [e.get("detections") or [] for e in entries]
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: an image entry lacks 'id' ({e})") from e
    counts = np.fromiter((len(d) for d in dets), dtype=np.int64, count=len(dets))
    try:
        bbox = np.array([b["bbox"] for d in dets for b in d], dtype=np.float64).reshape(-1, 4)
        category = [b["category"] for d in dets for b in d]
        conf = np.array([b["conf"] for d in dets for b in d], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        owner = next((i for i, d in zip(ids, dets)
                      if any(not isinstance(b, dict) or len(b.get("bbox") or []) != 4 or "conf" not in b
                             or "category" not in b for b in d)), "?")
        raise DataError(f"{path}: image {owner!r} has a malformed detection ({e})") from e
    return ids, counts, category, bbox, conf


def load_detections(root: str | os.PathLike, images: pd.DataFrame, report: QualityReport
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the MegaDetector json.

    Returns (detections: one row per box with image_id, category code, conf and x, y, w, h in [0, 1];
    detector_images: one row per image of `images` present in the file, with max_detection_conf
    and the number of boxes kept). Both bbox conventions are detected and normalised.
    """
    path = Path(root) / DETECTOR_JSON
    doc = read_json(path)
    entries = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{path}: top-level 'images' must be a list")
    names = doc.get("detection_categories") or {"1": "animal", "2": "person"}
    unknown_names = {k: v for k, v in names.items() if v not in CATEGORY_CODES}
    if unknown_names:
        log.warning("%s: detection categories %s are not animal/person/vehicle", path, unknown_names)
    code_of = {str(k): CATEGORY_CODES.get(v, 0) for k, v in names.items()}

    ids, counts, category, bbox, conf = _flatten(entries, path)
    report.count_read("detector image entries", len(ids))
    report.count_read("detector boxes", len(conf))
    box_image = np.repeat(np.arange(len(ids)), counts)
    entry = pd.DataFrame({"image_id": ids})

    dup = entry["image_id"].duplicated().to_numpy()
    report.skip_many("duplicate detector entry (later entry skipped)", list(entry.loc[dup, "image_id"]))
    unknown = ~entry["image_id"].isin(images.index).to_numpy()
    report.skip_many("detector entry for an image not in the metadata", list(entry.loc[unknown & ~dup, "image_id"]))
    keep_entry = ~dup & ~unknown
    missing = images.index.difference(entry.loc[keep_entry, "image_id"])
    report.skip_many("image missing from the detector file (detector features NA)", list(missing))

    code = pd.Series(category, dtype=object).astype(str).map(code_of)
    bad_cat = (code.isna() | (code == 0)).to_numpy()
    report.skip_many("detection with unknown category",
                     [f"image {ids[box_image[j]]} category={category[j]!r}" for j in np.flatnonzero(bad_cat)])
    bad_conf = ~np.isfinite(conf) | (conf < 0) | (conf > 1) | ~np.isfinite(bbox).all(axis=1)
    report.skip_many("detection with non-finite values or conf outside [0, 1]",
                     [f"image {ids[box_image[j]]}" for j in np.flatnonzero(bad_conf)])
    keep_box = keep_entry[box_image] & ~bad_cat & ~bad_conf

    box_ids = np.asarray(ids, dtype=object)[box_image]
    xywh = bbox.copy()
    absolute = bool(len(xywh)) and float(np.nanmax(np.abs(xywh[keep_box]), initial=0.0)) > ABSOLUTE_THRESHOLD
    report.note("detector bbox convention", "absolute pixels" if absolute else "normalised [0,1]")
    if absolute:
        size = images.loc[box_ids[keep_box], ["width", "height"]].to_numpy(dtype=np.float64, na_value=np.nan)
        no_size = np.isnan(size).any(axis=1)
        report.skip_many("absolute box on an image of unknown size",
                         [f"image {i}" for i in box_ids[keep_box][no_size]])
        xywh[keep_box] /= np.hstack([size, size])
        keep_box[np.flatnonzero(keep_box)[no_size]] = False

    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]
    out = keep_box & ((x0 < -FRAME_TOLERANCE) | (y0 < -FRAME_TOLERANCE)
                      | (x1 > 1 + FRAME_TOLERANCE) | (y1 > 1 + FRAME_TOLERANCE))
    cx0, cy0 = np.clip(x0, 0, 1), np.clip(y0, 0, 1)
    cx1, cy1 = np.clip(x1, 0, 1), np.clip(y1, 0, 1)
    empty = keep_box & ((cx1 - cx0 <= 0) | (cy1 - cy0 <= 0))
    report.skip_many("box outside the frame or of zero size (box skipped)",
                     [f"image {i} bbox={b.round(4).tolist()}" for i, b in zip(box_ids[empty], bbox[empty])])
    report.skip_many("box partly outside the frame (clipped to the frame)",
                     [f"image {i} bbox={b.round(4).tolist()}" for i, b in zip(box_ids[out & ~empty], bbox[out & ~empty])])
    keep_box &= ~empty

    detections = pd.DataFrame({
        "image_id": pd.array(box_ids[keep_box], dtype="string"),
        "category": code.to_numpy()[keep_box].astype(np.int8),
        "conf": conf[keep_box].astype(np.float32),
        "x": cx0[keep_box].astype(np.float32),
        "y": cy0[keep_box].astype(np.float32),
        "w": (cx1 - cx0)[keep_box].astype(np.float32),
        "h": (cy1 - cy0)[keep_box].astype(np.float32),
    })
    kept_per_image = np.bincount(box_image[keep_box], minlength=len(ids))
    max_conf = np.zeros(len(ids))
    if keep_box.any():
        np.maximum.at(max_conf, box_image[keep_box], conf[keep_box])
    detector_images = pd.DataFrame({"image_id": ids, "max_detection_conf": max_conf,
                                    "n_boxes": kept_per_image}).loc[keep_entry].set_index("image_id")
    return detections, detector_images
