"""Feature families on hand-built tables with known answers."""
import numpy as np
import pandas as pd
import pytest

from features.detector_stats import detector_stats
from features.sequence_timing import sequence_timing


def images_table(ids, datetimes):
    when = pd.to_datetime(pd.Series(datetimes, index=pd.Index(ids, name="image_id")))
    return pd.DataFrame({"location": 1, "seq_num_frames": 3, "frame_num": range(len(ids)),
                         "datetime": when, "datetime_ok": when.notna()})


def test_detector_stats_known_boxes():
    images = images_table(["a", "b", "c"], ["2015-01-01 12:00:00"] * 3)
    detections = pd.DataFrame({
        "image_id": ["a", "a", "a", "b"], "category": np.array([1, 1, 2, 1], np.int8),
        "conf": np.array([0.9, 0.2, 0.6, 0.05], np.float32),
        "x": [0.1, 0.5, 0.0, 0.0], "y": [0.2, 0.5, 0.0, 0.0], "w": [0.4, 0.1, 0.1, 0.1], "h": [0.5, 0.1, 0.1, 0.1]})
    detector_images = pd.DataFrame({"n_boxes": [3, 1]}, index=pd.Index(["a", "b"], name="image_id"))
    stats = detector_stats(images, detections, detector_images, [0.1, 0.5])
    a = stats.loc["a"]
    assert (a["n_animal_0.1"], a["n_animal_0.5"], a["n_person_0.5"]) == (2, 1, 1)
    assert a["top_conf"] == pytest.approx(0.9)
    assert a["top_area"] == pytest.approx(0.2)
    assert a["top_cx"] == pytest.approx(0.3) and a["top_cy"] == pytest.approx(0.45)
    assert a["top_aspect"] == pytest.approx(0.8)
    assert a["max_conf_person"] == pytest.approx(0.6)
    assert stats.loc["b", "n_animal_0.1"] == 0 and stats.loc["b", "max_conf_animal"] == pytest.approx(0.05)
    assert stats.loc["c"].isna().all()  # not in the detector file: unknown, not "no boxes"


def test_sequence_timing_circles_and_bad_clock():
    images = images_table(["noon", "six", "broken"], ["2015-01-01 12:00:00", "2015-07-02 06:00:00", None])
    timing = sequence_timing(images)
    assert timing.loc["noon", "hour_cos"] == pytest.approx(-1) and timing.loc["noon", "is_night"] == 0
    assert timing.loc["six", "hour_sin"] == pytest.approx(1, abs=1e-6)
    assert timing.loc["six", "day_cos"] == pytest.approx(-1, abs=1e-3)
    assert timing.loc["broken", ["hour_sin", "day_cos", "is_night"]].isna().all()
    assert timing.loc["broken", "clock_ok"] == 0 and timing.loc["broken", "frame_num"] == 2
