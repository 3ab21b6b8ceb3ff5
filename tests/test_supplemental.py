"""Supplemental iNaturalist sources: the mapped COCO files as the iNaturalist competitions write them (2017 with
pixel boxes on part of the mammals, 2018 without, int or str ids, extra keys), real photographs, and every bad
input counted or refused in one line; the photos as training rows of every fit and of no validation, early
stopping or scored split, their weight, and the with/without comparison."""
import json
import logging

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from sklearn.base import clone

from data import DataError, QualityReport
from data.supplemental import empty_supplemental, load_supplemental, sources, with_photos
from features.embeddings import compute_embeddings
from features.image_stats import image_stats
from features.views import image_views
from models import registry
from models.compare import compare, comparison_markdown, supplemental_effect
from models.lgbm import stopping_rows, training_weights
from models.rerank import Proposer
from models.split import evaluation_split, location_folds, uses_supplemental
from models.tune import tuning_folds, tuning_rows
from sample.generate import SPECIES
from sample.inaturalist import FOLDER, LOCATIONS, METADATA, write_inaturalist
from tests.helpers import TRAIN, load_tables, reranker, tiny_backbone, toy

# iWildCam's category list (the shared categories json): the camera-trap category names by id
CATEGORIES = pd.Series({0: "empty", 2: "tayassu pecari", 3: "dasyprocta punctata", 24: "panthera onca",
                        71: "bos taurus", 112: "giraffa camelopardalis"}, name="name").rename_axis("id")
CAMERA_IDS = pd.Index(["8b31f5a6-21bc-11ea-a13a-137349068a90"])
YEARS = (2000, 2030)  # data.valid_years
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
           "categories": [{"id": c, "name": CATEGORIES[c].capitalize(), "supercategory": "Mammalia"} for c in (3, 24, 71)],
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
           "categories": [{"id": c, "name": CATEGORIES[c].replace(" ", "_"), "supercategory": "Mammalia"}
                          for c in (2, 112)]}
    (root / "inaturalist_2018_to_iwildcam_train.json").write_text(json.dumps(doc))
    return doc


CLIPPED = {"supplemental bbox partly outside the photo (clipped to it)": 1}  # inat_2017's third box, as real ones are
SOURCES = [{"name": "inat2017", "metadata": "inaturalist_2017_to_iwildcam_train.json", "images": "inaturalist_2017"},
           {"name": "inat2018", "metadata": "inaturalist_2018_to_iwildcam_train.json", "images": "inaturalist_2018"}]


def load(root, entries=SOURCES):
    report = QualityReport()
    return load_supplemental(root, entries, CATEGORIES, CAMERA_IDS, 0.3, YEARS, report), report


