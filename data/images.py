"""Reading camera-trap JPEGs safely and cheaply (reduced decode when the consumer wants small images)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from data.quality import QualityReport

REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


class ImageError(ValueError):
    """An image that cannot be used (missing, not a JPEG, truncated, undecodable)."""


def image_path(root: str | os.PathLike, split: str, file_name: str) -> Path:
    """Path of an image whose `file_name` the metadata loader has already checked to stay inside the folder."""
    return Path(root) / split / file_name


def reduction_for(width: int, height: int, target: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4, 8) that keeps the short side at least `target` pixels."""
    short = min(width, height)
    return max((f for f in REDUCED_FLAGS if short // f >= target), default=1)


def read_image(path: str | os.PathLike, reduction: int = 1) -> np.ndarray:
    """Decode a JPEG to BGR uint8, `reduction` times smaller per side; ImageError if unusable."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise ImageError(f"{path}: file missing") from e
    if not data.startswith(b"\xff\xd8"):
        raise ImageError(f"{path}: not a JPEG")
    if not data.rstrip(b"\x00")[-2:] == b"\xff\xd9":
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS[reduction])
    if image is None:
        raise ImageError(f"{path}: undecodable JPEG")
    return image


def report_unreadable(report: QualityReport, images: pd.DataFrame, reasons: pd.Series) -> None:
    """Count every image that could not be read: files the loader flagged (missing or escaping the image
    folder) and, per reason, those that failed to decode (`reasons`: image id -> reason or None)."""
    report.skip_many("image not readable: missing or unsafe file_name (see load report)",
                     list(images.index[~images["file_ok"]]))
    reasons = reasons.dropna()
    for reason, ids in reasons.groupby(reasons).groups.items():
        report.skip_many(f"image not readable: {reason}", list(ids))
