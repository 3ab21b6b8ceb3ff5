"""Supplemental iNaturalist sources: the mapped COCO files as the iNaturalist competitions write them (2017 with
pixel boxes on part of the mammals, 2018 without, int or str ids, extra keys), real photographs, and every bad
input counted or refused in one line."""
import json
import logging

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from data import DataError, QualityReport
from data.supplemental import load_supplemental, sources, with_photos
from features.embeddings import compute_embeddings
from features.image_stats import image_stats
from features.views import image_views
from sample.generate import SPECIES
from sample.inaturalist import FOLDER, METADATA, write_inaturalist
from tests.conftest import load_tables, tiny_backbone

CATEGORIES = pd.Index([0, 2, 3, 24, 71, 112], name="id")  # iWildCam ids: empty, peccary, agouti, paca, ocelot, cow
CAMERA_IDS = pd.Index(["8b31f5a6-21bc-11ea-a13a-137349068a90"])
PHOTOS = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee(), "astronaut": skimage.data.astronaut()}


def photo(path, name: str, longer: int = 400) -> tuple[int, int]:
    """A real photograph as a JPEG at iNat's scale (longer side `longer` px); its (width, height)."""
    rgb = PHOTOS[name]
    scale = longer / max(rgb.shape[:2])
    bgr = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), None, fx=scale, fy=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".jpg", bgr)[1].tobytes())
    return bgr.shape[1], bgr.shape[0]


def inat_2017(root):
    """iNat 2017's mapped file: int ids, `train_val_images/<super category>/<species>/<hash>.jpg` (spaces in the
    species folder), a pixel `bbox` with `area` and `iscrowd` on some annotations, `licenses` and `info`."""
    folder = root / "inaturalist_2017"
    images, annotations = [], []
    for k, (name, category, box) in enumerate([("chelsea", 71, [40.0, 30.0, 200.0, 150.0]), ("coffee", 3, None),
                                               ("astronaut", 24, [10.5, 150.0, 120.0, 300.0])]):
        file_name = f"train_val_images/Mammalia/species {category}/{k:032x}.jpg"
        width, height = photo(folder / file_name, name)
        images.append({"id": 1000 + k, "width": width, "height": height, "file_name": file_name, "license": 3,
                       "rights_holder": "someone"})
        annotation = {"id": 7000 + k, "image_id": 1000 + k, "category_id": category}
        if box:
            annotation.update(bbox=box, area=box[2] * box[3], iscrowd=0)
        annotations.append(annotation)
    doc = {"info": {"year": 2017}, "images": images, "annotations": annotations,
           "categories": [{"id": c, "name": f"species {c}", "supercategory": "Mammalia"} for c in (3, 24, 71)],
           "licenses": [{"id": 3, "name": "Attribution-NonCommercial License", "url": "..."}]}
    (root / "inaturalist_2017_to_iwildcam_train.json").write_text(json.dumps(doc))
    return doc


def inat_2018(root, str_ids: bool = False):
    """iNat 2018's mapped file: no boxes, `train_val2018/<super category>/<category number>/<hash>.jpg`."""
    folder = root / "inaturalist_2018"
    images, annotations = [], []
    for k, (name, category) in enumerate([("coffee", 2), ("chelsea", 112)]):
        file_name = f"train_val2018/Mammalia/{4000 + k}/{k:032x}.jpg"
        width, height = photo(folder / file_name, name, longer=800)
        image_id = str(1000 + k) if str_ids else 1000 + k  # the same numbers as 2017's: the source keeps them apart
        images.append({"id": image_id, "width": width, "height": height, "file_name": file_name, "license": 1,
                       "rights_holder": "someone else"})
        annotations.append({"id": 9000 + k, "image_id": image_id, "category_id": category})
    doc = {"info": {"year": 2018}, "images": images, "annotations": annotations,
           "categories": [{"id": c, "name": f"species {c}", "supercategory": "Mammalia"} for c in (2, 112)]}
    (root / "inaturalist_2018_to_iwildcam_train.json").write_text(json.dumps(doc))
    return doc


SOURCES = [{"name": "inat2017", "metadata": "inaturalist_2017_to_iwildcam_train.json", "images": "inaturalist_2017"},
           {"name": "inat2018", "metadata": "inaturalist_2018_to_iwildcam_train.json", "images": "inaturalist_2018"}]