def save(root, name: str, doc: dict) -> None:
    (root / f"inaturalist_{name}_to_iwildcam_train.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("str_ids", [False, True])
def test_both_years_load_keyed_by_source_with_boxes_where_2017_has_them(tmp_path, str_ids):
    inat_2017(tmp_path)
    inat_2018(tmp_path, str_ids)
    table, report = load(tmp_path)
    assert list(table.index) == ["inat2017:1000", "inat2017:1001", "inat2017:1002", "inat2018:1000", "inat2018:1001"]
    assert table["split"].eq("supplemental").all() and table["file_ok"].all() and report.counts == CLIPPED
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
    assert report.notes["inat2017 crop source (photos)"] == {"coco_box": 2, "whole_photo": 1}
    assert report.notes["inat2018 crop source (photos)"] == {"whole_photo": 2}
    assert table["crop_source"].tolist() == ["coco_box", "whole_photo", "coco_box", "whole_photo", "whole_photo"]


def test_a_megadetector_batch_file_over_a_source_crops_the_photos_without_a_coco_box(tmp_path):
    """MegaDetector's own output (format 1.3, keyed by `file` under the folder it ran on, upper-case extension
    from a case-insensitive disk, a failure, a person box, a file outside the source) over iNat 2017's folder:
    a photo without a COCO box takes its most confident animal box of at least the threshold, else the whole
    photo; a COCO box is never replaced; each crop source is counted, each bad entry a counted skip."""
    doc = inat_2017(tmp_path)
    files = [im["file_name"] for im in doc["images"]]
    batch = {"info": {"detector": "md_v5a.0.0.pt", "detection_completion_time": "2024-03-01 10:00:00",
                      "format_version": "1.3"},
             "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
             "images": [{"file": files[0], "detections": [{"category": "1", "conf": 0.95, "bbox": [0, 0, 1, 1]}]},
                        {"file": files[1][:-4] + ".JPG", "detections": [
                            {"category": "2", "conf": 0.97, "bbox": [0.0, 0.0, 0.2, 0.2]},
                            {"category": "1", "conf": 0.41, "bbox": [0.5, 0.25, 0.25, 0.5]},
                            {"category": "1", "conf": 0.62, "bbox": [0.1, 0.2, 0.3, 0.4]}]},
                        {"file": files[2], "failure": "Failure image access"},
                        {"file": "train_val_images/Aves/other/0.jpg", "detections": []}]}
    (tmp_path / "md_inat2017.json").write_text(json.dumps(batch, indent=1))
    entries = [dict(SOURCES[0], detector_file="md_inat2017.json")]
    table, report = load(tmp_path, entries)
    np.testing.assert_allclose(table.loc["inat2017:1001", ["box_x", "box_y", "box_w", "box_h"]].to_numpy(float),
                               [0.1, 0.2, 0.3, 0.4], rtol=1e-6)  # the animal at 0.62, not the person at 0.97
    assert table["crop_source"].tolist() == ["coco_box", "megadetector", "coco_box"]
    np.testing.assert_allclose(table.loc["inat2017:1000", "box_w"], 200 / 400, rtol=1e-6)  # its COCO box stays
    assert report.notes["inat2017 crop source (photos)"] == {"coco_box": 2, "megadetector": 1}
    assert report.counts["inat2017 detector file: detector entry for an image not in the metadata"] == 1
    assert report.counts["inat2017 detector file: image MegaDetector could not process ('failure' entry: "
                         "detector features NA)"] == 1
    # above the threshold nothing is confident enough: the whole photo
    low = load_supplemental(tmp_path, entries, CATEGORIES, CAMERA_IDS, 0.7, YEARS, QualityReport())
    assert low["crop_source"].tolist() == ["coco_box", "whole_photo", "coco_box"]
    with pytest.raises(DataError, match=r"data.supplemental\[0\] must have the keys name, metadata and images "
                                        r"\(and optionally detector_file and locations\)"):
        sources([dict(SOURCES[0], detector="md.json")])


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
        "(whole photo used)": 1,
        "supplemental bbox partly outside the photo (clipped to it)": 1}
    assert report.examples["supplemental bbox partly outside the photo (clipped to it)"] == [
        f"{name}: image inat2017:1002 bbox=[10.5, 150.0, 120.0, 300.0]"]  # 450 px down a 400 px photo
    assert report.examples["supplemental annotation whose category is not an iWildCam category id (skipped)"] == [
        f"{name}: annotation 3 image inat2017:1012 category_id=4242"]
    assert report.examples["duplicate supplemental image id (later record skipped)"] == [f"{name}: image 1000"]
    # labelled rows stay, whether or not their file is usable (the stages reading pixels skip those)
    assert set(table.index) == {"inat2017:1000", "inat2017:1001", "inat2017:1002", "inat2017:1010",
                                "inat2017:1011"}
    assert not table.loc[["inat2017:1010", "inat2017:1011"], "file_ok"].any()
    assert table.loc["inat2017:1000", "width"] != 1 and np.isnan(table.loc["inat2017:1001", "box_x"])


@pytest.mark.parametrize("empty", [("annotations",), ("images", "annotations"), ("images",)])
def test_a_source_without_images_or_annotations_is_a_counted_skip(tmp_path, caplog, empty):
    """A mapping file written for no photo (`"annotations": []`, as a filter that matched nothing writes it) loads
    as no rows and one counted skip, not a traceback; the other source loads as before."""
    doc = inat_2017(tmp_path)
    inat_2018(tmp_path)
    save(tmp_path, "2017", dict(doc, **{key: [] for key in empty}))
    with caplog.at_level(logging.WARNING):
        table, report = load(tmp_path)
    assert list(table.index) == ["inat2018:1000", "inat2018:1001"]
    reason = "supplemental source without images or annotations (source skipped)"
    assert report.counts[reason] == 1 and report.examples[reason] == [
        f"inat2017: inaturalist_2017_to_iwildcam_train.json: {' and '.join(repr(k) for k in empty)} empty"]
    assert "supplemental source inat2017 skipped" in caplog.text
    save(tmp_path, "2018", dict(inat_2018(tmp_path), annotations=[]))
    table, _ = load(tmp_path, [dict(SOURCES[0], metadata="inaturalist_2018_to_iwildcam_train.json")])
    assert table.empty and list(table.columns) == list(empty_supplemental().columns)


