"""MegaDetector statistics per image, per sequence and per camera location.

How many boxes of each kind and how confident (is anything there, is it a person), how big and where
(body size, distance to the camera), how the frames of a burst agree, and how often a camera fires on
nothing. Nothing here uses labels, so test cameras get the same features. Everything is vectorised
over the detections table (one row per box) with integer image codes and `np.bincount`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORY_NAMES = {1: "animal", 2: "person", 3: "vehicle"}


def _image_stats(codes: np.ndarray, det: pd.DataFrame, n_images: int, thresholds: list[float]) -> dict:
    """Per-image columns from per-box arrays; `codes` maps each box to its image's row."""
    conf = det["conf"].to_numpy(np.float64)
    category = det["category"].to_numpy()
    w, h = det["w"].to_numpy(np.float64), det["h"].to_numpy(np.float64)
    cx, cy = det["x"].to_numpy(np.float64) + w / 2, det["y"].to_numpy(np.float64) + h / 2
    area = w * h

    def total(weights=None, mask=None):
        if mask is None:
            return np.bincount(codes, weights=weights, minlength=n_images)
        return np.bincount(codes[mask], weights=None if weights is None else weights[mask], minlength=n_images)

    cols: dict[str, np.ndarray] = {"n_boxes": total()}
    for t in thresholds:
        above = conf >= t
        for code, name in CATEGORY_NAMES.items():
            cols[f"n_{name}_{t:g}"] = total(mask=above & (category == code))
        n = total(mask=above)
        cols[f"area_sum_{t:g}"] = total(area, above)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (total(cx * cx, above) / n - (total(cx, above) / n) ** 2
                   + total(cy * cy, above) / n - (total(cy, above) / n) ** 2)
        cols[f"centre_spread_{t:g}"] = np.where(n > 1, np.sqrt(np.clip(var, 0, None)), 0.0)
    for code, name in CATEGORY_NAMES.items():
        mine = category == code
        best = np.zeros(n_images)
        np.maximum.at(best, codes[mine], conf[mine])
        n = total(mask=mine)
        cols[f"max_conf_{name}"] = best
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"mean_conf_{name}"] = np.where(n > 0, total(conf, mine) / n, 0.0)

    order = np.lexsort((-conf, codes))  # by image, most confident first
    first = order[np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])] if len(order) else order
    top = {k: np.full(n_images, np.nan) for k in ("top_cx", "top_cy", "top_w", "top_h")}
    top_conf, top_person = np.zeros(n_images), np.zeros(n_images)
    rows = codes[first]
    top_conf[rows], top_person[rows] = conf[first], category[first] == 2
    for key, values in (("top_cx", cx), ("top_cy", cy), ("top_w", w), ("top_h", h)):
        top[key][rows] = values[first]
    cols.update(top_conf=top_conf, top_is_person=top_person, **top)
    cols["top_area"] = top["top_w"] * top["top_h"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["top_aspect"] = top["top_w"] / top["top_h"]
    return cols


def detector_stats(images: pd.DataFrame, detections: pd.DataFrame, detector_images: pd.DataFrame,
                   thresholds: list[float], empty_threshold: float, location_box_threshold: float
                   ) -> pd.DataFrame:
    """One row per image of `images`.

    Images absent from the detector file get NA per-image columns (unknown, not "no boxes"); their
    sequence and location columns come from the frames that were detected.
    """
    index = images.index
    codes = pd.Categorical(detections["image_id"], categories=index).codes.astype(np.int64)
    if (codes < 0).any():
        raise ValueError("detections reference images that are not in the images table")
    stats = pd.DataFrame(_image_stats(codes, detections, len(index), thresholds), index=index)
    stats.loc[detector_images.index.get_indexer(index) < 0] = np.nan

    seq_code = pd.factorize(images["seq_id"])[0]
    location = images["location"].to_numpy()
    detected = stats["top_conf"].notna()
    seq = stats.groupby(seq_code)
    # a count over a burst none of whose frames is in the detector file is unknown, not zero
    frames_detected = seq["top_conf"].transform("count")
    seq_detected = frames_detected > 0
    extra = {
        "seq_top_conf_max": seq["top_conf"].transform("max"),
        "seq_top_conf_mean": seq["top_conf"].transform("mean"),
        "seq_top_area_mean": seq["top_area"].transform("mean"),
        "seq_frames_detected": frames_detected.where(seq_detected),
        "seq_rank_top_conf": seq["top_conf"].rank(ascending=False, method="min"),
    }
    for t in thresholds:
        has_animal = (stats[f"n_animal_{t:g}"] > 0).astype(float).where(detected)
        extra[f"seq_frames_animal_{t:g}"] = has_animal.groupby(seq_code).transform("sum").where(seq_detected)
        extra[f"seq_max_n_animal_{t:g}"] = seq[f"n_animal_{t:g}"].transform("max")
    nothing = (stats["top_conf"] < empty_threshold).astype(float).where(detected)
    extra["loc_false_trigger_rate"] = nothing.groupby(location).transform("mean")
    sure_h = stats["top_h"].where(stats["top_conf"] >= location_box_threshold)
    extra["loc_median_top_h"] = sure_h.groupby(location).transform("median")
    stats = pd.concat([stats, pd.DataFrame(extra, index=index)], axis=1)
    return stats.astype(np.float32)