def load(root, entries=SOURCES):
    report = QualityReport()
    return load_supplemental(root, entries, CATEGORIES, CAMERA_IDS, report), report


def save(root, name: str, doc: dict) -> None:
    (root / f"inaturalist_{name}_to_iwildcam_train.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("str_ids", [False, True])
def test_both_years_load_keyed_by_source_with_boxes_where_2017_has_them(tmp_path, str_ids):
    inat_2017(tmp_path)
    inat_2018(tmp_path, str_ids)
    table, report = load(tmp_path)
    assert list(table.index) == ["inat2017:1000", "inat2017:1001", "inat2017:1002", "inat2018:1000", "inat2018:1001"]
    assert table["split"].eq("supplemental").all() and table["file_ok"].all() and report.counts == {}
    assert table["category_id"].tolist() == [71, 3, 24, 2, 112]
    assert table["source"].tolist() == ["inat2017"] * 3 + ["inat2018"] * 2
    assert table.loc["inat2018:1001", ["width", "height"]].tolist() == [800, 532]
    # chelsea is 451 x 300 at 400 px: the 2017 box [40, 30, 200, 150] in [0, 1] of the photo
    np.testing.assert_allclose(table.loc["inat2017:1000", ["box_x", "box_y", "box_w", "box_h"]].to_numpy(float),
                               [40 / 400, 30 / 266, 200 / 400, 150 / 266], rtol=1e-5)
    assert table.loc[["inat2017:1001", "inat2018:1000", "inat2018:1001"], "box_x"].isna().all()
    # astronaut's box runs past the bottom of the 400 x 400 photo: clipped to it
    np.testing.assert_allclose(table.loc["inat2017:1002", ["box_y", "box_h"]].to_numpy(float), [150 / 400, 250 / 400],
                               rtol=1e-5)
    assert report.read["inat2017 images"] == 3 and report.read["inat2018 annotations"] == 2
    assert report.notes["inat2017 images with a box (crop from it; the whole photo otherwise)"] == 2


def test_bad_records_are_counted_skips_naming_file_and_record(tmp_path):
    doc = inat_2017(tmp_path)
    doc["images"].append(dict(doc["images"][0], width=1))                   # a second record of id 1000
    doc["images"].append({"width": 3, "height": 3, "file_name": "x.jpg"})    # no id
    doc["images"].append(dict(doc["images"][1], id=1010, file_name="../../etc/passwd"))
    doc["images"].append(dict(doc["images"][1], id=1011, file_name="train_val_images/Mammalia/gone.jpg"))
    doc["images"].append(dict(doc["images"][1], id=1012))
    doc["images"].append(dict(doc["images"][1], id=1013))
    doc["annotations"] += [{"id": 1, "image_id": 1010, "category_id": 3},
                           {"id": 2, "image_id": 1011, "category_id": 3},
                           {"id": 3, "image_id": 1012, "category_id": 4242},      # not an iWildCam id
                           {"id": 4, "image_id": 1013, "category_id": 3},
                           {"id": 5, "image_id": 1013, "category_id": 24},        # a second, other category
                           {"id": 6, "image_id": 55555, "category_id": 3}]        # no such image
    doc["annotations"][1]["bbox"] = [10, 10, 0, 5]                              # no area
    save(tmp_path, "2017", doc)
    table, report = load(tmp_path, SOURCES[:1])
    name = "inaturalist_2017_to_iwildcam_train.json"
    assert report.counts == {
        "duplicate supplemental image id (later record skipped)": 1,
        "supplemental image record without 'id' (skipped)": 1,
        "file_name escapes the image folder (image not read)": 1,
        "image file missing (image not read)": 1,
        "supplemental annotation whose category is not an iWildCam category id (skipped)": 1,
        "supplemental image with conflicting categories (left unlabelled)": 1,
        "supplemental annotation for an image not in its images (skipped)": 1,
        "supplemental image without a usable label (not used)": 2,
        "supplemental bbox not usable: not [x, y, w, h], no area, outside the photo or its size unknown "
        "(whole photo used)": 1}
    assert report.examples["supplemental annotation whose category is not an iWildCam category id (skipped)"] == [
        f"{name}: annotation 3 image inat2017:1012 category_id=4242"]
    assert report.examples["duplicate supplemental image id (later record skipped)"] == [f"{name}: image 1000"]
    # labelled rows stay, whether or not their file is usable (the stages reading pixels skip those)
    assert set(table.index) == {"inat2017:1000", "inat2017:1001", "inat2017:1002", "inat2017:1010",
                                "inat2017:1011"}
    assert not table.loc[["inat2017:1010", "inat2017:1011"], "file_ok"].any()
    assert table.loc["inat2017:1000", "width"] != 1 and np.isnan(table.loc["inat2017:1001", "box_x"])


def test_file_names_that_resolve_nowhere_are_said_with_the_count_and_examples(tmp_path, caplog):
    inat_2017(tmp_path)
    wrong = [dict(SOURCES[0], images="inaturalist_2017/train_val_images")]  # one folder too deep
    with caplog.at_level(logging.WARNING):
        table, report = load(tmp_path, wrong)
    assert "none of the 3 file_names of" in caplog.text and "'train_val_images/Mammalia/species 71/" in caplog.text
    assert report.counts["image file missing (image not read)"] == 3 and not table["file_ok"].any()


def test_an_id_of_a_camera_trap_image_and_an_absent_source_are_counted_skips(tmp_path, caplog):
    inat_2017(tmp_path)
    report = QualityReport()
    with caplog.at_level(logging.WARNING):
        table = load_supplemental(tmp_path, SOURCES, CATEGORIES, pd.Index(["inat2017:1001"]), report)
    assert list(table.index) == ["inat2017:1000", "inat2017:1002"]
    assert report.counts == {"supplemental image id that is also a camera-trap image id (skipped)": 1,
                             "supplemental source whose metadata file is not there (source skipped)": 1}
    assert "supplemental source inat2018 skipped: no metadata file at" in caplog.text


def test_malformed_sources_and_files_fail_in_one_line_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"data.supplemental\[0\].name 'a:b' must be a non-empty name without"):
        sources([dict(SOURCES[0], name="a:b")])
    with pytest.raises(DataError, match=r"data.supplemental\[1\].name 'inat2017' is used twice"):
        sources([SOURCES[0], SOURCES[0]])
    with pytest.raises(DataError, match=r"data.supplemental\[0\] must have exactly the keys name, metadata and"):
        sources([{"name": "inat2017", "metadata": "m.json"}])
    doc = inat_2017(tmp_path)
    save(tmp_path, "2017", {"images": doc["images"], "annotations": {"not": "a list"}})
    with pytest.raises(DataError, match="inaturalist_2017_to_iwildcam_train.json: top-level 'annotations' must be a "
                                        "list of records"):
        load(tmp_path, SOURCES[:1])
    (tmp_path / "inaturalist_2017_to_iwildcam_train.json").write_text('{"images": [')
    with pytest.raises(DataError, match="inaturalist_2017_to_iwildcam_train.json: not valid JSON"):
        load(tmp_path, SOURCES[:1])


