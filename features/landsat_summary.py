"""Landsat-8 summaries per camera site: what the land around the camera looks like, through the clouds.

Habitat drives which species pass a camera, and a 6 km Landsat patch sees habitat: forest, grass,
water, how green and when. Clouds are the norm, so every statistic is over clear pixels only (pixelqa
bits decoded with whole-array numpy operations), pooled over dates. Per image, the NDVI of the clear
acquisition nearest in time says how green the site was that season.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from data import BANDS, QualityReport, read_patch
from infra.code_deps import code_digest
from infra.hashing import digest, file_identity
from infra.shard_cache import KEY, ShardCache


FILL, CLEAR, WATER, SHADOW, SNOW, CLOUD = (1 << b for b in range(6))
TERRAIN_OCCLUSION = 1 << 10
INDICES = {"ndvi": ("nir", "red"), "ndwi": ("green", "nir"), "nbr": ("nir", "swir2")}
BAND_INDEX = {name: i for i, name in enumerate(BANDS)}
REGIONS = ("patch", "centre")
INDEX_RESOLUTION = 1e-3  # spectral indices lie in [-1, 1]; quantiles to a thousandth


def usable_pixels(qa: np.ndarray, max_cloud_confidence: int, max_cirrus_confidence: int = 3) -> np.ndarray:
    """Pixels that are not fill, cloud, cloud shadow, snow or terrain-occluded, within the cloud and cirrus
    confidence limits."""
    qa = qa.astype(np.uint16, copy=False)
    bad = (qa & (FILL | SHADOW | SNOW | CLOUD | TERRAIN_OCCLUSION)) != 0
    return ~bad & (((qa >> 6) & 3) <= max_cloud_confidence) & (((qa >> 8) & 3) <= max_cirrus_confidence)


def spectral_indices(pixels: np.ndarray) -> np.ndarray:
    """(N, 9) band values to (N, 3) NDVI, NDWI, NBR; NaN where the denominator is 0."""
    out = np.empty((len(pixels), len(INDICES)), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (p, q) in enumerate(INDICES.values()):
            a, b = pixels[:, BAND_INDEX[p]], pixels[:, BAND_INDEX[q]]
            out[:, k] = (a - b) / (a + b)
    return out


class StreamingQuantiles:
    """Quantiles of many batches of values kept as counts per bin: memory O(bins), not O(pixels).

    Exact (equal to np.percentile) when the values lie on the bin grid, e.g. int16 reflectance with
    resolution 1; otherwise within half a bin.
    """

    def __init__(self, n_columns: int, resolution: float) -> None:
        self.resolution = resolution
        self.lo = [0] * n_columns
        self.counts = [np.zeros(0, np.int64) for _ in range(n_columns)]

    def add(self, values: np.ndarray) -> None:
        """Add an (N, n_columns) batch; non-finite values are ignored."""
        exact = values.dtype.kind in "iu" and self.resolution == 1
        for c in range(len(self.counts)):
            col = values[:, c]
            if exact:
                binned = col.astype(np.int64)
            else:
                col = col[np.isfinite(col)]
                binned = np.rint(col / self.resolution).astype(np.int64)
            if not len(binned):
                continue
            lo, hi = int(binned.min()), int(binned.max())
            if len(self.counts[c]):
                lo, hi = min(lo, self.lo[c]), max(hi, self.lo[c] + len(self.counts[c]) - 1)
            merged = np.bincount(binned - lo, minlength=hi - lo + 1)
            if len(self.counts[c]):
                merged[self.lo[c] - lo: self.lo[c] - lo + len(self.counts[c])] += self.counts[c]
            self.lo[c], self.counts[c] = lo, merged

    def quantiles(self, qs: list[float]) -> np.ndarray:
        """(len(qs), n_columns) with linear interpolation between order statistics, as np.percentile."""
        out = np.full((len(qs), len(self.counts)), np.nan)
        for c, counts in enumerate(self.counts):
            cum = np.cumsum(counts)
            if not len(cum) or cum[-1] == 0:
                continue
            for i, q in enumerate(qs):
                k = q * (cum[-1] - 1)
                below, above = np.searchsorted(cum, [np.floor(k), np.ceil(k)], side="right")
                v0, v1 = (self.lo[c] + below) * self.resolution, (self.lo[c] + above) * self.resolution
                out[i, c] = v0 + (k - np.floor(k)) * (v1 - v0)
        return out


def _centre(height: int, width: int, window: int) -> tuple[slice, slice]:
    top, left = max((height - window) // 2, 0), max((width - window) // 2, 0)
    return slice(top, top + window), slice(left, left + window)


def feature_names() -> list[str]:
    values = list(BANDS) + list(INDICES)
    names = []
    for region in REGIONS:
        names += [f"{region}_{v}_{stat}" for v in values for stat in ("median", "iqr")]
        names += [f"{region}_ndvi_q{q}" for q in range(1, 5)] + [f"{region}_clear_share"]
    return names + ["clear_dates"]


def site_summary(site_index: pd.DataFrame, cfg: dict) -> tuple[np.ndarray, pd.DataFrame, int]:
    """(the site's feature vector in `feature_names()` order, per-date centre NDVI of clear acquisitions,
    pixels whose bands hold NaN: float patches mark missing data so, and they count as fill)."""
    bands_q = {r: StreamingQuantiles(len(BANDS), cfg["band_resolution"]) for r in REGIONS}
    indices_q = {r: StreamingQuantiles(len(INDICES), INDEX_RESOLUTION) for r in REGIONS}
    ndvi_by_quarter = {r: [StreamingQuantiles(1, INDEX_RESOLUTION) for _ in range(4)] for r in REGIONS}
    shares = {r: [] for r in REGIONS}
    dated, clear_dates, nan_pixels = [], 0, 0
    for ms_path, qa_path, date in site_index[["multispectral", "pixelqa", "date"]].itertuples(index=False):
        bands, qa = read_patch(ms_path, qa_path)
        usable = usable_pixels(np.asarray(qa), cfg["max_cloud_confidence"], cfg["max_cirrus_confidence"])
        if bands.dtype.kind == "f":
            nan = np.isnan(bands).any(axis=2)
            nan_pixels += int(nan.sum())
            usable &= ~nan
        window = _centre(*usable.shape, cfg["centre_window"])
        for region, (b, u) in (("patch", (bands, usable)), ("centre", (bands[window], usable[window]))):
            share = float(u.mean())
            shares[region].append(share)
            if share < cfg["min_clear_share"]:
                continue
            clear_dates += region == "patch"
            pixels = np.asarray(b)[u]
            indices = spectral_indices(pixels)
            bands_q[region].add(pixels)
            indices_q[region].add(indices)
            ndvi_by_quarter[region][(date.month - 1) // 3].add(indices[:, :1])
            if region == "centre":
                ndvi = indices[:, 0][np.isfinite(indices[:, 0])]
                dated.append((date, float(np.median(ndvi)) if len(ndvi) else np.nan))
    values = []
    for region in REGIONS:
        q25, q50, q75 = np.hstack([bands_q[region].quantiles([.25, .5, .75]),
                                   indices_q[region].quantiles([.25, .5, .75])])
        values += list(np.column_stack([q50, q75 - q25]).ravel())
        values += [q.quantiles([.5])[0, 0] for q in ndvi_by_quarter[region]]
        values.append(float(np.mean(shares[region])) if shares[region] else np.nan)
    values.append(clear_dates)
    return np.asarray(values, np.float64), pd.DataFrame(dated, columns=["date", "ndvi"]), nan_pixels


def _nearest_ndvi(images: pd.DataFrame, per_date: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """NDVI of the clear acquisition nearest in time to each image, within the window."""
    out = pd.DataFrame({"ndvi_nearest": np.nan, "days_to_nearest": np.nan}, index=images.index)
    timed = images.loc[images["datetime"].notna(), ["location", "datetime"]].reset_index()
    if per_date.empty or timed.empty:
        return out
    acquisitions = per_date.rename(columns={"site": "location"})
    # merge_asof needs one datetime resolution and one key dtype on both sides
    timed = timed.astype({"datetime": "datetime64[ns]", "location": "int64"})
    acquisitions = acquisitions.astype({"date": "datetime64[ns]", "location": "int64"})
    joined = pd.merge_asof(timed.sort_values("datetime", kind="stable"),
                           acquisitions.sort_values("date", kind="stable"), left_on="datetime", right_on="date",
                           by="location", direction="nearest", tolerance=pd.Timedelta(days=window_days))
    joined = joined.set_index("image_id")
    out.loc[joined.index, "ndvi_nearest"] = joined["ndvi"]
    out.loc[joined.index, "days_to_nearest"] = (joined["datetime"] - joined["date"]).abs().dt.days
    return out


def _site_row(chunk: list[tuple[str, tuple[int, pd.DataFrame]]], cfg: dict) -> pd.DataFrame:
    """One site's summary as a cache row (a chunk is one site): the feature vector and its clear dates (days
    since 1970) and NDVI."""
    [(key, (site, site_index))] = chunk
    values, dated, nan_pixels = site_summary(site_index, cfg)
    days = dated["date"].to_numpy().astype("datetime64[D]").astype(np.int64)
    return pd.DataFrame({"values": [values], "days": [days], "ndvi": [dated["ndvi"].to_numpy(np.float64)],
                         "nan_pixels": [nan_pixels], KEY: [key]}, index=pd.Index([site], name="site"))


def _site_summaries(groups: dict[int, pd.DataFrame], cfg: dict, cache_dir: str | Path, report: QualityReport
                    ) -> pd.DataFrame:
    """Cache rows of every site, computing (in parallel, or on Dask) only sites whose files or params changed."""
    code = code_digest(__file__)
    settings = {k: v for k, v in sorted(cfg.items()) if k != "n_jobs"}
    keys = {s: digest(code, settings, [file_identity(p) for p in g["multispectral"]] +
                      [file_identity(p) for p in g["pixelqa"]]) for s, g in groups.items()}
    rows, n_fresh, n_cached = ShardCache(cache_dir).fill(
        [(keys[s], (s, g)) for s, g in groups.items()], partial(_site_row, cfg=cfg), chunk_size=1,  # a shard a site
        n_jobs=cfg["n_jobs"], desc="landsat_summary", unit="site", columns=["values", "days", "ndvi", "nan_pixels"])
    report.count_read("Landsat sites computed", n_fresh)
    report.count_read("Landsat sites from cache", n_cached)
    return rows


def landsat_summary(images: pd.DataFrame, landsat_index: pd.DataFrame, cfg: dict, cache_dir: str | Path,
                    report: QualityReport) -> pd.DataFrame:
    """One row per image: its camera site's summary, plus the nearest-in-time NDVI."""
    sites = sorted(set(images["location"]))
    wanted = set(sites)
    groups = {s: g for s, g in landsat_index.groupby("site") if s in wanted}
    jobs = sorted(groups)
    rows = _site_summaries(groups, cfg, cache_dir, report).reindex(jobs)
    names = feature_names()
    per_site = pd.DataFrame(np.array(list(rows["values"])).reshape(len(jobs), len(names)), index=jobs,
                            columns=names).reindex(sites)
    days = [np.asarray(d, np.int64) for d in rows["days"]]
    per_date = pd.DataFrame({
        "date": np.concatenate([np.array([], np.int64), *days]).astype("datetime64[D]").astype("datetime64[ns]"),
        "ndvi": np.concatenate([np.array([]), *rows["ndvi"]]),
        "site": np.repeat(np.asarray(jobs, np.int64), [len(d) for d in days])})
    report.skip_many("camera site without Landsat files (features NA)",
                     [f"site {s}" for s in sites if s not in groups])
    report.skip_many("camera site without a clear-enough acquisition (features NA)",
                     [f"site {s}" for s in jobs if per_site.loc[s, "clear_dates"] == 0])
    for site, n in rows["nan_pixels"].items():
        report.skip("Landsat pixel with NaN bands (treated as fill)", f"site {site}", int(n))
    report.count_read("Landsat sites summarised", len(jobs))
    report.count_read("Landsat clear acquisitions (centre window)", len(per_date))
    out = per_site.reindex(images["location"].to_numpy())
    out.index = images.index
    nearest = _nearest_ndvi(images, per_date, cfg["nearest_window_days"])
    report.count_read("images with a clear acquisition within the window", int(nearest["ndvi_nearest"].notna().sum()))
    return pd.concat([out, nearest], axis=1).astype(np.float32)
