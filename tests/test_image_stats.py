"""Image statistics: known answers on drawn images, bad files, the per-sequence cache, the same bytes on any CPU."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

import features.image_stats as image_stats_module
from data import QualityReport
from features.image_stats import frame_stats, image_stats, top_boxes
from tests.helpers import REPO, killed_on_call, load_tables

CFG = dict(short_side=32, box_min_conf=0.3, chunk_sequences=4, n_jobs=1)


def test_frame_stats_known_answers():
    grey = np.full((40, 60, 3), 100, np.uint8)
    grey[:, 30:] = 200
    stats = frame_stats(grey, None)
    assert stats["is_greyscale"] == 1 and stats["channel_spread"] == 0
    assert stats["brightness"] == pytest.approx(150 / 255, abs=1e-3)
    assert stats["box_present"] == 0 and "box_r" not in stats

    colour = np.zeros((40, 60, 3), np.uint8)
    colour[10:30, 20:50] = (0, 0, 255)  # a pure red block
    stats = frame_stats(colour, (20 / 60, 10 / 40, 30 / 60, 20 / 40))
    assert stats["is_greyscale"] == 0 and stats["box_present"] == 1
    assert stats["box_r"] == pytest.approx(1) and stats["box_b"] == 0
    assert stats["box_hue_cos"] == pytest.approx(1) and stats["box_saturation"] == pytest.approx(1)
    textured = colour.copy()
    textured[10:30, 20:50] = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    noisy = frame_stats(textured, (20 / 60, 10 / 40, 30 / 60, 20 / 40))
    assert noisy["box_lbp_entropy"] > stats["box_lbp_entropy"] + 1
    assert noisy["box_contrast"] > stats["box_contrast"]

    blurred = cv2.GaussianBlur(colour, (9, 9), 3)
    assert frame_stats(blurred, None)["blur"] < frame_stats(colour, None)["blur"]


def test_bad_images_are_counted_not_fatal(root, tmp_path):
    images, detections = load_tables(root)
    victims = images.index[:2]
    truncated = root / "train" / images.loc[victims[0], "file_name"]
    truncated.write_bytes(truncated.read_bytes()[:300])
    (root / "train" / images.loc[victims[1], "file_name"]).unlink()
    images, detections = load_tables(root)  # reload: the missing file is now flagged by the loader
    report = QualityReport()
    stats = image_stats(images, detections, images.index, root, CFG, tmp_path / "cache", report)
    assert stats.loc[victims].isna().all().all()
    assert stats.drop(victims)["brightness"].notna().all()
    assert report.counts["image not readable: truncated JPEG (the image data ends early)"] == 1
    assert report.counts["image not readable: no usable file at load (missing, empty, escaping the folder or an "
                   "unreadable header: see load report)"] == 1


def test_rerun_uses_cache_and_new_images_compute_only_themselves(root, tmp_path):
    images, detections = load_tables(root)
    sequences = images["seq_id"].unique()
    first = images[images["seq_id"].isin(sequences[:-3])]
    report = QualityReport()
    partial = image_stats(first, detections, images.index, root, CFG, tmp_path / "cache", report)
    assert report.read["images computed"] == len(first)

    report = QualityReport()
    full = image_stats(images, detections, images.index, root, CFG, tmp_path / "cache", report)
    assert report.read["images computed"] == len(images) - len(first)
    assert report.read["images from cache"] == len(first)
    pd.testing.assert_frame_equal(full.loc[first.index], partial)

    report = QualityReport()
    image_stats(images, detections, images.index, root, CFG, tmp_path / "cache", report)
    assert report.read.get("images computed", 0) == 0


def test_interrupted_run_resumes_from_finished_chunks(root, tmp_path, monkeypatch):
    images, detections = load_tables(root)
    real = image_stats_module._chunk_stats
    monkeypatch.setattr(image_stats_module, "_chunk_stats", killed_on_call(3, real))
    with pytest.raises(KeyboardInterrupt):
        image_stats(images, detections, images.index, root, CFG, tmp_path / "cache", QualityReport())
    shards = list((tmp_path / "cache").glob("shard-*.parquet"))
    assert len(shards) == 2 and not list((tmp_path / "cache").glob(".*tmp"))
    monkeypatch.setattr(image_stats_module, "_chunk_stats", real)
    report = QualityReport()
    resumed = image_stats(images, detections, images.index, root, CFG, tmp_path / "cache", report)
    assert report.read["images from cache"] == sum(len(pd.read_parquet(s)) for s in shards)
    fresh = image_stats(images, detections, images.index, root, CFG, tmp_path / "fresh_cache", QualityReport())
    pd.testing.assert_frame_equal(resumed, fresh)


def test_of_boxes_tied_in_confidence_the_first_in_the_detector_file_is_the_top_box():
    """MegaDetector rounds confidences, so ties are common; numpy's default quicksort orders them differently
    with AVX2 and AVX-512 sorts, which once made image_stats differ between two machines."""
    rng = np.random.default_rng(0)
    n = 300
    detections = pd.DataFrame({"image_id": np.repeat([f"i{k}" for k in range(n // 3)], 3),
                               "conf": np.round(rng.choice([0.9, 0.91], n), 2), "x": np.arange(n) / n,
                               "y": 0.1, "w": 0.2, "h": 0.2})
    expected = detections.sort_values("conf", ascending=False, kind="stable").drop_duplicates("image_id")
    top = top_boxes(detections, 0.3)
    assert [box[0] for box in top.loc[expected["image_id"]]] == expected["x"].tolist()
    first_best = detections[detections["conf"] == detections.groupby("image_id")["conf"].transform("max")]
    assert top.map(lambda b: b[0]).sort_index().tolist() == \
        first_best.drop_duplicates("image_id").set_index("image_id")["x"].sort_index().tolist()


CPU_PATHS = """
import sys
sys.path.insert(0, sys.argv[3])
from tests.helpers import load_tables
from data import QualityReport
from features.image_stats import image_stats
images, detections = load_tables(__import__("pathlib").Path(sys.argv[1]))
cfg = dict(short_side=32, box_min_conf=0.3, chunk_sequences=4, n_jobs=1)
image_stats(images, detections, images.index, sys.argv[1], cfg, sys.argv[2] + "/cache", QualityReport()).to_parquet(
    sys.argv[2] + "/stats.parquet")
"""


def test_image_stats_are_the_same_with_numpy_s_avx512_and_avx2_kernels_switched_off(pristine_root, tmp_path):
    """The family is computed alike whatever vector units numpy dispatches to (NPY_DISABLE_CPU_FEATURES
    emulates an older CPU): sorts, reductions and trigonometry give the same bytes."""
    tables = []
    for name, disabled in (("native", ""), ("no_avx", "X86_V4 AVX512_ICL AVX512_SPR X86_V3")):
        out = tmp_path / name
        out.mkdir()
        env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=disabled)
        subprocess.run([sys.executable, "-c", CPU_PATHS, str(pristine_root), str(out), str(REPO)], env=env,
                       check=True, capture_output=True)
        tables.append(pd.read_parquet(out / "stats.parquet"))
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