def test_a_category_named_otherwise_than_the_camera_list_names_its_id_is_one_line_unless_mapped(tmp_path):
    """A mapping file written for another iWildCam year (other ids, the same names) or a swapped id would train
    photos under the wrong class: the names are compared (case and spacing aside), a disagreement is one line
    naming both and the file, and a stated mapping (category_ids) is taken."""
    doc = inat_2017(tmp_path)
    for category in doc["categories"]:  # agouti and jaguar swapped, as a file of other ids would have them
        category["id"] = {3: 24, 24: 3}.get(category["id"], category["id"])
    for annotation in doc["annotations"]:
        annotation["category_id"] = {3: 24, 24: 3}.get(annotation["category_id"], annotation["category_id"])
    save(tmp_path, "2017", doc)
    with pytest.raises(DataError, match=r"^\S*inaturalist_2017_to_iwildcam_train.json: category 24 is 'Dasyprocta "
                                        r"punctata' here but 'panthera onca' in the camera-trap category list: a file "
                                        r"mapped for other category ids\? State the mapping in data.supplemental\[\]"
                                        r".category_ids \(\{file id: iWildCam id\}\)$"):
        load(tmp_path, SOURCES[:1])
    table, _ = load(tmp_path, [dict(SOURCES[0], category_ids={3: 24, 24: 3})])
    assert table["category_id"].to_dict() == {"inat2017:1000": 71, "inat2017:1001": 3, "inat2017:1002": 24}
    with pytest.raises(DataError, match=r"category 3 \(mapped to 3 by data.supplemental's category_ids\) is "
                                        r"'Panthera onca' here but 'dasyprocta punctata'"):
        load(tmp_path, [dict(SOURCES[0], category_ids={3: 3, 24: 3})])
    with pytest.raises(DataError, match=r"data.supplemental\[0\].category_ids must map the file's category ids"):
        load(tmp_path, [dict(SOURCES[0], category_ids=[3, 24])])


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
        table = load_supplemental(tmp_path, SOURCES, CATEGORIES, pd.Index(["inat2017:1001"]), 0.3, YEARS, report)
    assert list(table.index) == ["inat2017:1000", "inat2017:1002"]
    assert report.counts == {"supplemental image id that is also a camera-trap image id (skipped)": 1,
                             "supplemental source whose metadata file is not there (source skipped)": 1, **CLIPPED}
    assert "supplemental source inat2018 skipped: no metadata file at" in caplog.text


def test_malformed_sources_and_files_fail_in_one_line_naming_them(tmp_path):
    with pytest.raises(DataError, match=r"data.supplemental\[0\].name 'a:b' must be a non-empty name without"):
        sources([dict(SOURCES[0], name="a:b")])
    with pytest.raises(DataError, match=r"data.supplemental\[1\].name 'inat2017' is used twice"):
        sources([SOURCES[0], SOURCES[0]])
    with pytest.raises(DataError, match=r"data.supplemental\[0\] must have the keys name, metadata and images"):
        sources([{"name": "inat2017", "metadata": "m.json"}])
    doc = inat_2017(tmp_path)
    save(tmp_path, "2017", {"images": doc["images"], "annotations": {"not": "a list"}})
    with pytest.raises(DataError, match="inaturalist_2017_to_iwildcam_train.json: top-level 'annotations' must be a "
                                        "list of records"):
        load(tmp_path, SOURCES[:1])
    (tmp_path / "inaturalist_2017_to_iwildcam_train.json").write_text('{"images": [')
    with pytest.raises(DataError, match="inaturalist_2017_to_iwildcam_train.json: not valid JSON"):
        load(tmp_path, SOURCES[:1])


