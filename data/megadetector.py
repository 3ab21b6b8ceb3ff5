"""MegaDetector batch results as one row per box, boxes normalised to [0, 1] of the frame.

Two forms of the file are read: the competition's (each image keyed by `id`, boxes in pixels or [0, 1]) and
the one MegaDetector itself writes (format 1.1+: keyed by `file`, a path relative to the folder it ran on,
with `failure` for images it could not read), which is what users who run MegaDetector themselves hold.
"""
from __future__ import annotations

import gc
import logging
import os
import re
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pandas as pd

from data.io import json_bytes
from data.quality import DataError, QualityReport

log = logging.getLogger(__name__)

DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"  # the competition's, in the Kaggle layout
CATEGORY_CODES = {"animal": 1, "person": 2, "vehicle": 3}
# A normalised box never has a coordinate above ~1; absolute pixel boxes are almost never that small.
ABSOLUTE_THRESHOLD = 2.0
FRAME_TOLERANCE = 1e-3


class _Detection(msgspec.Struct, gc=False):
    category: str | int
    conf: float
    bbox: tuple[float, float, float, float]


class _Entry(msgspec.Struct, gc=False):
    id: str | None = None
    file: str | None = None
    detections: list[_Detection] | None = None
    max_detection_conf: float | None = None
    failure: str | None = None


class _Results(msgspec.Struct):
    images: list[_Entry]
    detection_categories: dict[str, str] = msgspec.field(default_factory=lambda: {"1": "animal", "2": "person"})


_DECODER = msgspec.json.Decoder(_Results)
_ENTRY_INDEX = re.compile(r"\$\.images\[(\d+)\]")


def _decode(path: Path) -> _Results:
    """Typed, validating parse; a malformed record is a DataError naming the image it belongs to."""
    raw = json_bytes(path)
    try:
        results = _DECODER.decode(raw)
    except msgspec.ValidationError as e:
        where = _ENTRY_INDEX.search(str(e))
        image = "?"
        if where:
            entry = orjson.loads(raw)["images"][int(where[1])]
            image = entry.get("id", entry.get("file", "?")) if isinstance(entry, dict) else "?"
        raise DataError(f"{path}: image {image!r} has a malformed record ({e})") from e
    except msgspec.DecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    unnamed = next((k for k, e in enumerate(results.images) if e.id is None and e.file is None), None)
    if unnamed is not None:
        raise DataError(f"{path}: image record #{unnamed} has neither 'id' nor 'file'")
    return results


@contextmanager
def _gc_paused():
    """Millions of short-lived parse objects: the cyclic collector would rescan them again and again."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _flatten(results: _Results) -> tuple[list[str | None], np.ndarray, list, np.ndarray, np.ndarray]:
    """Per-image ids (None where keyed by file) and box counts, and per-box category/bbox/conf, flattened
    by C-level iteration."""
    ids = [e.id for e in results.images]
    dets = [e.detections or () for e in results.images]
    counts = np.fromiter(map(len, dets), dtype=np.int64, count=len(dets))
    boxes = list(chain.from_iterable(dets))
    category = list(map(attrgetter("category"), boxes))
    conf = np.fromiter(map(attrgetter("conf"), boxes), dtype=np.float64, count=len(boxes))
    bbox = np.fromiter(chain.from_iterable(map(attrgetter("bbox"), boxes)), dtype=np.float64, count=4 * len(boxes))
    return ids, counts, category, bbox.reshape(-1, 4), conf


def match_files(files: list[str], images: pd.DataFrame) -> tuple[list[str | None], list[bool]]:
    """The image id each MegaDetector `file` path names: the image whose `split/file_name`, else whose
    `file_name`, the path ends with (whole path components, case-insensitive, either slash), and whether the
    match was ambiguous (two images fit equally well: none is taken)."""
    by_suffix: dict[str, list[str]] = {}
    for image_id, split, name in zip(images.index, images["split"], images["file_name"].astype(str)):
        for key in (name.lower(), f"{split}/{name}".lower()):
            by_suffix.setdefault(key, []).append(image_id)
    ids, ambiguous = [], []
    for file in files:
        parts = file.replace("\\", "/").lower().split("/")
        found = next((by_suffix[k] for k in ("/".join(parts[i:]) for i in range(len(parts))) if k in by_suffix),
                     [])
        ids.append(found[0] if len(found) == 1 else None)
        ambiguous.append(len(found) > 1)
    return ids, ambiguous


def _entry_ids(results: _Results, ids: list[str | None], images: pd.DataFrame, report: QualityReport
               ) -> tuple[list[str], np.ndarray]:
    """Image ids of every entry: its `id`, or the image its `file` names ("file:<path>" where none does);
    and which entries' file fits several images."""
    keyed_by_file = [k for k, i in enumerate(ids) if i is None]
    report.note("detector file keys", "file (MegaDetector batch output)" if keyed_by_file else "id (competition)")
    ambiguous = np.zeros(len(ids), dtype=bool)
    if not keyed_by_file:
        return ids, ambiguous
    files = [results.images[k].file for k in keyed_by_file]
    matched, several = match_files(files, images)
    ambiguous[keyed_by_file] = several
    ids = list(ids)
    for k, f, image_id in zip(keyed_by_file, files, matched):
        ids[k] = image_id if image_id is not None else f"file:{f}"
    return ids, ambiguous


