"""Detector statistics and sequence timing on hand-built tables with known answers."""
import numpy as np
import pandas as pd
import pytest

from data import QualityReport
from features.detector_stats import detector_stats
from features.sequence_timing import photo_timing, sequence_timing


def images_table(ids, datetimes, seq_ids=None, locations=None):
    when = pd.to_datetime(pd.Series(datetimes, index=pd.Index(ids, name="image_id")))
    seq_ids = seq_ids or ["s"] * len(ids)
    frame = pd.Series(seq_ids).groupby(seq_ids).cumcount().to_numpy()
    return pd.DataFrame({"location": locations or [1] * len(ids), "seq_id": seq_ids,
                         "seq_num_frames": pd.Series(seq_ids).map(pd.Series(seq_ids).value_counts()).to_numpy(),
                         "frame_num": frame, "datetime": when, "datetime_ok": when.notna()})


def boxes(rows):
    det = pd.DataFrame(rows, columns=["image_id", "category", "conf", "x", "y", "w", "h"])
    return det.astype({"category": np.int8, "conf": np.float32})


def test_detector_stats_known_boxes():
    images = images_table(["a", "b", "c"], ["2015-01-01 12:00:00"] * 3)
    det = boxes([("a", 1, 0.9, 0.1, 0.2, 0.4, 0.5), ("a", 1, 0.2, 0.5, 0.5, 0.1, 0.1),
                 ("a", 2, 0.6, 0.0, 0.0, 0.1, 0.1), ("b", 1, 0.05, 0.0, 0.0, 0.1, 0.1)])
    detector_images = pd.DataFrame({"n_boxes": [3, 1]}, index=pd.Index(["a", "b"], name="image_id"))
    stats = detector_stats(images, det, detector_images, [0.1, 0.5], 0.1, 0.5)
    a = stats.loc["a"]
    assert (a["n_animal_0.1"], a["n_animal_0.5"], a["n_person_0.5"]) == (2, 1, 1)
    assert a["top_conf"] == pytest.approx(0.9) and a["top_area"] == pytest.approx(0.2)
    assert a["top_cx"] == pytest.approx(0.3) and a["top_cy"] == pytest.approx(0.45)
    assert a["top_aspect"] == pytest.approx(0.8)
    assert a["area_sum_0.1"] == pytest.approx(0.2 + 0.01 + 0.01)
    # centres (0.3, 0.45) and (0.05, 0.05) above 0.5: spread = sqrt(var x + var y)
    assert a["centre_spread_0.5"] == pytest.approx(np.hypot(0.125, 0.2))
    assert a["max_conf_person"] == pytest.approx(0.6) and a["mean_conf_animal"] == pytest.approx(0.55)
    assert stats.loc["b", "n_animal_0.1"] == 0 and stats.loc["b", "max_conf_animal"] == pytest.approx(0.05)
    # c is not in the detector file: unknown per-image values, but it still gets its sequence's values
    assert stats.loc["c", ["n_boxes", "top_conf", "n_animal_0.1"]].isna().all()
    assert np.allclose(stats["seq_top_conf_max"], 0.9)
    assert stats.loc["a", "seq_rank_top_conf"] == 1 and stats.loc["b", "seq_rank_top_conf"] == 2
    assert stats.loc["a", "seq_frames_animal_0.1"] == 1
    assert stats.loc["a", "loc_false_trigger_rate"] == pytest.approx(0.5)  # b's best box is below 0.1
    assert stats.loc["c", "loc_median_top_h"] == pytest.approx(0.5)


