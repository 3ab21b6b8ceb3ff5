"""Benchmark: Landsat cloud masking + site summary against the per-pixel reference of public demos.

Run by hand: `.venv/bin/python benchmarks/landsat_summary.py [--dates 300]`. Writes one site of
200x200x9 patches in the real npy layout, then in one run times (a) our whole-array pixelqa decoding
and summary and (b) the per-pixel reference that formats each QA value as a bit string and gathers
clear pixels in Python lists. Asserts both give the same clear shares and band medians.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import BANDS, QualityReport, index_landsat, read_patch  # noqa: E402
from features.landsat_summary import feature_names, site_summary  # noqa: E402

CFG = dict(max_cloud_confidence=1, max_cirrus_confidence=1, centre_window=33, min_clear_share=0.0,
           band_resolution=1, nearest_window_days=60, n_jobs=1)


def build(root: Path, n_dates: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    site = root / "iwildcam_rs_npy" / "iwc_001"
    site.mkdir(parents=True)
    days = np.sort(rng.choice(np.arange(np.datetime64("2013-04-11"), np.datetime64("2019-12-31")), n_dates,
                              replace=False))
    # clear, water, medium confidence, shadow, snow, cloud, fill
    choices = np.array([322, 324, 386, 328, 336, 480, 1], np.uint16)
    for day in days:
        np.save(site / f"iwc_001_{day}_multispectral.npy", rng.integers(0, 5000, (200, 200, 9), dtype=np.int16))
        np.save(site / f"iwc_001_{day}_pixelqa.npy",
                choices[rng.choice(len(choices), (200, 200), p=[.45, .05, .1, .1, .02, .25, .03])])


def reference(index) -> tuple[float, list[float]]:
    """Per-pixel bit strings, clear pixels gathered in lists, medians with `statistics`."""
    pooled = [[] for _ in BANDS]
    shares = []
    for ms_path, qa_path in index[["multispectral", "pixelqa"]].itertuples(index=False):
        bands, qa = np.load(ms_path).tolist(), np.load(qa_path).reshape(200, 200).tolist()
        clear = 0
        for y in range(200):
            for x in range(200):
                bits = format(qa[y][x], "016b")[::-1]  # bits[0] is bit 0
                if bits[0] == "1" or bits[3] == "1" or bits[4] == "1" or bits[5] == "1":
                    continue  # fill, cloud shadow, snow, cloud
                if int(bits[7] + bits[6], 2) > CFG["max_cloud_confidence"]:
                    continue
                if int(bits[9] + bits[8], 2) > CFG["max_cirrus_confidence"]:
                    continue
                clear += 1
                for b, value in enumerate(bands[y][x]):
                    pooled[b].append(value)
        shares.append(clear / 40000)
    return sum(shares) / len(shares), [statistics.median(v) for v in pooled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dates", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), args.dates, args.seed)
        index = index_landsat(tmp, QualityReport())
        for row in index.itertuples():  # warm the page cache for both contenders alike
            read_patch(row.multispectral, row.pixelqa)[0].sum()
        t0 = time.perf_counter()
        values, _, _ = site_summary(index, CFG)
        t1 = time.perf_counter()
        share, medians = reference(index)
        t2 = time.perf_counter()
    ours = dict(zip(feature_names(), values))
    assert np.isclose(ours["patch_clear_share"], share), (ours["patch_clear_share"], share)
    assert np.allclose([ours[f"patch_{b}_median"] for b in BANDS], medians), medians
    ours_s, ref_s = t1 - t0, t2 - t1
    print(f"one site, {args.dates} dates of 200x200x9 patches, clear share {share:.2f}")
    print(f"ours (whole-array bits, both regions, all {len(values)} features): {ours_s:7.2f} s  "
          f"{args.dates / ours_s:7.1f} patches/s")
    print(f"per-pixel reference (bit strings, patch medians only):        {ref_s:7.2f} s  "
          f"{args.dates / ref_s:7.1f} patches/s")
    print(f"speed-up: {ref_s / ours_s:.0f}x  (clear share and band medians equal)")


if __name__ == "__main__":
    main()