def locations(root, rel: str, records: list[dict]) -> str:
    """A location file as the iNat competitions published them (inat2017_locations.zip and 2018's): a json list of
    one record per competition image, keyed by the images' ids."""
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(json.dumps(records))
    return rel


def record_2017(image_id, date, lat=37.77, lon=-122.42, user_id=1234) -> dict:
    return {"id": image_id, "lat": lat, "lon": lon, "date": date, "date_c": 0.5, "user_id": user_id}


def record_2018(image_id, date) -> dict:
    return dict(record_2017(image_id, date), loc_uncert=63, valid=date is not None)


def test_photo_dates_come_from_the_competitions_location_files(tmp_path):
    """2017's pair of files (train and val: a photo may be in either, or in both alike) and 2018's (two more
    keys), each covering images that are not in the subset and a record without position or date: each photo's
    calendar date as written, its time and UTC offset not read; an undated photo is NaT and counted."""
    inat_2017(tmp_path)
    inat_2018(tmp_path)
    entries = [dict(SOURCES[0], locations=[
                   locations(tmp_path, "inat2017_locations/train2017_locations.json",
                             [record_2017(1000, "2011-06-01 23:30:00-07:00"), record_2017(5, "2012-01-01 10:00:00"),
                              record_2017(1001, None, lat=None, lon=None, user_id=None)]),
                   locations(tmp_path, "inat2017_locations/val2017_locations.json",
                             [record_2017(1002, "2014-12-31"), record_2017(1000, "2011-06-01")])]),
               dict(SOURCES[1], locations=[locations(tmp_path, "inat2018_locations/train2018_locations.json",
                                                     [record_2018(1000, "2016-02-29 08:00:00+00:00"),
                                                      record_2018(1001, "2017-03-04T10:11:12Z")])])]
    table, report = load(tmp_path, entries)
    assert table["date"].dt.strftime("%Y-%m-%d").fillna("NaT").tolist() == [
        "2011-06-01", "NaT", "2014-12-31", "2016-02-29", "2017-03-04"]
    assert report.counts == {"supplemental photo whose location record has no date (date features NA)": 1, **CLIPPED}
    assert report.examples["supplemental photo whose location record has no date (date features NA)"] == [
        "inat2017:1001"]
    assert report.read["inat2017 location records"] == 5 and report.read["inat2017 photos dated"] == 2
    # without location files every photo is undated, and nothing is counted
    table, report = load(tmp_path)
    assert table["date"].isna().all() and report.counts == CLIPPED


def test_bad_location_records_are_counted_naming_file_and_record_and_a_bad_file_is_one_line(tmp_path):
    inat_2017(tmp_path)
    rel = locations(tmp_path, "train2017_locations.json", [
        record_2017(1000, "05/13/2016"),                                     # not an ISO date
        record_2017(1000, 20160513),                                         # not a string
        record_2017(1001, "1970-01-01 00:00:00+00:00"),                      # a clock never set
        record_2017(1001, "2016-02-30"),                                     # no such day
        {"lat": 1.0, "lon": 2.0, "date": "2016-01-01"},                      # no id
        record_2017(1002, "2015-05-01 10:00:00"), record_2017(1002, "2015-05-02 10:00:00")])  # two dates
    table, report = load(tmp_path, [dict(SOURCES[0], locations=[rel])])
    assert table["date"].isna().all()
    bad_date = ("supplemental location date that is not an ISO date or whose year is outside 2000-2030 "
                "(record not used)")
    assert report.counts == {bad_date: 4, "supplemental location record without 'id' (skipped)": 1,
                             "supplemental photo whose location records give different dates (date features NA)": 1,
                             **CLIPPED}
    assert report.examples[bad_date] == ["train2017_locations.json: id 1000 date='05/13/2016'",
                                         "train2017_locations.json: id 1000 date=20160513",
                                         "train2017_locations.json: id 1001 date='1970-01-01 00:00:00+00:00'",
                                         "train2017_locations.json: id 1001 date='2016-02-30'"]
    assert report.examples["supplemental location record without 'id' (skipped)"] == [
        "train2017_locations.json: record #4"]
    for content, message in (({"id": 1000, "date": "2016-01-01"}, "must be a list of records"),
                             ([[1000, "2016-01-01"]], "must be a list of records")):
        locations(tmp_path, rel, content)
        with pytest.raises(DataError, match=f"train2017_locations.json: {message}"):
            load(tmp_path, [dict(SOURCES[0], locations=[rel])])
    (tmp_path / rel).write_text("[{")
    with pytest.raises(DataError, match="train2017_locations.json: not valid JSON"):
        load(tmp_path, [dict(SOURCES[0], locations=[rel])])
    with pytest.raises(DataError, match="val2017_locations.json: no such file"):
        load(tmp_path, [dict(SOURCES[0], locations=["val2017_locations.json"])])
    with pytest.raises(DataError, match=r"data.supplemental\[0\].locations must be a list of files"):
        sources([dict(SOURCES[0], locations="train2017_locations.json")])


