"""Training rows per sequence instead of per image: the frames of a burst share one label, so one row per
sequence (frame features averaged) is several times fewer rows for the same information."""
from __future__ import annotations

import numpy as np
import pandas as pd


def to_rows(features: pd.DataFrame, seq_ids: np.ndarray, unit: str) -> pd.DataFrame:
    """`features` unchanged for unit `image`; for `sequence`, the mean over each sequence's frames."""
    if unit == "image":
        return features
    if unit != "sequence":
        raise ValueError(f"train.rows must be 'image' or 'sequence', not {unit!r}")
    return features.groupby(seq_ids, sort=True).mean()


def row_labels(labels: pd.Series, seq_ids: np.ndarray, unit: str) -> pd.Series:
    """Per-row labels: a sequence takes its frames' most common label."""
    if unit == "image":
        return labels
    return labels.groupby(seq_ids, sort=True).agg(lambda s: s.mode().iloc[0])


def row_metadata(rows: pd.DataFrame, seq_ids: np.ndarray, unit: str) -> dict[str, np.ndarray]:
    """A fit's metadata per row, as the models take it (models.split.fit_metadata): `groups`, each row's location
    (NaN for a photo, which has none), and `supplemental`, whether it is a photo; a sequence takes its frames'."""
    per_row = rows[["location", "photo"]] if unit == "image" else \
        rows[["location", "photo"]].groupby(seq_ids, sort=True).first()
    return {"groups": per_row["location"].to_numpy(),  # a nullable integer column with NA: float, NaN
            "supplemental": per_row["photo"].to_numpy(bool)}


def to_images(proba: np.ndarray, rows: pd.Index, seq_ids: np.ndarray, unit: str) -> np.ndarray:
    """Per-image probabilities from per-row ones (each frame gets its sequence's row)."""
    if unit == "image":
        return proba
    return proba[rows.get_indexer(seq_ids)]
