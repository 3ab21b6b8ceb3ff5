"""Sequence timing per image: when (time of day, season), how the burst looks, how busy the camera is.

Species differ in when they are active, and a camera that fires many times an hour is usually looking at
a herd or at waving grass. Broken clocks (unparseable, far from the camera's other images, or the same
timestamp in different sequences) give NA time features, `clock_ok` = 0 and a counted report entry.
A supplemental photo has no camera: only the season of its date, where its source gave one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from data import QualityReport

NIGHT_START, NIGHT_END = 18.5, 6.0


def check_clocks(images: pd.DataFrame, max_days_from_location_median: float, report: QualityReport) -> pd.Series:
    """Datetimes that can be trusted; the others become NaT and are counted by reason."""
    when = images["datetime"]
    report.skip_many("datetime missing or implausible (flagged by load)", list(images.index[when.isna()]))
    median = when.groupby(images["location"]).transform("median")
    far = (when - median).abs() > pd.Timedelta(days=max_days_from_location_median)
    report.skip_many(f"datetime more than {max_days_from_location_median:g} days from its camera's median",
                     [f"image {i} ({t})" for i, t in when[far].items()])
    stamp = pd.DataFrame({"location": images["location"], "when": when, "seq": images["seq_id"]})
    clash = stamp.dropna().drop_duplicates().duplicated(["location", "when"], keep=False)
    clashing = stamp.loc[clash[clash].index, ["location", "when"]].drop_duplicates()
    shared = pd.MultiIndex.from_frame(stamp[["location", "when"]]).isin(pd.MultiIndex.from_frame(clashing))
    report.skip_many("same timestamp in different sequences at one camera",
                     [f"image {i} ({t})" for i, t in when[shared].items()])
    return when.mask(far | shared)


def _activity(seq: pd.DataFrame, windows_hours: list[float]) -> pd.DataFrame:
    """Gaps to the neighbouring sequences at the same camera and sequence counts within ± each window."""
    seq = seq.dropna(subset=["start"]).sort_values(["location", "start"])
    seconds = seq["start"].to_numpy().astype("datetime64[s]").astype(np.int64)
    loc = pd.factorize(seq["location"])[0].astype(np.int64)
    key = loc * 10**11 + seconds  # one sorted axis: cameras never overlap
    same_prev = np.r_[False, loc[1:] == loc[:-1]]
    same_next = np.r_[loc[:-1] == loc[1:], False]
    gap = np.diff(seconds).astype(float) / 3600
    out = pd.DataFrame(index=seq.index)
    out["gap_prev_h"] = np.where(same_prev, np.r_[np.nan, gap], np.nan)
    out["gap_next_h"] = np.where(same_next, np.r_[gap, np.nan], np.nan)
    for hours in windows_hours:
        w = int(hours * 3600)
        n = np.searchsorted(key, key + w, side="right") - np.searchsorted(key, key - w, side="left") - 1
        out[f"sequences_within_{hours:g}h"] = n
    return out


def _season(day: pd.Series) -> dict[str, pd.Series]:
    """Day of year (0 to 365, fractional) on the unit circle."""
    return {"day_sin": np.sin(2 * np.pi * day / 365.25), "day_cos": np.cos(2 * np.pi * day / 365.25)}


def photo_timing(dates: pd.Series, columns: pd.Index) -> pd.DataFrame:
    """One row per dated photo of `dates` (calendar dates, NaT: none) with the camera rows' `columns`: the season
    of its date taken at midday (its time of day is not read, data.supplemental.ISO_DATE), every other column NA:
    a photo has no camera clock, burst or camera activity."""
    dated = dates.dropna()
    out = pd.DataFrame(np.nan, index=dated.index, columns=columns, dtype=np.float32)
    for name, value in _season(dated.dt.day_of_year - 0.5).items():
        out[name] = value.astype(np.float32)
    return out


def sequence_timing(images: pd.DataFrame, max_days_from_location_median: float, windows_hours: list[float],
                    report: QualityReport) -> pd.DataFrame:
    """One row per image of `images`."""
    when = check_clocks(images, max_days_from_location_median, report)
    hour = when.dt.hour + when.dt.minute / 60 + when.dt.second / 3600
    day = when.dt.day_of_year - 1 + hour / 24
    by_seq = when.groupby(images["seq_id"])
    timing = pd.DataFrame({
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
        **_season(day),
        "is_night": ((hour < NIGHT_END) | (hour >= NIGHT_START)).astype(float).where(when.notna()),
        "seq_num_frames": images["seq_num_frames"],
        "seq_frames_present": images.groupby("seq_id")["location"].transform("size"),
        "frame_num": images["frame_num"],
        "seq_duration_s": (by_seq.transform("max") - by_seq.transform("min")).dt.total_seconds(),
        "clock_ok": when.notna().astype(float),
        "location_images": images.groupby("location")["seq_id"].transform("size"),
        "location_sequences": images.groupby("location")["seq_id"].transform("nunique"),
    }, index=images.index)

    seq = pd.DataFrame({"location": images["location"].to_numpy(), "start": by_seq.transform("min").to_numpy()},
                       index=images["seq_id"].to_numpy()).groupby(level=0).first()
    activity = _activity(seq, windows_hours).reindex(images["seq_id"].to_numpy())
    activity.index = images.index
    return pd.concat([timing, activity], axis=1).astype(np.float32)