def test_a_burst_the_detector_never_saw_has_unknown_counts_not_zeros():
    images = images_table(["a", "b", "c", "d"], ["2015-01-01 12:00:00"] * 4, seq_ids=["s", "s", "t", "t"])
    det = boxes([("a", 1, 0.9, 0.1, 0.2, 0.4, 0.5)])
    detector_images = pd.DataFrame({"n_boxes": [1, 0]}, index=pd.Index(["a", "b"], name="image_id"))
    stats = detector_stats(images, det, detector_images, [0.1], 0.1, 0.5)
    assert stats.loc["a", "seq_frames_detected"] == 2 and stats.loc["a", "seq_frames_animal_0.1"] == 1
    assert stats.loc["b", "seq_frames_animal_0.1"] == 1  # b was seen, empty: its burst's count holds
    assert stats.loc[["c", "d"], ["seq_frames_detected", "seq_frames_animal_0.1", "seq_max_n_animal_0.1",
                                 "seq_top_conf_max"]].isna().all().all()
    # no detector file at all: every detector column of every image is unknown
    nothing = detector_stats(images, det.iloc[:0], detector_images.iloc[:0], [0.1], 0.1, 0.5)
    assert nothing.isna().all().all()


def test_sequence_timing_circles_bursts_and_activity():
    images = images_table(
        ["noon0", "noon1", "six", "later", "other_cam"],
        ["2015-01-01 12:00:00", "2015-01-01 12:00:04", "2015-07-02 06:00:00", "2015-07-02 06:30:00",
         "2015-07-02 06:10:00"],
        seq_ids=["s1", "s1", "s2", "s3", "s4"], locations=[1, 1, 1, 1, 2])
    report = QualityReport()
    timing = sequence_timing(images, 730, [1, 24], report)
    assert timing.loc["noon0", "hour_cos"] == pytest.approx(-1) and timing.loc["noon0", "is_night"] == 0
    assert timing.loc["six", "hour_sin"] == pytest.approx(1, abs=1e-6)
    assert timing.loc["six", "day_cos"] == pytest.approx(-1, abs=1e-3)
    assert timing.loc["noon1", "seq_duration_s"] == 4 and timing.loc["noon1", "frame_num"] == 1
    assert timing.loc["six", "gap_prev_h"] == pytest.approx((182 * 24) - 6)
    assert timing.loc["six", "gap_next_h"] == pytest.approx(0.5)
    assert timing.loc["six", "sequences_within_1h"] == 1  # s3; s4 is another camera
    assert timing.loc["other_cam", "sequences_within_24h"] == 0
    assert timing.loc["noon0", "location_images"] == 4 and timing.loc["noon0", "location_sequences"] == 3
    assert report.counts == {}


def test_a_dated_photo_has_the_season_of_a_camera_image_at_noon_that_day_and_no_other_timing():
    """A photo's date is a calendar day without a trusted time: its season is taken at midday, the same value a
    camera image of that day at 12:00 gets; a photo without a date has no row (NA after the join)."""
    camera = sequence_timing(images_table(["cam"], ["2016-02-29 12:00:00"]), 730, [1, 24], QualityReport())
    dates = pd.Series(pd.to_datetime(["2016-02-29", None]), index=pd.Index(["inat:1", "inat:2"], name="image_id"))
    photos = photo_timing(dates, camera.columns)
    assert list(photos.index) == ["inat:1"] and list(photos.columns) == list(camera.columns)
    assert (photos.dtypes == np.float32).all()
    season = ["day_sin", "day_cos"]
    np.testing.assert_array_equal(photos.loc["inat:1", season], camera.loc["cam", season])
    assert photos.drop(columns=season).isna().all().all()


def test_broken_clocks_become_na_flags_and_counts():
    images = images_table(
        ["ok1", "ok2", "ok3", "far", "missing", "dup_a", "dup_b"],
        ["2015-01-01 10:00:00", "2015-01-02 10:00:00", "2015-01-03 10:00:00", "2009-01-01 10:00:00", None,
         "2015-01-05 10:00:00", "2015-01-05 10:00:00"],
        seq_ids=["a", "b", "c", "d", "e", "f", "g"])
    report = QualityReport()
    timing = sequence_timing(images, 730, [1], report)
    for bad in ("far", "missing", "dup_a", "dup_b"):
        assert timing.loc[bad, "clock_ok"] == 0 and np.isnan(timing.loc[bad, "hour_sin"])
    assert (timing.loc[["ok1", "ok2", "ok3"], "clock_ok"] == 1).all()
    assert report.counts == {"datetime missing or implausible (flagged by load)": 1,
                             "datetime more than 730 days from its camera's median": 1,
                             "same timestamp in different sequences at one camera": 2}
