"""MegaDetector loader: the competition's file and MegaDetector's own batch output, both bbox conventions,
and every kind of bad entry."""
import json

import numpy as np
import pandas as pd
import pytest

from data import DataError, QualityReport, load_detections, load_metadata
from data.megadetector import match_files
from sample.generate import generate
from tests.helpers import DETECTOR_JSON, TINY, read, write


def load(root):
    report = QualityReport()
    images, _, _ = load_metadata(root, report, (2000, 2030))
    detections, detector_images = load_detections(root, images, report)
    return images, detections, detector_images, report


def test_clean_file_gives_one_row_per_box_in_unit_frame(root):
    images, detections, detector_images, report = load(root)
    doc = read(root, DETECTOR_JSON)
    assert len(detections) == sum(len(e["detections"]) for e in doc["images"])
    assert set(detector_images.index) == set(images.index)
    assert detections[["x", "y", "w", "h"]].min().min() >= 0
    assert ((detections.x + detections.w) <= 1 + 1e-6).all() and ((detections.y + detections.h) <= 1 + 1e-6).all()
    assert set(detections["category"]) <= {1, 2}
    assert report.notes["detector bbox convention"] == "normalised [0,1]"
    assert report.counts == {}


def test_absolute_pixel_boxes_are_detected_and_normalised(root, tmp_path):
    absolute = tmp_path / "absolute"
    generate(absolute, dict(TINY, bbox_format="absolute"))
    _, det_abs, _, report = load(absolute)
    _, det_norm, _, _ = load(root)
    assert report.notes["detector bbox convention"] == "absolute pixels"
    assert len(det_abs) == len(det_norm)
    # the normalised file was rounded to 4 decimals, the absolute one to 1e-4 pixel
    np.testing.assert_allclose(det_abs[["x", "y", "w", "h"]], det_norm[["x", "y", "w", "h"]], atol=1e-4)


def test_entry_for_unknown_image_and_image_missing_from_file(root):
    doc = read(root, DETECTOR_JSON)
    dropped = doc["images"].pop(0)
    doc["images"].append({"id": "not-in-metadata", "max_detection_conf": 0.9,
                          "detections": [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]}]})
    write(root, DETECTOR_JSON, doc)
    images, detections, detector_images, report = load(root)
    assert report.counts["detector entry for an image not in the metadata"] == 1
    assert report.counts["image missing from the detector file (detector features NA)"] == 1
    assert dropped["id"] not in detector_images.index and dropped["id"] in images.index
    assert "not-in-metadata" not in set(detections["image_id"])


def test_boxes_out_of_frame_are_clipped_or_skipped(root):
    doc = read(root, DETECTOR_JSON)
    entry = doc["images"][0]
    entry["detections"] = [
        {"category": "1", "conf": 0.9, "bbox": [0.8, 0.5, 0.4, 0.2]},   # sticks out on the right
        {"category": "1", "conf": 0.8, "bbox": [1.5, 0.5, 0.2, 0.2]},   # entirely outside
        {"category": "1", "conf": 0.7, "bbox": [0.2, 0.2, 0.0, 0.1]},   # zero width
    ]
    write(root, DETECTOR_JSON, doc)
    _, detections, detector_images, report = load(root)
    mine = detections[detections.image_id == entry["id"]]
    assert len(mine) == 1
    assert mine.iloc[0][["x", "w"]].tolist() == pytest.approx([0.8, 0.2])
    assert report.counts["box partly outside the frame (clipped to the frame)"] == 1
    assert report.counts["box outside the frame or of zero size (box skipped)"] == 2
    assert detector_images.loc[entry["id"], "n_boxes"] == 1


def test_unknown_detector_category_is_counted(root):
    doc = read(root, DETECTOR_JSON)
    doc["images"][1]["detections"].append({"category": "7", "conf": 0.5, "bbox": [0.1, 0.1, 0.1, 0.1]})
    write(root, DETECTOR_JSON, doc)
    _, _, _, report = load(root)
    assert report.counts["detection with unknown category"] == 1


def test_duplicate_detector_entry_is_counted(root):
    doc = read(root, DETECTOR_JSON)
    doc["images"].append(doc["images"][0])
    write(root, DETECTOR_JSON, doc)
    _, detections, _, report = load(root)
    assert report.counts["duplicate detector entry (later entry skipped)"] == 1
    assert len(detections) == sum(len(e["detections"]) for e in doc["images"][:-1])


