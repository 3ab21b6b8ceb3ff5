"""COCO-CameraTraps loader on generated real-format files, good and damaged."""
import pandas as pd
import pytest

from data import DataError, QualityReport, load_metadata
from tests.helpers import TEST_JSON, TRAIN_JSON, read, write

YEARS = (2000, 2030)


def load(root):
    report = QualityReport()
    images, labels, categories = load_metadata(root, report, YEARS)
    return images, labels, categories, report


def test_clean_sample_loads_typed_and_complete(root):
    images, labels, categories, report = load(root)
    train, test = read(root, TRAIN_JSON), read(root, TEST_JSON)
    assert len(images) == len(train["images"]) + len(test["images"])
    assert set(images.loc[images.split == "test"].index) == {im["id"] for im in test["images"]}
    assert images["datetime"].dtype == "datetime64[ns]" and images["datetime_ok"].all()
    assert images["file_ok"].all()
    assert images["location"].dtype == "int64"
    assert len(labels) == len(train["annotations"])
    assert set(labels["category_id"]) <= set(categories.index)
    assert 0 in categories.index and categories.loc[0, "name"] == "empty"
    train_cameras, test_cameras = (set(images.loc[images.split == s, "location"]) for s in ("train", "test"))
    assert train_cameras.isdisjoint(test_cameras)
    assert report.counts == {}


def test_duplicate_image_id_keeps_first_and_is_counted(root):
    doc = read(root, TRAIN_JSON)
    dup = dict(doc["images"][0], location=999)
    doc["images"].append(dup)
    write(root, TRAIN_JSON, doc)
    images, _, _, report = load(root)
    assert images.loc[dup["id"], "location"] != 999
    assert report.counts["duplicate image id (later record skipped)"] == 1
    assert dup["id"] in report.examples["duplicate image id (later record skipped)"][0]


def test_unknown_category_is_counted_and_image_left_unlabelled(root):
    doc = read(root, TRAIN_JSON)
    victim = doc["annotations"][3]
    victim["category_id"] = 4242
    write(root, TRAIN_JSON, doc)
    images, labels, _, report = load(root)
    assert victim["image_id"] in images.index and victim["image_id"] not in labels.index
    assert report.counts["annotation with unknown category id"] == 1
    assert report.counts["train image without a usable label (not used for training)"] == 1


def test_conflicting_labels_are_not_guessed(root):
    doc = read(root, TRAIN_JSON)
    first = doc["annotations"][0]
    other = next(c["id"] for c in doc["categories"] if c["id"] != first["category_id"])
    doc["annotations"].append(dict(first, id="extra", category_id=other))
    write(root, TRAIN_JSON, doc)
    _, labels, _, report = load(root)
    assert first["image_id"] not in labels.index
    assert report.counts["image with conflicting labels (left unlabelled)"] == 1


@pytest.mark.parametrize("value, reason", [
    ("not a date", "datetime unparseable (set to NaT)"),
    ("2013-02-30 10:00:00.000", "datetime unparseable (set to NaT)"),
    ("2013-06-05 25:44:19.000", "datetime unparseable (set to NaT)"),
    ("1900-01-01 00:00:00.000", "datetime year outside 2000-2030 (set to NaT)"),
    (None, "datetime unparseable (set to NaT)"),
])
def test_bad_datetime_becomes_nat_and_is_counted(root, value, reason):
    doc = read(root, TEST_JSON)
    doc["images"][2]["datetime"] = value
    write(root, TEST_JSON, doc)
    images, _, _, report = load(root)
    row = images.loc[doc["images"][2]["id"]]
    assert pd.isna(row["datetime"]) and not row["datetime_ok"]
    assert report.counts[reason] == 1
    assert images["datetime_ok"].sum() == len(images) - 1


@pytest.mark.parametrize("file_name", ["../../../etc/passwd", "/etc/passwd", "..\\x.jpg", "a/../../x.jpg", ""])
def test_file_name_escaping_the_image_folder_is_never_read(root, file_name):
    doc = read(root, TRAIN_JSON)
    doc["images"][0]["file_name"] = file_name
    write(root, TRAIN_JSON, doc)
    images, _, _, report = load(root)
    assert not images.loc[doc["images"][0]["id"], "file_ok"]
    assert report.counts["file_name escapes the image folder (image not read)"] == 1
    assert "image file missing (image not read)" not in report.counts


def test_missing_image_file_is_counted(root):
    doc = read(root, TRAIN_JSON)
    (root / "train" / doc["images"][5]["file_name"]).unlink()
    images, _, _, report = load(root)
    assert not images.loc[doc["images"][5]["id"], "file_ok"]
    assert report.counts["image file missing (image not read)"] == 1


def test_record_without_location_is_an_error_naming_file_and_image(root):
    doc = read(root, TRAIN_JSON)
    doc["images"][1]["location"] = "north ridge"
    write(root, TRAIN_JSON, doc)
    with pytest.raises(DataError, match=rf"iwildcam2020_train_annotations.json: image '{doc['images'][1]['id']}'"):
        load(root)


def test_truncated_json_is_an_error_naming_the_file(root):
    path = root / TEST_JSON
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="iwildcam2020_test_information.json: not valid JSON"):
        load(root)


def test_missing_metadata_file_is_an_error(root):
    (root / TEST_JSON).unlink()
    with pytest.raises(DataError, match="file not found"):
        load(root)


def test_json_with_a_byte_order_mark_loads_as_without(root):
    clean = load(root)[0]
    for rel in (TRAIN_JSON, TEST_JSON):
        path = root / rel
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    images, _, _, report = load(root)
    pd.testing.assert_frame_equal(images, clean)
    assert report.counts == {}


def test_image_size_missing_from_the_metadata_is_read_from_the_jpeg_header(root):
    clean = load(root)[0]
    doc = read(root, TRAIN_JSON)
    for im in doc["images"][:3]:
        del im["width"], im["height"]
    doc["images"][3]["width"] = 0
    unreadable = doc["images"][4]
    del unreadable["height"]
    write(root, TRAIN_JSON, doc)
    (root / "train" / unreadable["file_name"]).write_bytes(b"\xff\xd8\xff")  # cut inside the header
    images, _, _, report = load(root)
    assert report.counts["image width/height missing or not positive (read from the JPEG header)"] == 4
    assert report.counts["image width/height missing or not positive, JPEG header unreadable (left NA, image "
                         "not read)"] == 1
    fixed = [im["id"] for im in doc["images"][:4]]
    pd.testing.assert_frame_equal(images.loc[fixed], clean.loc[fixed])
    assert pd.isna(images.loc[unreadable["id"], "height"]) and images.loc[unreadable["id"], "width"] == 160
    assert not images.loc[unreadable["id"], "file_ok"]  # a file whose header does not read gives no pixels


def test_metadata_without_any_width_or_height_key_loads_from_headers(root):
    clean = load(root)[0]
    for rel in (TRAIN_JSON, TEST_JSON):
        doc = read(root, rel)
        for im in doc["images"]:
            del im["width"], im["height"]
        write(root, rel, doc)
    images, _, _, report = load(root)
    pd.testing.assert_frame_equal(images, clean)
    assert report.counts == {"image width/height missing or not positive (read from the JPEG header)": len(images)}