def test_the_sample_source_is_in_the_organisers_format(tmp_path):
    """The embedded sample's photos: the mapped 2017 layout with its extra keys, every file there, boxes on part
    of them, more photos of the classes its training cameras see least."""
    train_images = {2: 300, 3: 400, 6: 40, 8: 2, 24: 100, 71: 10, 112: 200, 374: 150}
    counts = write_inaturalist(tmp_path, seed=1, photos=200, train_images=train_images)
    doc = json.loads((tmp_path / FOLDER / METADATA).read_text())
    assert set(doc) == {"info", "images", "annotations", "categories", "licenses"}
    assert all(isinstance(im["id"], int) and im["file_name"].startswith("train_val_images/Mammalia/")
               for im in doc["images"])
    entry = [{"name": "inat_sample", "metadata": f"{FOLDER}/{METADATA}", "images": FOLDER}]
    report = QualityReport()
    table = load_supplemental(tmp_path, entry, pd.Index([0] + [s.id for s in SPECIES]), CAMERA_IDS, report)
    assert report.counts == {} and table["file_ok"].all() and len(table) == counts["supplemental_photos"] == 200
    assert table["box_x"].notna().sum() == counts["supplemental_boxes"] and 0 < counts["supplemental_boxes"] < 200
    per_class = table["category_id"].value_counts()
    assert per_class[8] > per_class[3] and 14 not in per_class  # the rarest at the cameras most; no people
    photo = cv2.imread(str(tmp_path / FOLDER / table["file_name"].iloc[0]))
    assert photo.shape[2] == 3 and np.ptp(photo.reshape(-1, 3).mean(axis=0)) > 10  # colour, not night grey


