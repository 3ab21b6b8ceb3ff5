"""The Landsat-8 `iwildcam_rs_npy` tree: an index of usable (site, date) patches, validated from npy headers."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.quality import QualityReport

LANDSAT_DIR = "iwildcam_rs_npy"
N_BANDS = 9
BANDS = ("ultrablue", "blue", "green", "red", "nir", "swir1", "swir2", "bt1", "bt2")
FILE_RE = re.compile(r"^iwc_(?P<site>\d+)_(?P<date>[0-9-]+)_(?P<kind>multispectral|pixelqa|radsatqa)\.npy$")
DATE_FORMATS = {10: "%Y-%m-%d", 8: "%Y%m%d"}
SITE_DIR_RE = re.compile(r"^iwc_(?P<site>\d+)$")


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the npy header alone, without reading (or unpickling) the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported npy version {version}")
    return shape, dtype


def _header_problem(path: Path, kind: str) -> tuple[str | None, tuple[int, ...] | None]:
    """(reason the file is unusable or None, shape)."""
    try:
        shape, dtype = npy_header(path)
    except (ValueError, OSError, SyntaxError) as e:
        return f"Landsat file is not a valid npy ({type(e).__name__})", None
    if dtype.hasobject:
        return "Landsat npy holds Python objects (pickle refused)", shape
    if kind == "multispectral":
        ok = len(shape) == 3 and shape[2] == N_BANDS and dtype.kind in "iuf"
        return (None if ok else f"Landsat multispectral not HxWx{N_BANDS} numeric"), shape
    ok = (len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)) and dtype.kind in "iu"
    return (None if ok else f"Landsat {kind} not HxW integer"), shape


def empty_index() -> pd.DataFrame:
    """The Landsat index of no site-date."""
    return pd.DataFrame(columns=["site", "date", "multispectral", "pixelqa", "height", "width"])


def index_landsat(root: str | os.PathLike, report: QualityReport) -> pd.DataFrame:
    """One row per (site, date) with a valid multispectral + pixelqa pair; every other file is counted."""
    base = Path(root) / LANDSAT_DIR
    rows = []
    if not base.is_dir():
        report.skip("Landsat folder missing (no Landsat features)", str(base))
        return empty_index()
    for site_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        site_match = SITE_DIR_RE.match(site_dir.name)
        files: dict[tuple[str, str], tuple[Path, tuple | None]] = {}
        for f in sorted(site_dir.iterdir()):
            m = FILE_RE.match(f.name)
            if not site_match or not m or m["site"] != site_match["site"]:
                report.skip("unrecognised Landsat file name", str(f))
                continue
            report.count_read("Landsat files", 1)
            problem, shape = _header_problem(f, m["kind"])
            if problem:
                report.skip(problem, f"{f} shape={shape}")
                continue
            files[(m["date"], m["kind"])] = (f, shape)
        for date in sorted({d for d, _ in files}):
            ms, qa = files.get((date, "multispectral")), files.get((date, "pixelqa"))
            when = pd.to_datetime(date, format=DATE_FORMATS.get(len(date), "%Y-%m-%d"), errors="coerce")
            where = f"{site_dir.name} {date}"
            if ms is None or qa is None:
                report.skip("Landsat date without a valid multispectral + pixelqa pair", where)
            elif pd.isna(when):
                report.skip("Landsat date unparseable", where)
            elif ms[1][:2] != qa[1][:2]:
                report.skip("Landsat pixelqa shape differs from multispectral", f"{where} {ms[1]} vs {qa[1]}")
            else:
                rows.append((int(site_match["site"]), when, str(ms[0]), str(qa[0]), ms[1][0], ms[1][1]))
    index = pd.DataFrame(rows, columns=["site", "date", "multispectral", "pixelqa", "height", "width"])
    report.count_read("Landsat site-dates", len(index))
    return index.astype({"date": "datetime64[ns]"})


def read_patch(multispectral: str, pixelqa: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (H, W, 9) bands and (H, W) QA bits; pickles are refused."""
    bands = np.load(multispectral, mmap_mode="r", allow_pickle=False)
    qa = np.load(pixelqa, mmap_mode="r", allow_pickle=False)
    return bands, qa.reshape(qa.shape[0], qa.shape[1])