def test_the_sample_source_is_in_the_organisers_format(tmp_path):
    """The embedded sample's photos: the mapped 2017 layout with its extra keys, every file there, boxes on part
    of them, more photos of the classes its training cameras see least."""
    train_images = {2: 300, 3: 400, 6: 40, 8: 2, 24: 100, 71: 10, 112: 200, 374: 150}
    counts = write_inaturalist(tmp_path, seed=1, photos=200, train_images=train_images)
    doc = json.loads((tmp_path / FOLDER / METADATA).read_text())
    assert set(doc) == {"info", "images", "annotations", "categories", "licenses"}
    assert all(isinstance(im["id"], int) and im["file_name"].startswith("train_val_images/Mammalia/")
               for im in doc["images"])
    entry = [{"name": "inat_sample", "metadata": f"{FOLDER}/{METADATA}", "images": FOLDER,
              "locations": list(LOCATIONS)}]
    report = QualityReport()
    names = pd.Series({0: "empty", **{s.id: s.name for s in SPECIES}}, name="name")
    table = load_supplemental(tmp_path, entry, names, CAMERA_IDS, 0.3, YEARS, report)
    undated = "supplemental photo whose location record has no date (date features NA)"
    assert set(report.counts) == {undated} and report.counts[undated] == 200 - counts["supplemental_dated"]
    assert table["date"].notna().sum() == counts["supplemental_dated"] > 180
    assert table["file_ok"].all() and len(table) == counts["supplemental_photos"] == 200
    # the location files cover more than the subset, as the competition's do; both hold some of its photos
    assert report.read["inat_sample location records"] > 200
    ids = {im["id"] for im in doc["images"]}
    assert all(ids & {r["id"] for r in json.loads((tmp_path / rel).read_text())} for rel in LOCATIONS)
    # a species with a season (tapir: most sightings about day 60) is photographed in it
    tapir = table.loc[table["category_id"].eq(8) & table["date"].notna(), "date"].dt.day_of_year
    assert len(tapir) > 10 and np.cos(2 * np.pi * (tapir - 60) / 365.25).mean() > 0.2
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


def with_photos_rows(n_photos: int = 30, seed: int = 0):
    """The toy camera rows (12 locations) followed by `n_photos` supplemental rows (no location: NaN), their mask,
    and a column that is 1 on the photos only: where it shows up tells where they went."""
    x, y, groups = toy()
    rng = np.random.default_rng(seed)
    photo_y = rng.integers(0, 3, n_photos)
    photos = pd.DataFrame({"a": photo_y + rng.normal(0, 0.6, n_photos),
                           "b": (photo_y == 2) + rng.normal(0, 0.6, n_photos), "noise": rng.normal(0, 1, n_photos)})
    x = pd.concat([x.assign(photo=0.0), photos.assign(photo=1.0)], ignore_index=True)
    return x, np.r_[y, photo_y], np.r_[groups, np.full(n_photos, np.nan)], np.r_[np.zeros(len(y), bool),
                                                                           np.ones(n_photos, bool)]