def test_photos_are_embedded_with_their_box_or_the_whole_photo_as_crop_and_leave_camera_vectors_alone(root, tmp_path):
    """Through the embeddings stage's own path (with_photos, compute_embeddings): a boxed photo's crop vector is
    the backbone's vector of the view cut from its box, an unboxed one's that of the whole photo; the camera
    images' vectors are those of a run without photos."""
    inat_2017(root)
    table, _ = load(root, SOURCES[:1])
    images, detections = load_tables(root)
    backbone = tiny_backbone()
    cfg = dict(weights={}, device="cpu", runtime="torch", input_size=32, precision="fp32", import_file=None,
               threads=1, decode_workers=1, batch_size=8, crops_top_k=2, crop_min_conf=0.3, crop_margin=0.15,
               chunk_images=16, flip=False)
    alone = compute_embeddings(images, detections, root, cfg, lambda: backbone, tmp_path / "alone", QualityReport())
    rows, boxes = with_photos(images, detections, table)
    assert list(rows.index[-3:]) == list(table.index) and len(boxes) == len(detections) + 3
    frame, crop = compute_embeddings(rows, boxes, root, cfg, lambda: backbone, tmp_path / "with", QualityReport())
    np.testing.assert_array_equal(frame[:len(images)], alone[0])
    np.testing.assert_array_equal(crop[:len(images)], alone[1])
    for k, image_id in enumerate(table.index):
        box = (0.0, 0.0, 1.0, 1.0) if np.isnan(table.loc[image_id, "box_x"]) else tuple(
            table.loc[image_id, ["box_x", "box_y", "box_w", "box_h"]].astype(float))
        views = image_views({"path": str(root / "inaturalist_2017" / table.loc[image_id, "file_name"]),
                             "width": np.nan, "height": np.nan, "boxes": [box]}, 32, cfg["crop_margin"])
        np.testing.assert_allclose(crop[len(images) + k], backbone.embed(views.crops, 1)[0], atol=1e-6)
        np.testing.assert_allclose(frame[len(images) + k], backbone.embed(views.frame[None], 1)[0], atol=1e-6)
    assert not np.isnan(frame[len(images):]).any()


def test_photos_get_image_statistics_of_their_own_pixels_and_box_and_none_of_a_burst_or_a_detector(root, tmp_path):
    """Through the image_stats stage's path: a photo is a sequence of one (no motion), its box statistics come
    from its COCO box or the whole photo, whether MegaDetector sees a box is unknown (NA); the camera images'
    statistics are those of a run without photos."""
    inat_2017(root)
    table, _ = load(root, SOURCES[:1])
    images, detections = load_tables(root)
    cfg = dict(short_side=32, box_min_conf=0.3, chunk_sequences=4, n_jobs=1)
    alone = image_stats(images, detections, images.index, root, cfg, tmp_path / "alone", QualityReport())
    rows, boxes = with_photos(images, detections, table)
    report = QualityReport()
    stats = image_stats(rows, boxes, images.index, root, cfg, tmp_path / "with", report)
    pd.testing.assert_frame_equal(stats.loc[images.index], alone)
    photos = stats.loc[table.index]
    assert photos[["motion_box", "motion_frame", "box_present"]].isna().all().all()
    assert photos[["brightness", "contrast", "box_saturation", "box_lbp_entropy"]].notna().all().all()
    assert (photos["is_greyscale"] == 0).all() and report.read["images computed"] == len(rows)
    # the same photos all without their boxes: the unboxed one is unchanged, the boxed ones' box statistics move
    rows, boxes = with_photos(images, detections, table.assign(box_x=np.nan))
    whole = image_stats(rows, boxes, images.index, root, cfg, tmp_path / "whole", QualityReport()).loc[table.index]
    pd.testing.assert_series_equal(whole.loc["inat2017:1001"], photos.loc["inat2017:1001"])
    box = [c for c in photos.columns if c.startswith("box_") and c != "box_present"]
    assert (whole.loc[["inat2017:1000", "inat2017:1002"], box] != photos.loc[["inat2017:1000", "inat2017:1002"],
                                                                             box]).any(axis=1).all()
    pd.testing.assert_frame_equal(whole.drop(columns=box), photos.drop(columns=box))
