"""Benchmark: MegaDetector parse + detector_stats against a naive json.load + per-image Python loops.

Run by hand: `.venv/bin/python benchmarks/detector_stats.py [--images 200000]`. Builds a MegaDetector
json in the real format (top-100 style: many low-confidence boxes per image), times both paths in
one run, asserts they give equal columns and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import QualityReport, load_detections  # noqa: E402
from data.megadetector import DETECTOR_JSON  # noqa: E402
from features.detector_stats import CATEGORY_NAMES, detector_stats  # noqa: E402

THRESHOLDS = [0.1, 0.3, 0.5, 0.8]
EMPTY, SURE = 0.1, 0.5


def build(root: Path, n_images: int, seed: int) -> pd.DataFrame:
    """Write the detector json under `root`; return the images table the loader validates against."""
    rng = np.random.default_rng(seed)
    ids = [f"img{i:07d}" for i in range(n_images)]
    counts = np.minimum(rng.geometric(1 / 12, n_images) - 1, 100)
    n = int(counts.sum())
    conf = np.round(np.where(rng.random(n) < 0.9, rng.uniform(0.005, 0.1, n), rng.uniform(0.1, 1.0, n)), 3)
    x, y = rng.uniform(0, 0.8, n).round(4), rng.uniform(0, 0.8, n).round(4)
    w, h = rng.uniform(0.01, 0.2, n).round(4), rng.uniform(0.01, 0.2, n).round(4)
    cat = rng.choice(["1", "2", "3"], n, p=[0.9, 0.08, 0.02])
    entries, k = [], 0
    for image_id, c in zip(ids, counts):
        dets = [{"category": cat[j], "conf": float(conf[j]),
                 "bbox": [float(x[j]), float(y[j]), float(w[j]), float(h[j])]}
                for j in range(k, k + c)]
        dets.sort(key=lambda d: -d["conf"])
        entries.append({"id": image_id, "max_detection_conf": dets[0]["conf"] if dets else 0.0, "detections": dets})
        k += c
    path = root / DETECTOR_JSON
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"images": entries, "detection_categories": {"1": "animal", "2": "person",
                                                                            "3": "vehicle"}, "info": {}}))
    seq = np.arange(n_images) // 3
    return pd.DataFrame({"seq_id": [f"s{s}" for s in seq], "location": seq % 200, "width": 1920, "height": 1080},
                        index=pd.Index(ids, name="image_id"))


def ours(root: Path, images: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    detections, detector_images = load_detections(root, images, QualityReport())
    return detector_stats(images, detections, detector_images, THRESHOLDS, EMPTY, SURE), len(detections)


def naive(root: Path, images: pd.DataFrame) -> pd.DataFrame:
    """The obvious code: json.load, then loops over images and boxes."""
    doc = json.load(open(root / DETECTOR_JSON))
    codes = {"1": 1, "2": 2, "3": 3}
    rows = {}
    for entry in doc["images"]:
        r = {"n_boxes": 0.0}
        for t in THRESHOLDS:
            for name in CATEGORY_NAMES.values():
                r[f"n_{name}_{t:g}"] = 0.0
            r[f"area_sum_{t:g}"] = 0.0
        confs = defaultdict(list)
        centres = defaultdict(list)
        top = None
        for d in entry["detections"]:
            c = codes[d["category"]]
            bx, by, bw, bh = d["bbox"]
            r["n_boxes"] += 1
            confs[c].append(d["conf"])
            for t in THRESHOLDS:
                if d["conf"] >= t:
                    r[f"n_{CATEGORY_NAMES[c]}_{t:g}"] += 1
                    r[f"area_sum_{t:g}"] += bw * bh
                    centres[t].append((bx + bw / 2, by + bh / 2))
            if top is None or d["conf"] > top[0]:
                top = (d["conf"], c, bx, by, bw, bh)
        for t in THRESHOLDS:
            pts = centres[t]
            if len(pts) > 1:
                r[f"centre_spread_{t:g}"] = math.sqrt(statistics.pvariance([p[0] for p in pts])
                                                      + statistics.pvariance([p[1] for p in pts]))
            else:
                r[f"centre_spread_{t:g}"] = 0.0
        for c, name in CATEGORY_NAMES.items():
            r[f"max_conf_{name}"] = max(confs[c]) if confs[c] else 0.0
            r[f"mean_conf_{name}"] = sum(confs[c]) / len(confs[c]) if confs[c] else 0.0
        if top:
            conf, c, bx, by, bw, bh = top
            r.update(top_conf=conf, top_is_person=float(c == 2), top_cx=bx + bw / 2, top_cy=by + bh / 2,
                     top_w=bw, top_h=bh, top_area=bw * bh, top_aspect=bw / bh)
        else:
            r.update(top_conf=0.0, top_is_person=0.0, top_cx=math.nan, top_cy=math.nan, top_w=math.nan,
                     top_h=math.nan, top_area=math.nan, top_aspect=math.nan)
        rows[entry["id"]] = r

    seqs, locs = defaultdict(list), defaultdict(list)
    for image_id, seq_id, location in zip(images.index, images["seq_id"], images["location"]):
        seqs[seq_id].append(image_id)
        locs[location].append(image_id)
    for members in seqs.values():
        tops = [rows[i]["top_conf"] for i in members]
        areas = [rows[i]["top_area"] for i in members if not math.isnan(rows[i]["top_area"])]
        for i in members:
            r = rows[i]
            r["seq_top_conf_max"] = max(tops)
            r["seq_top_conf_mean"] = sum(tops) / len(tops)
            r["seq_top_area_mean"] = sum(areas) / len(areas) if areas else math.nan
            r["seq_frames_detected"] = float(len(members))
            r["seq_rank_top_conf"] = 1.0 + sum(1 for v in tops if v > r["top_conf"])
            for t in THRESHOLDS:
                r[f"seq_frames_animal_{t:g}"] = float(sum(1 for j in members if rows[j][f"n_animal_{t:g}"] > 0))
                r[f"seq_max_n_animal_{t:g}"] = max(rows[j][f"n_animal_{t:g}"] for j in members)
    for members in locs.values():
        rate = sum(1 for i in members if rows[i]["top_conf"] < EMPTY) / len(members)
        sure = [rows[i]["top_h"] for i in members if rows[i]["top_conf"] >= SURE]
        for i in members:
            rows[i]["loc_false_trigger_rate"] = rate
            rows[i]["loc_median_top_h"] = statistics.median(sure) if sure else math.nan
    return pd.DataFrame.from_dict(rows, orient="index")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = build(root, args.images, args.seed)
        size_mb = (root / DETECTOR_JSON).stat().st_size / 1e6
        t0 = time.perf_counter()
        fast, n_boxes = ours(root, images)
        t1 = time.perf_counter()
        slow = naive(root, images)
        t2 = time.perf_counter()
    slow = slow.reindex(index=fast.index, columns=fast.columns)
    pd.testing.assert_frame_equal(fast, slow.astype(np.float32), check_exact=False, rtol=1e-4, atol=1e-5)
    ours_s, naive_s = t1 - t0, t2 - t1
    print(f"MegaDetector json: {args.images:,} images, {n_boxes:,} boxes, {size_mb:.0f} MB")
    print(f"ours  (msgspec + vectorised): {ours_s:7.2f} s  {n_boxes / ours_s / 1e6:6.2f} M boxes/s  "
          f"{args.images / ours_s:10,.0f} images/s")
    print(f"naive (json + Python loops): {naive_s:7.2f} s  {n_boxes / naive_s / 1e6:6.2f} M boxes/s  "
          f"{args.images / naive_s:10,.0f} images/s")
    print(f"speed-up: {naive_s / ours_s:.1f}x  (columns equal: {fast.shape[1]} columns x {len(fast):,} images)")


if __name__ == "__main__":
    main()
