"""MegaDetector statistics per image: how many boxes of each kind, how confident, how big and where."""
from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORY_NAMES = {1: "animal", 2: "person", 3: "vehicle"}


def detector_stats(images: pd.DataFrame, detections: pd.DataFrame, detector_images: pd.DataFrame,
                   thresholds: list[float]) -> pd.DataFrame:
    """One row per image; images absent from the detector file get NA everywhere (not zero boxes)."""
    index = images.index
    columns: dict[str, pd.Series] = {}
    per_cat = detections.groupby(["image_id", "category"], observed=True)["conf"]
    for threshold in thresholds:
        above = detections.loc[detections["conf"] >= threshold]
        counts = above.groupby(["image_id", "category"], observed=True).size().unstack(fill_value=0)
        for code, name in CATEGORY_NAMES.items():
            columns[f"n_{name}_{threshold:g}"] = counts.get(code, pd.Series(dtype=float)).reindex(index, fill_value=0)
    max_conf = per_cat.max().unstack()
    for code, name in CATEGORY_NAMES.items():
        columns[f"max_conf_{name}"] = max_conf.get(code, pd.Series(dtype=float)).reindex(index, fill_value=0.0)

    top = detections.sort_values(["image_id", "conf"], ascending=[True, False]).drop_duplicates("image_id")
    top = top.set_index("image_id").reindex(index)
    columns["top_conf"] = top["conf"].fillna(0.0)
    columns["top_is_person"] = (top["category"] == 2).astype(float)
    columns["top_cx"] = top["x"] + top["w"] / 2
    columns["top_cy"] = top["y"] + top["h"] / 2
    columns["top_w"] = top["w"]
    columns["top_h"] = top["h"]
    columns["top_area"] = top["w"] * top["h"]
    columns["top_aspect"] = top["w"] / top["h"]
    columns["n_boxes"] = detector_images["n_boxes"].reindex(index)

    stats = pd.DataFrame(columns, index=index).astype(np.float32)
    stats.loc[~index.isin(detector_images.index)] = np.nan
    return stats