def test_malformed_detection_is_an_error_naming_the_image(root):
    doc = read(root, DETECTOR_JSON)
    doc["images"][2]["detections"] = [{"category": "1", "conf": 0.5, "bbox": [0.1, 0.1, 0.1]}]
    write(root, DETECTOR_JSON, doc)
    with pytest.raises(DataError, match=doc["images"][2]["id"]):
        load(root)


def megadetector_batch_file(root, images, subfolder="cam07/2019-06"):
    """The file a user's own MegaDetector v5 run writes over a copy of the image folders: keyed by `file`
    (a path relative to the folder it ran on, here with subfolders and upper-case extensions), format 1.3,
    no max_detection_conf, per-detection classifications, a vehicle category, a failure entry, and a BOM."""
    competition = read(root, DETECTOR_JSON)
    by_id = {e["id"]: e for e in competition["images"]}
    entries = []
    for k, (image_id, row) in enumerate(images.iterrows()):
        name = str(row["file_name"])
        file = f"{subfolder}/{row['split']}/{name[:-4]}.JPG" if k % 2 else f"{row['split']}/{name}"
        if k == 3:
            entries.append({"file": file, "failure": "Failure image access"})
            continue
        detections = [dict(d, conf=round(d["conf"], 3), classifications=[["3", 0.71]])
                      for d in by_id[image_id]["detections"]]
        if k == 5:
            detections.append({"category": "3", "conf": 0.88, "bbox": [0.1, 0.6, 0.3, 0.2]})
        entries.append({"file": file, "detections": detections})
    entries.append({"file": "cam07/other/IMG_9999.JPG", "detections": []})  # a file not in the metadata
    doc = {"info": {"detector": "md_v5a.0.0.pt", "detection_completion_time": "2024-03-01 10:00:00",
                    "format_version": "1.3"},
           "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
           "classification_categories": {"3": "deer"},
           "images": entries}
    (root / DETECTOR_JSON).write_bytes(b"\xef\xbb\xbf" + json.dumps(doc, indent=1).encode())
    return doc


def test_megadetector_own_batch_output_is_read(root):
    images, det_competition, _, _ = load(root)
    doc = megadetector_batch_file(root, images)
    _, detections, detector_images, report = load(root)
    failed = images.index[3]
    assert report.notes["detector file keys"] == "file (MegaDetector batch output)"
    assert report.counts["image MegaDetector could not process ('failure' entry: detector features NA)"] == 1
    assert failed not in detector_images.index and failed not in set(detections["image_id"])
    assert report.counts["detector entry for an image not in the metadata"] == 1
    assert "image missing from the detector file (detector features NA)" not in report.counts
    assert len(detector_images) == len(images) - 1
    assert (detections["category"] == 3).sum() == 1  # the vehicle

    def boxes(d):  # the same boxes of the same images, whatever the order of the file
        d = d.drop(columns="conf").astype({"image_id": str})
        return d.sort_values(list(d.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(boxes(detections[detections["category"] != 3]),
                                  boxes(det_competition[det_competition["image_id"] != failed]))
    assert len(doc["images"]) == len(images) + 1


def test_file_keys_match_by_whole_path_components_and_never_guess(root):
    images, _, _, _ = load(root)
    names = images["file_name"].astype(str)
    ids, ambiguous = match_files([f"D:\\\\runs\\\\{images['split'].iloc[0]}\\\\{names.iloc[0].upper()}",
                                  f"x{names.iloc[1]}", names.iloc[2]], images)
    assert ids == [images.index[0], None, images.index[2]] and ambiguous == [False, False, False]
    both = images.iloc[:2].assign(file_name=["same.jpg", "same.jpg"], split=["train", "test"])
    assert match_files(["same.jpg", "run/test/same.jpg"], both) == ([None, images.index[1]], [True, False])


def test_batch_entry_with_neither_id_nor_file_is_an_error(root):
    doc = read(root, DETECTOR_JSON)
    del doc["images"][4]["id"]
    write(root, DETECTOR_JSON, doc)
    with pytest.raises(DataError, match="record #4 has neither 'id' nor 'file'"):
        load(root)
