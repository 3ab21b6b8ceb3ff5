"""Landsat npy tree: header validation without unpickling, and vectorised pixelqa masking."""

import numpy as np
import pandas as pd
import pytest

from data import QualityReport, index_landsat, read_patch
from features.landsat_summary import landsat_summary, usable_pixels
from tests.helpers import Payload, killed_on_call


def first_site(root):
    return sorted((root / "iwildcam_rs_npy").iterdir())[0]


def test_clean_tree_pairs_every_date(root):
    report = QualityReport()
    index = index_landsat(root, report)
    n_ms = len(list((root / "iwildcam_rs_npy").glob("*/*_multispectral.npy")))
    assert len(index) == n_ms and report.counts == {}
    assert index["date"].dtype == "datetime64[ns]"
    bands, qa = read_patch(*index.iloc[0][["multispectral", "pixelqa"]])
    assert bands.shape == (24, 24, 9) and qa.shape == (24, 24)


def test_pickled_npy_is_refused_without_running_code(root, tmp_path):
    marker = tmp_path / "pwned"
    victim = sorted(first_site(root).glob("*_multispectral.npy"))[0]
    arr = np.empty((24, 24, 9), dtype=object)
    arr[0, 0, 0] = Payload(str(marker))
    np.save(victim, arr, allow_pickle=True)
    report = QualityReport()
    index = index_landsat(root, report)
    assert report.counts["Landsat npy holds Python objects (pickle refused)"] == 1
    assert report.counts["Landsat date without a valid multispectral + pixelqa pair"] == 1
    assert str(victim) not in set(index["multispectral"])
    with pytest.raises(ValueError):
        np.load(victim, allow_pickle=False)
    assert not marker.exists()


@pytest.mark.parametrize("array, reason", [
    (np.zeros((24, 24, 8), np.int16), "Landsat multispectral not HxWx9 numeric"),
    (np.zeros((24, 24), np.int16), "Landsat multispectral not HxWx9 numeric"),
    (np.zeros((24, 24, 9), np.bool_), "Landsat multispectral not HxWx9 numeric"),
])
def test_wrong_shape_or_dtype_multispectral_is_skipped(root, array, reason):
    victim = sorted(first_site(root).glob("*_multispectral.npy"))[0]
    np.save(victim, array)
    report = QualityReport()
    index_landsat(root, report)
    assert report.counts[reason] == 1


def test_pixelqa_problems_are_skipped(root):
    site = first_site(root)
    qas = sorted(site.glob("*_pixelqa.npy"))
    np.save(qas[0], np.zeros((24, 24), np.float32))       # QA bits must be integers
    np.save(qas[1], np.zeros((12, 12), np.uint16))        # does not match its multispectral
    report = QualityReport()
    index = index_landsat(root, report)
    assert report.counts["Landsat pixelqa not HxW integer"] == 1
    assert report.counts["Landsat pixelqa shape differs from multispectral"] == 1
    assert report.counts["Landsat date without a valid multispectral + pixelqa pair"] == 1
    assert not index["pixelqa"].isin([str(qas[0]), str(qas[1])]).any()


def test_garbage_file_and_bad_names_are_counted(root):
    site = first_site(root)
    next(site.glob("*_radsatqa.npy")).write_bytes(b"this is not numpy")
    (site / "notes.txt").write_text("hello")
    report = QualityReport()
    index_landsat(root, report)
    assert report.counts["Landsat file is not a valid npy (ValueError)"] == 1
    assert report.counts["unrecognised Landsat file name"] == 1


@pytest.mark.parametrize("qa, max_conf, usable", [
    (322, 1, True),    # clear land, low cloud confidence
    (324, 1, True),    # clear water
    (1, 1, False),     # fill
    (328, 1, False),   # cloud shadow
    (336, 1, False),   # snow
    (480, 3, False),   # cloud, high confidence: the cloud bit masks it whatever the limit
    (386, 1, False),   # clear bit but medium cloud confidence
    (386, 2, True),
    (322 | 1 << 10, 1, False),  # clear but occluded by terrain
])
def test_pixelqa_bits(qa, max_conf, usable):
    assert usable_pixels(np.array([[qa]], np.uint16), max_conf)[0, 0] == usable


CFG = dict(max_cloud_confidence=1, max_cirrus_confidence=1, centre_window=2, min_clear_share=0.1,
           band_resolution=1, nearest_window_days=30, n_jobs=1)


def write_date(site, date, bands, qa):
    np.save(site / f"iwc_007_{date}_multispectral.npy", bands)
    np.save(site / f"iwc_007_{date}_pixelqa.npy", qa)


