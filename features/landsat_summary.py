"""Landsat-8 summaries per camera site: cloud-masked band medians and spectral indices over dates."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from data import BANDS, QualityReport, read_patch

log = logging.getLogger(__name__)

FILL, WATER, SHADOW, SNOW, CLOUD = 1 << 0, 1 << 2, 1 << 3, 1 << 4, 1 << 5
MIN_CLEAR_SHARE = 0.01
INDICES = {"ndvi": ("nir", "red"), "ndwi": ("green", "nir"), "nbr": ("nir", "swir2")}


def usable_pixels(qa: np.ndarray, max_cloud_confidence: int) -> np.ndarray:
    """Pixels that are neither fill, cloud, cloud shadow nor snow, with cloud confidence at most the limit."""
    qa = qa.astype(np.uint16, copy=False)
    bad = (qa & (FILL | SHADOW | SNOW | CLOUD)) != 0
    return ~bad & (((qa >> 6) & 3) <= max_cloud_confidence)


def _date_summary(bands: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Band medians and index medians over the usable pixels of one acquisition."""
    pixels = bands[usable].astype(np.float32)
    b = {name: pixels[:, i] for i, name in enumerate(BANDS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        indices = [(b[p] - b[q]) / (b[p] + b[q]) for p, q in INDICES.values()]
    return np.concatenate([np.median(pixels, axis=0), [np.nanmedian(v) for v in indices]])


def site_summary(site_index: pd.DataFrame, max_cloud_confidence: int) -> tuple[np.ndarray, float, int]:
    """(median over clear-enough dates of each date's summary, mean clear share, dates used)."""
    summaries, shares = [], []
    for ms_path, qa_path in site_index[["multispectral", "pixelqa"]].itertuples(index=False):
        bands, qa = read_patch(ms_path, qa_path)
        usable = usable_pixels(np.asarray(qa), max_cloud_confidence)
        share = float(usable.mean())
        shares.append(share)
        if share >= MIN_CLEAR_SHARE:
            summaries.append(_date_summary(np.asarray(bands), usable))
    n_values = len(BANDS) + len(INDICES)
    if not summaries:
        return np.full(n_values, np.nan), float(np.mean(shares)) if shares else np.nan, 0
    return np.nanmedian(np.vstack(summaries), axis=0), float(np.mean(shares)), len(summaries)


def landsat_summary(images: pd.DataFrame, landsat_index: pd.DataFrame, max_cloud_confidence: int,
                    n_jobs: int, report: QualityReport) -> pd.DataFrame:
    """One row per image, from its camera's site; sites without usable data give NA and a report entry."""
    sites = sorted(set(images["location"]))
    groups = dict(tuple(landsat_index.groupby("site")))
    jobs = [s for s in sites if s in groups]
    results = Parallel(n_jobs=n_jobs)(delayed(site_summary)(groups[s], max_cloud_confidence) for s in jobs)
    names = [f"{b}_median" for b in BANDS] + [f"{i}_median" for i in INDICES]
    rows = {}
    for site, (values, share, n_dates) in zip(jobs, results):
        rows[site] = list(values) + [share, n_dates]
    report.skip_many("camera site without Landsat files (features NA)", [f"site {s}" for s in sites if s not in groups])
    report.skip_many("camera site without a clear-enough acquisition (features NA)",
                     [f"site {s}" for s, r in rows.items() if r[-1] == 0])
    report.count_read("Landsat sites summarised", len(rows))
    per_site = pd.DataFrame.from_dict(rows, orient="index", columns=names + ["clear_share", "n_clear_dates"])
    per_site = per_site.reindex(sites)
    out = per_site.reindex(images["location"].to_numpy())
    out.index = images.index
    return out.astype(np.float32)
