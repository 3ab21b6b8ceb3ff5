"""Sequence timing per image: time of day and season on circles, burst position, clock health."""
from __future__ import annotations

import numpy as np
import pandas as pd


def sequence_timing(images: pd.DataFrame) -> pd.DataFrame:
    """One row per image; a broken clock gives NA time features and `clock_ok` = 0."""
    when = images["datetime"]
    hour = when.dt.hour + when.dt.minute / 60 + when.dt.second / 3600
    day = when.dt.day_of_year - 1 + hour / 24
    timing = pd.DataFrame({
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        "day_sin": np.sin(2 * np.pi * day / 365.25),
        "day_cos": np.cos(2 * np.pi * day / 365.25),
        "is_night": ((hour < 6) | (hour >= 18.5)).astype(float).where(when.notna()),
        "seq_num_frames": images["seq_num_frames"],
        "frame_num": images["frame_num"],
        "clock_ok": images["datetime_ok"].astype(float),
    }, index=images.index)
    return timing.astype(np.float32)