def test_summary_masks_clouds_and_reports_sites_without_data(tmp_path):
    site = tmp_path / "iwildcam_rs_npy" / "iwc_007"
    site.mkdir(parents=True)
    bands = np.zeros((4, 4, 9), np.int16)
    bands[..., 3], bands[..., 4] = 1000, 3000               # red, nir: NDVI 0.5
    bands[0, :, :] = 5000                                    # a cloudy row, all bands bright
    qa = np.full((4, 4), 322, np.uint16)
    qa[0, :] = 480
    write_date(site, "2015-03-01", bands, qa)
    wet = bands.copy()
    wet[..., 4] = 9000                                       # NDVI 0.8 in the second acquisition
    write_date(site, "2015-08-01", wet, np.full((4, 4), 322, np.uint16))
    report = QualityReport()
    index = index_landsat(tmp_path, report)
    when = pd.to_datetime(["2015-03-10", "2015-07-25", "2015-05-15", "2015-03-10"])
    images = pd.DataFrame({"location": [7, 7, 7, 9], "datetime": when}, index=pd.Index(list("abcd"), name="image_id"))
    summary = landsat_summary(images, index, CFG, tmp_path / "cache", report)
    a = summary.loc["a"]
    assert a["patch_red_median"] == 1000 and a["patch_ndvi_q1"] == pytest.approx(0.5)
    assert a["patch_ndvi_q3"] == pytest.approx(0.8)
    assert a["patch_clear_share"] == pytest.approx((0.75 + 1) / 2)
    assert a["centre_clear_share"] == 1 and a["clear_dates"] == 2
    assert a["ndvi_nearest"] == pytest.approx(0.5) and a["days_to_nearest"] == 9
    assert summary.loc["b", "ndvi_nearest"] == pytest.approx(0.8)
    assert np.isnan(summary.loc["c", "ndvi_nearest"])           # nothing within 30 days
    assert summary.loc["d"].isna().all()
    assert report.counts["camera site without Landsat files (features NA)"] == 1


def test_nan_in_float_bands_is_treated_as_fill_and_counted(tmp_path):
    site = tmp_path / "iwildcam_rs_npy" / "iwc_007"
    site.mkdir(parents=True)
    bands = np.zeros((4, 4, 9), np.float32)
    bands[..., 3], bands[..., 4] = 0.1, 0.3                  # reflectance as floats: NDVI 0.5
    bands[0, :, 4] = np.nan                                  # a row the sensor did not see
    bands[1, 0, 3] = 0.9                                     # one bright red pixel that stays
    write_date(site, "2015-03-01", bands, np.full((4, 4), 322, np.uint16))
    report = QualityReport()
    images = pd.DataFrame({"location": [7], "datetime": pd.to_datetime(["2015-03-02"])},
                          index=pd.Index(["a"], name="image_id"))
    cfg = dict(CFG, band_resolution=0.001)
    summary = landsat_summary(images, index_landsat(tmp_path, report), cfg, tmp_path / "cache", report)
    assert report.counts["Landsat pixel with NaN bands (treated as fill)"] == 4
    assert summary.loc["a", "patch_clear_share"] == pytest.approx(12 / 16)
    assert summary.loc["a", "patch_nir_median"] == pytest.approx(0.3)
    assert summary.loc["a", "patch_ndvi_median"] == pytest.approx(0.5)
    assert summary.loc["a", "ndvi_nearest"] == pytest.approx(0.5)
    report = QualityReport()  # a rerun from the cache still counts them
    landsat_summary(images, index_landsat(tmp_path, report), cfg, tmp_path / "cache", report)
    assert report.read["Landsat sites from cache"] == 1
    assert report.counts["Landsat pixel with NaN bands (treated as fill)"] == 4


def test_streaming_quantiles_equal_numpy_on_the_grid_and_near_it_off():
    from features.landsat_summary import StreamingQuantiles
    rng = np.random.default_rng(0)
    batches = [rng.integers(-500, 4000, (n, 3)) for n in (1, 7, 1000, 0, 333)]
    q = StreamingQuantiles(3, 1)
    for b in batches:
        q.add(b)
    everything = np.vstack(batches)
    np.testing.assert_allclose(q.quantiles([0.25, 0.5, 0.75]), np.percentile(everything, [25, 50, 75], axis=0))
    floats = rng.uniform(-1, 1, (999, 1))
    floats[5] = np.nan
    f = StreamingQuantiles(1, 1e-3)
    f.add(floats)
    assert abs(f.quantiles([0.5])[0, 0] - np.nanmedian(floats)) <= 5e-4
    assert np.isnan(StreamingQuantiles(2, 1).quantiles([0.5])).all()


def test_site_summaries_are_cached_and_an_interrupted_run_resumes(root, tmp_path, monkeypatch):
    import features.landsat_summary as module
    report = QualityReport()
    index = index_landsat(root, report)
    sites = sorted(index["site"].unique())
    images = pd.DataFrame({"location": sites, "datetime": pd.Timestamp("2016-06-01")},
                          index=pd.Index([f"im{s}" for s in sites], name="image_id"))
    cfg = dict(max_cloud_confidence=1, max_cirrus_confidence=1, centre_window=9, min_clear_share=0.1,
               band_resolution=1, nearest_window_days=60, n_jobs=1)
    real = module.site_summary
    monkeypatch.setattr(module, "site_summary", killed_on_call(3, real))
    with pytest.raises(KeyboardInterrupt):
        landsat_summary(images, index, cfg, tmp_path / "cache", QualityReport())
    assert len(list((tmp_path / "cache").glob("shard-*.parquet"))) == 2
    monkeypatch.setattr(module, "site_summary", real)
    report = QualityReport()
    resumed = landsat_summary(images, index, cfg, tmp_path / "cache", report)
    assert report.read["Landsat sites from cache"] == 2 and report.read["Landsat sites computed"] == len(sites) - 2
    fresh = landsat_summary(images, index, cfg, tmp_path / "fresh", QualityReport())
    pd.testing.assert_frame_equal(resumed, fresh)

    patch = sorted(index["multispectral"])[0]
    np.save(patch, np.load(patch, allow_pickle=False))  # rewritten: new mtime, so that site is recomputed
    report = QualityReport()
    landsat_summary(images, index, cfg, tmp_path / "cache", report)
    assert report.read["Landsat sites computed"] == 1