@pytest.mark.parametrize("name", ["reranker", "lightgbm_multiclass"])
def test_supplemental_rows_train_every_fold_and_never_validate_or_stop(name):
    x, y, groups, photo = with_photos_rows()
    camera_folds = location_folds(groups[~photo], 3)
    for (fit, val), (camera_fit, camera_val) in zip(location_folds(groups, 3, photo), camera_folds, strict=True):
        assert set(np.flatnonzero(photo)) <= set(fit) and not photo[val].any()
        np.testing.assert_array_equal(val, camera_val)  # the camera rows come first: the same positions
        np.testing.assert_array_equal(fit[~photo[fit]], camera_fit)
    spread = location_folds(groups, 3, photo, spread_supplemental=True)
    assert sorted(np.concatenate([val[photo[val]] for _, val in spread]).tolist()) == np.flatnonzero(photo).tolist()
    assert not stopping_rows(groups, 3, photo)[photo].any()
    tuned = tuning_rows(groups, 100, 0, photo)  # the share of the camera rows, and the same share of the photos
    assert tuned[photo].sum() == round(photo.sum() * tuned[~photo].sum() / (~photo).sum()) > 0
    assert tuned[~photo].sum() < (~photo).sum() and tuning_rows(groups, len(groups), 0, photo).all()
    # a tuning fold's model fits on the photos, stops early on camera rows only and is scored on camera rows only
    model = registry.build(name, TRAIN, {"num_leaves": 7}, threads=1)
    for fold in tuning_folds(model, x, y, groups, 3, photo):
        column = fold.prepared.columns.index("photo")
        assert fold.prepared.x[:, column].any() and not fold.prepared.x[fold.prepared.stop, column].any()
        assert not fold.x_val["photo"].any()
    if name == "reranker":  # each photo's candidates come from evidence fitted without it, like a camera row's
        pairs = model.prepare(x, y, groups, photo)
        assert np.isfinite(pairs.evidence[photo]).all() and (pairs.cand[photo] >= 0).all()


@pytest.mark.parametrize("name", ["reranker", "lightgbm_multiclass"])
def test_photos_are_a_mask_never_a_location(name):
    """A photo has no location: given without the mask that says what it is, its NaN group is refused in one
    line instead of becoming one more camera; the photos' group values are never read."""
    x, y, groups, photo = with_photos_rows()
    model = registry.build(name, TRAIN, {"num_leaves": 7}, threads=1)
    with pytest.raises(ValueError, match="^a camera-trap row \\(supplemental False\\) has no location group$"):
        model.fit(x, y, groups)
    fitted = model.fit(x, y, groups, photo).predict_proba(x)
    anywhere = np.where(photo, 1e6, groups)  # any value in a photo's group: the same model
    np.testing.assert_array_equal(clone(model).fit(x, y, anywhere, photo).predict_proba(x), fitted)


def test_photos_join_fit_and_final_only_when_used_and_are_never_tuned_on_or_scored():
    camera = pd.DataFrame({"location": [0, 1, 2, 3] * 3, "usable": True, "wilds_split": ["train"] * 8 + ["val"] * 2
                           + ["test"] * 2})
    photos = pd.DataFrame({"location": pd.array([pd.NA] * 3, "Int64"), "usable": [True, True, False],
                           "wilds_split": np.nan, "photo": True})
    rows = pd.concat([camera.assign(photo=False), photos], ignore_index=True)
    photo = rows["photo"].to_numpy()
    for scheme, holdout in (("location", [3]), ("wilds", None)):
        rows_of = rows if scheme == "wilds" else rows.drop(columns="wilds_split")
        used, unused = (evaluation_split(rows_of, scheme, holdout, on) for on in (True, False))
        assert used.supplemental.tolist() == unused.supplemental.tolist() == [False] * 12 + [True, True, False]
        assert (used.fit & photo).sum() == (used.final & photo).sum() == 2  # the photo without pixels never trains
        assert not (unused.fit & photo).any() and not (unused.final & photo).any()
        np.testing.assert_array_equal(used.fit & ~photo, unused.fit)
        assert not any((m & photo).any() for m in used.scored.values())
        assert used.tuning is None or not (used.tuning & photo).any()
    assert uses_supplemental("auto", "location") == (True, "train.supplemental: auto, on under split.scheme location")
    assert uses_supplemental("auto", "wilds") == (False, "train.supplemental: auto, off under split.scheme wilds: its "
                                                         "leaderboard admits no extra data in a standard entry (set it "
                                                         "true to train on them anyway, a non-standard row)")
    assert uses_supplemental(True, "wilds")[0] and not uses_supplemental(False, "location")[0]
    with pytest.raises(DataError, match="^params.yaml: train.supplemental must be auto, true or false, not 'yes'$"):
        uses_supplemental("yes", "location")


