"""The bad-input corpus: every defect at once, in real-format files, through the whole pipeline. Each is
counted exactly once where it is met, every good row comes through, and nothing about the good rows differs
from the same data without the defects. Odd but valid files as real cameras and tools write them (bytes
after the end-of-image marker, metadata without image sizes, a byte-order mark) are no defect: they come
through unchanged and uncounted, or counted as repaired."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sample.generate import generate
from tests.helpers import (DETECTOR_JSON, TEST_JSON, TINY, TRAIN_JSON, Payload, copy_project, corrupt_body,
                            project_params, read, run_stage, with_header_size, write)

STAGES = ["load", "detector_stats", "sequence_timing", "landsat_summary", "image_stats", "embeddings", "join",
          "train", "evaluate", "predict"]
EXPECTED_LOAD = {
    "image file missing (image not read)": 1,
    "file_name escapes the image folder (image not read)": 1,
    "datetime unparseable (set to NaT)": 1,
    "duplicate image id (later record skipped)": 1,
    "annotation with unknown category id": 1,
    "box outside the frame or of zero size (box skipped)": 1,
    "image missing from the detector file (detector features NA)": 1,
    "Landsat npy holds Python objects (pickle refused)": 1,
    "Landsat multispectral not HxWx9 numeric": 2,
    "Landsat date without a valid multispectral + pixelqa pair": 3,
    "image width/height missing or not positive (read from the JPEG header)": 1,
}
EXPECTED_IMAGES = {"image not readable: truncated JPEG (the image data ends early)": 1,
                   "image not readable: JPEG header size over jpeg.max_megapixels": 1,
                   "image not readable: JPEG decoded with errors": 1,
                   "image not readable: no usable file at load (missing, empty, escaping the folder or an "
                   "unreadable header: see load report)": 2}
UNREADABLE = ["truncated", "missing", "traversal", "huge_header", "corrupt_body"]


def damage(root: Path, marker: Path) -> dict[str, str]:
    """Every defect once, each on its own image (or Landsat date); returns image id per defect."""
    train, detector = read(root, TRAIN_JSON), read(root, DETECTOR_JSON)
    detected = {d["id"] for d in detector["images"] if d["detections"]}
    labelled = {a["image_id"] for a in train["annotations"]}
    pool = [im for im in train["images"] if im["id"] in detected and im["id"] in labelled]
    names = ["truncated", "missing", "bad_datetime", "box_out_of_frame", "not_in_detector", "traversal",
             "duplicate", "unknown_category", "huge_header", "corrupt_body", "camera_trailer", "no_size"]
    victims = dict(zip(names, pool[::3]))
    jpeg = root / "train" / victims["truncated"]["file_name"]
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    jpeg = root / "train" / victims["huge_header"]["file_name"]
    jpeg.write_bytes(with_header_size(jpeg.read_bytes(), 65000, 65000))  # would need 12 GB to decode
    jpeg = root / "train" / victims["corrupt_body"]["file_name"]
    jpeg.write_bytes(corrupt_body(jpeg.read_bytes()))
    jpeg = root / "train" / victims["camera_trailer"]["file_name"]
    jpeg.write_bytes(jpeg.read_bytes() + b"RECONYX HC600\x00\x00\x00 ")   # valid: decodes fully
    del victims["no_size"]["width"], victims["no_size"]["height"]
    (root / "train" / victims["missing"]["file_name"]).unlink()
    victims["bad_datetime"]["datetime"] = "2019-13-45 99:99:99"
    victims["traversal"]["file_name"] = "../../metadata/" + Path(TRAIN_JSON).name
    train["images"].append(dict(victims["duplicate"], location=999))
    train["annotations"].append({"id": "unknown-cat", "image_id": victims["unknown_category"]["id"],
                                 "category_id": 4242})
    write(root, TRAIN_JSON, train)
    (root / TRAIN_JSON).write_bytes(b"\xef\xbb\xbf" + (root / TRAIN_JSON).read_bytes())  # as Windows tools save it
    entry = next(d for d in detector["images"] if d["id"] == victims["box_out_of_frame"]["id"])
    entry["detections"].append({"category": "1", "conf": 0.9, "bbox": [1.5, 1.5, 0.1, 0.1]})
    detector["images"] = [d for d in detector["images"] if d["id"] != victims["not_in_detector"]["id"]]
    write(root, DETECTOR_JSON, detector)
    patches = sorted((root / "iwildcam_rs_npy").glob("*/*_multispectral.npy"))
    np.save(patches[0], np.zeros((24, 24, 8), np.int16))                 # wrong shape
    np.save(patches[5], np.zeros((24, 24, 9), np.bool_))                 # wrong dtype
    pickled = np.empty((24, 24, 9), dtype=object)
    pickled[0, 0, 0] = Payload(str(marker))
    np.save(patches[10], pickled, allow_pickle=True)                     # a pickle
    return {k: v["id"] for k, v in victims.items()}


def run_pipeline(work: Path, root: Path, stages: list[str]) -> None:
    params = project_params()
    params["data"]["root"] = str(root)
    params["train"].update(max_rounds=40, cv_folds=2)
    params["train"]["tune"].update(n_trials=3, storage=None)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in stages:
        run_stage(work, stage)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    clean, bad = base / "clean", base / "bad"
    generate(clean, dict(TINY, train_locations=6, images=200))
    shutil.copytree(clean, bad)
    victims = damage(bad, base / "pwned")
    runs = {}
    # the clean run is compared up to the feature table; the damaged one goes on to the submission
    for name, root, stages in (("clean", clean, STAGES[:STAGES.index("join") + 1]), ("bad", bad, STAGES)):
        work = base / f"work_{name}"
        work.mkdir()
        copy_project(work)
        run_pipeline(work, root, stages)
        runs[name] = work
    return runs, victims, base / "pwned"


def quality(work: Path, stage: str) -> dict:
    report = "embeddings/embeddings_efficientnet_lite0" if stage == "embeddings" else stage
    return json.loads((work / f"reports/quality/{report}.json").read_text())["skipped"]


def tables(work: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(work / f"artifacts/tables/{name}.parquet")


def test_every_defect_is_counted_exactly_once_where_it_is_met(corpus):
    runs, _, marker = corpus
    for stage, expected in [("load", EXPECTED_LOAD), ("image_stats", EXPECTED_IMAGES), ("embeddings", EXPECTED_IMAGES)]:
        clean, bad = quality(runs["clean"], stage), quality(runs["bad"], stage)
        delta = {k: bad.get(k, 0) - clean.get(k, 0) for k in set(bad) | set(clean)}
        assert {k: v for k, v in delta.items() if v} == expected, stage
    assert not marker.exists()  # the pickle was refused, never loaded


def test_good_rows_all_come_through_unchanged(corpus):
    runs, victims, _ = corpus
    clean, bad = runs["clean"], runs["bad"]
    images_clean, images_bad = tables(clean, "images"), tables(bad, "images")
    assert images_bad.index.equals(images_clean.index)  # the duplicate record is dropped, nothing else
    untouched = images_clean.index.difference([victims[k] for k in
                                               ("missing", "bad_datetime", "traversal", "duplicate")])
    pd.testing.assert_frame_equal(images_bad.loc[untouched], images_clean.loc[untouched])  # no_size: from header
    assert not images_bad.loc[victims["traversal"], "file_ok"] and not images_bad.loc[victims["missing"], "file_ok"]
    assert pd.isna(images_bad.loc[victims["bad_datetime"], "datetime"])

    labels_clean, labels_bad = tables(clean, "labels"), tables(bad, "labels")
    pd.testing.assert_frame_equal(labels_bad, labels_clean)  # the unknown-category annotation only adds nothing

    det_clean, det_bad = tables(clean, "detections"), tables(bad, "detections")
    keep = lambda d: d[d["image_id"].astype(str) != victims["not_in_detector"]].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(keep(det_bad).astype({"image_id": str}), keep(det_clean).astype({"image_id": str}))

    landsat_clean, landsat_bad = tables(clean, "landsat_index"), tables(bad, "landsat_index")
    assert len(landsat_bad) == len(landsat_clean) - 3

    table_clean = pd.read_parquet(clean / "artifacts/features/feature_table.parquet")
    table_bad = pd.read_parquet(bad / "artifacts/features/feature_table.parquet")
    assert table_bad.index.equals(images_clean.index)
    emb = [c for c in table_bad.columns if c.startswith("embeddings_efficientnet_lite0__frame_emb_")]
    unreadable = [victims[k] for k in UNREADABLE]
    assert table_bad.loc[unreadable, emb].isna().all().all()
    readable = images_clean.index.difference(unreadable)  # camera_trailer and no_size among them
    np.testing.assert_allclose(table_bad.loc[readable, emb], table_clean.loc[readable, emb], rtol=1e-4, atol=1e-4)
    # image statistics compare frames with their burst (motion) and use detector boxes: sequences without a
    # damaged frame or detector entry, and the two valid oddities, come through unchanged
    damaged = [victims[k] for k in set(victims) - {"camera_trailer", "no_size"}]
    calm = images_clean.index[~images_clean["seq_id"].isin(images_clean.loc[damaged, "seq_id"])]
    assert {victims["camera_trailer"], victims["no_size"]} <= set(calm)
    stats = [c for c in table_bad.columns if c.startswith("image_stats__")]
    np.testing.assert_allclose(table_bad.loc[calm, stats], table_clean.loc[calm, stats], rtol=1e-5)

    test_ids = [im["id"] for im in read(bad.parent / "bad", TEST_JSON)["images"]]
    submission = pd.read_csv(bad / "reports/submission.csv", dtype={"Id": str})
    assert list(submission["Id"]) == test_ids and submission["Category"].notna().all()