def load_detections(root: str | os.PathLike, images: pd.DataFrame, report: QualityReport,
                    file: str = DETECTOR_JSON) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the MegaDetector json.

    Returns (detections: one row per box with image_id, category code, conf and x, y, w, h in [0, 1];
    detector_images: one row per image of `images` present in the file, with max_detection_conf
    and the number of boxes kept). Both bbox conventions are detected and normalised.
    """
    path = Path(root) / file
    with _gc_paused():
        results = _decode(path)
        ids, counts, category, bbox, conf = _flatten(results)
        ids, ambiguous = _entry_ids(results, ids, images, report)
        failures = [(k, e.failure) for k, e in enumerate(results.images) if e.failure is not None]
        names = results.detection_categories
        del results
    report.count_read("detector image entries", len(ids))
    report.count_read("detector boxes", len(conf))
    box_image = np.repeat(np.arange(len(ids)), counts)
    position, keep_entry = _usable_entries(ids, ambiguous, failures, images, report)
    code, keep_box = _usable_boxes(ids, box_image, category, _category_codes(names, path), conf, bbox,
                                   keep_entry, report)
    box_row = position[box_image]
    x0, y0, x1, y1 = _frame_corners(ids, box_image, box_row, bbox, keep_box, images, report)

    detections = pd.DataFrame({
        "image_id": pd.Categorical.from_codes(box_row[keep_box], categories=images.index),
        "category": code[keep_box],
        "conf": conf[keep_box].astype(np.float32),
        "x": x0[keep_box].astype(np.float32),
        "y": y0[keep_box].astype(np.float32),
        "w": (x1 - x0)[keep_box].astype(np.float32),
        "h": (y1 - y0)[keep_box].astype(np.float32),
    })
    kept_per_image = np.bincount(box_image[keep_box], minlength=len(ids))
    max_conf = np.zeros(len(ids))
    if keep_box.any():
        np.maximum.at(max_conf, box_image[keep_box], conf[keep_box])
    detector_images = pd.DataFrame({"image_id": ids, "max_detection_conf": max_conf,
                                    "n_boxes": kept_per_image}).loc[keep_entry].set_index("image_id")
    return detections, detector_images


def _category_codes(names: dict[str, str], path: Path) -> dict[str, int]:
    """The file's `detection_categories` keys as our codes (0: not animal, person or vehicle, warned about)."""
    unknown = {k: v for k, v in names.items() if v not in CATEGORY_CODES}
    if unknown:
        log.warning("%s: detection categories %s are not animal/person/vehicle", path, unknown)
    return {str(k): CATEGORY_CODES.get(v, 0) for k, v in names.items()}


def _usable_entries(ids: list[str], ambiguous: np.ndarray, failures: list[tuple[int, str]], images: pd.DataFrame,
                    report: QualityReport) -> tuple[np.ndarray, np.ndarray]:
    """(each entry's row in `images`, -1 if none; which entries' boxes are used): duplicates, ambiguous files,
    images not in the metadata and MegaDetector's failures are counted skips, as are images the file lacks."""
    entry_ids = pd.Index(ids, dtype=object)
    position = images.index.get_indexer(entry_ids)
    dup = entry_ids.duplicated()
    report.skip_many("duplicate detector entry (later entry skipped)", list(entry_ids[dup]))
    unknown = position < 0
    report.skip_many("detector entry whose file fits several images (entry skipped)",
                     list(entry_ids[ambiguous & ~dup]))
    report.skip_many("detector entry for an image not in the metadata", list(entry_ids[unknown & ~dup & ~ambiguous]))
    failed = np.zeros(len(ids), dtype=bool)
    failed[[k for k, _ in failures]] = True
    report.skip_many("image MegaDetector could not process ('failure' entry: detector features NA)",
                     [f"image {ids[k]}: {why}" for k, why in failures if not unknown[k] and not dup[k]])
    detected = np.zeros(len(images), dtype=bool)
    detected[position[~dup & ~unknown]] = True
    report.skip_many("image missing from the detector file (detector features NA)", list(images.index[~detected]))
    return position, ~dup & ~unknown & ~failed