def test_supplemental_weight_scales_the_photos_after_balanced_class_weights():
    y, photo = np.array([0, 0, 0, 1, 1, 2]), np.array([False, False, False, False, True, True])
    balanced = 6 / (3 * np.array([3, 3, 3, 2, 2, 1]))  # over camera and supplemental rows together
    np.testing.assert_allclose(training_weights(y, "balanced", photo, 0.25), balanced * [1, 1, 1, 1, 0.25, 0.25])
    np.testing.assert_allclose(training_weights(y, "none", photo, 0.25), [1, 1, 1, 1, 0.25, 0.25])
    assert training_weights(y, "none", np.zeros(6, bool), 0.25) is None  # no photo: the camera fit as it was
    assert training_weights(y, "none", None, 0.25) is None
    with pytest.raises(ValueError, match="train.supplemental_weight must be > 0, not 0"):
        training_weights(y, "none", photo, 0)
    # the weight changes a fit with photos and nothing without them; all-ones proposer weights change nothing
    x, y, groups, photo = with_photos_rows()
    light, heavy = (registry.build("lightgbm_multiclass", dict(TRAIN, supplemental_weight=w), {"num_leaves": 7},
                                   threads=1).fit(x, y, groups, photo) for w in (0.1, 1.0))
    assert not np.allclose(light.predict_proba(x), heavy.predict_proba(x))
    camera = ~photo
    light, heavy = (reranker(supplemental_weight=w).fit(x[camera], y[camera], groups[camera]) for w in (0.1, 1.0))
    np.testing.assert_array_equal(light.predict_proba(x), heavy.predict_proba(x))
    plain = Proposer.fit(x.to_numpy(), y, 3, True)
    ones = Proposer.fit(x.to_numpy(), y, 3, True, np.ones(len(y)))
    np.testing.assert_array_equal(plain.coef, ones.coef)
    np.testing.assert_array_equal(plain.intercept, ones.intercept)


def test_rows_trained_with_photos_are_non_standard_under_wilds_and_compared_with_and_without():
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "accuracy_ci": [0.4, 0.6], "macro_f1_ci": [0.3, 0.5]}
    summary = {name: {"splits": {"test": metrics}} for name in ("with_photos", "camera_only")}
    rows = compare(summary, "wilds", [], set(), set(), {}, {"with_photos"})
    assert [(r["model"], r["standard"], r["comparable"]) for r in rows] == [("with_photos", False, False),
                                                                           ("camera_only", True, True)]
    assert "| with_photos (non-standard: supplemental data) | measured | wilds | test |" in comparison_markdown(rows)
    assert "| camera_only | measured | wilds | test |" in comparison_markdown(rows)
    per_class = {"with": {"3": {"precision": 1.0, "recall": 0.5, "support": 2}, "8": {"precision": 0.5, "recall": 1.0,
                                                                                     "support": 1}},
                 "without": {"3": {"precision": 0.0, "recall": 0.0, "support": 2},
                             "8": {"precision": 0.5, "recall": 1.0, "support": 1}}}
    results = {name: {"splits": {"test": dict(accuracy=0.6, macro_f1=0.5, per_class=p)}}
               for name, p in per_class.items()}
    effect = supplemental_effect(results, {"chosen": ("with", "without")}, "test", pd.Series({3: 4, 8: 90}), 50)
    assert [(r["trained_with"], r["rare_classes"], r["rare_macro_f1"], r["rare_recall"]) for r in effect] == [
        (True, 1, 66.7, 50.0), (False, 1, 0.0, 0.0)]  # class 3 (4 camera images) is rare, class 8 (90) is not
    table = comparison_markdown(effect)
    assert "## With and without the supplemental rows" in table and "at most 50 camera-trap training images" in table
    assert "| chosen | with | 60.0 | 50.0 | 1 | 66.7 | 50.0 |" in table
