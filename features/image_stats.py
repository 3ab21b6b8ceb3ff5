"""Image statistics per image (OpenCV + scikit-image): what the pixels say without a CNN.

Night IR frames are grey, blurred frames are fast animals, and the top detector box's colour and texture
separate a spotted ocelot from a plain peccary. Motion inside the box against the burst's median frame
tells an animal from a false trigger on static vegetation. Work is per sequence (motion needs the whole
burst), decoded reduced, run in parallel chunks and cached so a rerun computes only new sequences.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from skimage.feature import local_binary_pattern

from data import ImageError, QualityReport, image_path, read_image, reduction_for
from data.images import JpegPolicy, metadata_size, report_computed
from infra.code_deps import code_digest
from infra.hashing import digest, file_identity
from infra.shard_cache import KEY, ShardCache


LBP_POINTS, LBP_BINS = 8, 10  # uniform LBP with 8 neighbours has 10 codes
CROP_SIZE = 64
COLUMNS = (["channel_spread", "is_greyscale", "brightness", "contrast", "blur", "box_present",
            "box_hue_sin", "box_hue_cos", "box_saturation", "box_value", "box_b", "box_g", "box_r",
            "box_contrast", "box_lbp_entropy"] + [f"box_lbp_{k}" for k in range(LBP_BINS)]
           + ["motion_box", "motion_frame"])
GREY_SPREAD = 0.02


def _crop(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    h, w = image.shape[:2]
    x0, y0 = int(box[0] * w), int(box[1] * h)
    x1, y1 = max(int(np.ceil((box[0] + box[2]) * w)), x0 + 1), max(int(np.ceil((box[1] + box[3]) * h)), y0 + 1)
    crop = image[y0:min(y1, h), x0:min(x1, w)]
    return crop if crop.size else None


def frame_stats(image: np.ndarray, box: tuple | None) -> dict[str, float]:
    """Whole-frame statistics and, if a box is given, colour and texture of its crop."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    spread = float((image.max(axis=2).astype(np.int16) - image.min(axis=2)).mean() / 255)
    out = {"channel_spread": spread, "is_greyscale": float(spread < GREY_SPREAD),
           "brightness": float(grey.mean() / 255), "contrast": float(grey.std() / 255),
           "blur": float(cv2.Laplacian(grey, cv2.CV_64F).var()), "box_present": 0.0}
    crop = _crop(image, box) if box is not None else None
    if crop is None:
        return out
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float64)
    hue = hsv[:, 0] * (2 * np.pi / 180)
    b, g, r = crop.reshape(-1, 3).mean(axis=0) / 255
    small = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
    lbp = local_binary_pattern(small, LBP_POINTS, 1, method="uniform")
    hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=LBP_BINS)[:LBP_BINS] / lbp.size
    nonzero = hist[hist > 0]
    out.update(box_present=1.0, box_hue_sin=float(np.sin(hue).mean()), box_hue_cos=float(np.cos(hue).mean()),
               box_saturation=float(hsv[:, 1].mean() / 255), box_value=float(hsv[:, 2].mean() / 255),
               box_b=float(b), box_g=float(g), box_r=float(r), box_contrast=float(small.std() / 255),
               box_lbp_entropy=float(-(nonzero * np.log2(nonzero)).sum()),
               **{f"box_lbp_{k}": float(v) for k, v in enumerate(hist)})
    return out


def sequence_stats(frames: list[dict], short_side: int, policy: JpegPolicy) -> list[dict]:
    """Statistics of each frame of one sequence; `frames` have image_id, path, width, height (metadata's,
    may be NA), box."""
    decoded, rows = {}, []
    for f in frames:
        row = {"image_id": f["image_id"], "error": None, "problem": None}
        try:
            image, _, _, row["problem"] = read_image(f["path"], lambda w, h: reduction_for(w, h, short_side),
                                                     (f["width"], f["height"]), policy)
            decoded[f["image_id"]] = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
            row.update(frame_stats(image, f["box"]))
        except ImageError as e:
            row["error"] = e.reason
        rows.append(row)
    shapes = {g.shape for g in decoded.values()}
    if len(decoded) >= 2 and len(shapes) == 1:
        median = np.median(np.stack(list(decoded.values())), axis=0)
        for f, row in zip(frames, rows):
            grey = decoded.get(f["image_id"])
            if grey is None:
                continue
            diff = np.abs(grey - median) / 255
            row["motion_frame"] = float(diff.mean())
            crop = _crop(diff[..., None], f["box"]) if f["box"] is not None else None
            row["motion_box"] = float(crop.mean()) if crop is not None else np.nan
    return rows


def _chunk_stats(work: list[tuple[str, list[dict]]], short_side: int, policy: JpegPolicy) -> pd.DataFrame:
    rows = [dict(r, **{KEY: key}) for key, frames in work for r in sequence_stats(frames, short_side, policy)]
    return pd.DataFrame(rows).set_index("image_id").reindex(columns=COLUMNS + ["error", "problem", KEY])


def top_boxes(detections: pd.DataFrame, min_conf: float) -> pd.Series:
    """The most confident box (x, y, w, h) per image, if at least `min_conf`; of boxes tied in confidence
    (MegaDetector rounds to 3-4 decimals, so ties are common) the first in the detector file. A stable sort:
    numpy's default quicksort dispatches to SIMD sorts that order ties differently on AVX2 and AVX-512 CPUs,
    which gave another top box, and other box features, on another machine."""
    sure = detections.loc[detections["conf"] >= min_conf].sort_values("conf", ascending=False, kind="stable")
    sure = sure.drop_duplicates("image_id").set_index("image_id")
    return pd.Series(list(zip(sure["x"], sure["y"], sure["w"], sure["h"])), index=sure.index.astype(str), dtype=object)


def image_stats(images: pd.DataFrame, detections: pd.DataFrame, detected: pd.Index, root: str | Path, cfg: dict,
                cache_dir: str | Path, report: QualityReport, policy: JpegPolicy = JpegPolicy()) -> pd.DataFrame:
    """One row per image; unreadable images get NA and a counted report entry. `detected`: the images the
    detector file covers; for the others (a supplemental photo among them) whether a box is present is unknown
    (NA), not 0."""
    boxes = top_boxes(detections, cfg["box_min_conf"])
    readable = images[images["file_ok"]]
    code = code_digest(__file__)
    work = []
    folder = "folder" if "folder" in readable else "split"  # a supplemental photo lies in its source's folder
    for seq_id, seq in readable.sort_values(["seq_id", "frame_num"]).groupby("seq_id", sort=False):
        frames = [{"image_id": i, "path": str(image_path(root, d, f)), "width": metadata_size(w),
                   "height": metadata_size(h), "box": boxes.get(i)}
                  for i, d, f, w, h in seq[[folder, "file_name", "width", "height"]].itertuples()]
        key = digest(code, cfg["short_side"], policy, [(file_identity(f["path"]), f["box"], f["width"], f["height"])
                                                       for f in frames])
        work.append((key, frames))

    computed, n_fresh, n_cached = ShardCache(cache_dir).fill(
        work, partial(_chunk_stats, short_side=cfg["short_side"], policy=policy), chunk_size=cfg["chunk_sequences"],
        n_jobs=cfg["n_jobs"], desc="image_stats", unit="img", columns=COLUMNS + ["error", "problem"], size_of=len)
    computed = report_computed(report, images, computed, n_fresh, n_cached)
    computed.loc[~images.index.isin(detected), "box_present"] = np.nan
    return computed[COLUMNS].astype(np.float32)