def _usable_boxes(ids: list[str], box_image: np.ndarray, category: list, code_of: dict[str, int], conf: np.ndarray,
                  bbox: np.ndarray, keep_entry: np.ndarray, report: QualityReport) -> tuple[np.ndarray, np.ndarray]:
    """(each box's category code, which boxes are kept): those of usable entries with a known category and
    finite values, conf in [0, 1]; the others are counted skips naming their image."""
    factor, values = pd.factorize(np.asarray(category, dtype=object))
    value_codes = np.array([code_of.get(str(v), 0) for v in values] + [0], dtype=np.int8)
    code = value_codes[factor]  # factor -1 (missing) picks the trailing 0
    bad_cat = code == 0
    report.skip_many("detection with unknown category",
                     [f"image {ids[box_image[j]]} category={category[j]!r}" for j in np.flatnonzero(bad_cat)])
    bad_conf = ~np.isfinite(conf) | (conf < 0) | (conf > 1) | ~np.isfinite(bbox).all(axis=1)
    report.skip_many("detection with non-finite values or conf outside [0, 1]",
                     [f"image {ids[box_image[j]]}" for j in np.flatnonzero(bad_conf)])
    return code, keep_entry[box_image] & ~bad_cat & ~bad_conf


def _frame_corners(ids: list[str], box_image: np.ndarray, box_row: np.ndarray, bbox: np.ndarray,
                   keep_box: np.ndarray, images: pd.DataFrame, report: QualityReport) -> tuple[np.ndarray, ...]:
    """(x0, y0, x1, y1) of each box in [0, 1] of its frame: absolute pixel boxes (told apart by their size)
    divided by the image's size, then clipped to the frame. Boxes that cannot be placed (absolute on an image
    of unknown size, or nothing left inside the frame) are dropped from `keep_box` in place, counted."""
    def described(boxes: np.ndarray) -> list[str]:
        return [f"image {ids[box_image[j]]} bbox={bbox[j].round(4).tolist()}" for j in boxes]

    xywh = bbox.copy()
    absolute = bool(len(xywh)) and float(np.nanmax(np.abs(xywh[keep_box]), initial=0.0)) > ABSOLUTE_THRESHOLD
    report.note("detector bbox convention", "absolute pixels" if absolute else "normalised [0,1]")
    if absolute:
        frame_size = images[["width", "height"]].to_numpy(dtype=np.float64, na_value=np.nan)
        size = frame_size[box_row[keep_box]]
        unsized = np.flatnonzero(keep_box)[np.isnan(size).any(axis=1)]
        xywh[keep_box] /= np.hstack([size, size])
        keep_box[unsized] = False
        report.skip_many("absolute box on an image of unknown size", described(unsized))

    x0, y0 = xywh[:, 0], xywh[:, 1]
    x1, y1 = x0 + xywh[:, 2], y0 + xywh[:, 3]
    out = keep_box & ((x0 < -FRAME_TOLERANCE) | (y0 < -FRAME_TOLERANCE)
                      | (x1 > 1 + FRAME_TOLERANCE) | (y1 > 1 + FRAME_TOLERANCE))
    corners = tuple(np.clip(v, 0, 1) for v in (x0, y0, x1, y1))
    empty = keep_box & ((corners[2] - corners[0] <= 0) | (corners[3] - corners[1] <= 0))
    report.skip_many("box outside the frame or of zero size (box skipped)", described(np.flatnonzero(empty)))
    report.skip_many("box partly outside the frame (clipped to the frame)", described(np.flatnonzero(out & ~empty)))
    keep_box &= ~empty
    return corners


def no_detections(images: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tables `load_detections` returns, empty: where there is no detector file (the WILDS layout ships
    none), so the detector features are NA and no crops are embedded."""
    detections = pd.DataFrame({"image_id": pd.Categorical.from_codes([], categories=images.index),
                               "category": np.array([], np.int8),
                               **{c: np.array([], np.float32) for c in ("conf", "x", "y", "w", "h")}})
    detector_images = pd.DataFrame({"max_detection_conf": np.array([], np.float64),
                                    "n_boxes": np.array([], np.int64)}, index=pd.Index([], name="image_id"))
    return detections, detector_images
