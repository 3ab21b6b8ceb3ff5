"""The WILDS layout and scheme: the re-packing, its loader (good and bad files), and `dvc repro` end to end with
the official splits (fit on train, tune on val, report every split beside the published numbers)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from data import DataError, QualityReport
from data.wilds import load_wilds
from models.split import evaluation_split
from sample.generate import generate
from sample.wilds import assign_splits, write_wilds
from tests.helpers import (DETECTOR_JSON, TINY, TRAIN_JSON, copy_project, project_reading, read, run_command,
                            run_stage, tiny_params)

SMALL = dict(TINY, train_locations=10, test_locations=2, images=600, bad_clock_locations=0)
TARGETS = {"train": 180, "val": 30, "test": 80, "id_val": 15, "id_test": 20}
CAMERA_TARGETS = {"train": 6, "val": 1, "test": 2}


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle") / "data"
    generate(root, SMALL)
    return root


@pytest.fixture(scope="module")
def wilds(kaggle, tmp_path_factory):
    out = tmp_path_factory.mktemp("wilds") / "iwildcam_v2.0"
    return out, write_wilds(kaggle, out, TARGETS, CAMERA_TARGETS, seed=3)


@pytest.fixture
def damaged(wilds, tmp_path):
    """A private copy of the WILDS-layout root that a test may damage."""
    copy = tmp_path / "iwildcam_v2.0"
    shutil.copytree(wilds[0], copy)
    return copy


def test_repacking_splits_cameras_for_ood_and_days_for_id(wilds):
    root, shape = wilds
    meta = pd.read_csv(root / "metadata.csv", index_col=0)
    cameras = {s: set(meta.loc[meta["split"] == s, "location"]) for s in TARGETS}
    assert (len(cameras["val"]), len(cameras["test"])) == (1, 2)
    assert not cameras["val"] & cameras["test"] and not (cameras["val"] | cameras["test"]) & cameras["train"]
    assert cameras["id_val"] <= cameras["train"] and cameras["id_test"] <= cameras["train"]
    day = meta["location"].astype(str) + pd.to_datetime(meta["datetime"]).dt.strftime(" %Y-%m-%d")
    days = {s: set(day[meta["split"] == s]) for s in TARGETS}
    assert not (days["id_val"] | days["id_test"]) & days["train"] and not days["id_val"] & days["id_test"]
    counts = meta["split"].value_counts()
    assert all(0 < counts[s] <= TARGETS[s] for s in TARGETS) and shape["images"] == len(meta)
    assert sorted(meta["y"].unique()) == list(range(shape["classes"]))  # dense, as WILDS's y


def test_split_targets_are_met_exactly_where_the_cameras_hold_enough():
    rng = np.random.default_rng(0)
    n = 4000
    images = pd.DataFrame({"location": rng.integers(0, 40, n), "seq_id": rng.integers(0, 900, n).astype(str),
                           "datetime": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 200, n), "D"),
                           "frame_num": 0}, index=[f"i{k}" for k in range(n)])
    targets = {"train": 1500, "val": 300, "test": 600, "id_val": 150, "id_test": 160}
    split = assign_splits(images, targets, {"train": 25, "val": 5, "test": 8}, seed=1)
    assert split.value_counts().to_dict() == targets


def test_loader_reads_the_repacked_copy_with_the_kaggle_labels(wilds, kaggle):
    root, shape = wilds
    report = QualityReport()
    images, labels, categories, original = load_wilds(root, report, (2000, 2030))
    assert original and len(images) == shape["images"] and images["file_ok"].all()
    assert images["wilds_split"].value_counts().to_dict() == {s: shape[f"{s}_images"] for s in TARGETS}
    kaggle_labels = {a["image_id"]: a["category_id"] for a in read(kaggle, TRAIN_JSON)["annotations"]}
    assert labels["category_id"].to_dict() == {i: kaggle_labels[i] for i in images.index}
    kaggle_images = pd.DataFrame(read(kaggle, TRAIN_JSON)["images"]).set_index("id")
    assert (images["location"] == kaggle_images.loc[images.index, "location"]).all()  # the original ids
    assert (images[["width", "height"]] == [SMALL["width"], SMALL["height"]]).all().all()  # from the headers
    first = images.sort_values("datetime").groupby("seq_id").head(1)
    assert (first["frame_num"] == 0).all() and (images["frame_num"] < images["seq_num_frames"]).all()
    assert set(categories.index) == set(labels["category_id"])


def test_bad_rows_are_counted_and_named_and_a_missing_column_is_one_error(damaged):
    meta = pd.read_csv(damaged / "metadata.csv", index_col=0)
    meta["image_id"] = meta["filename"].str[:-4]  # WILDS's own column, checked against the filename
    meta.loc[0, "split"] = "holdout"
    meta.loc[1, "y"] = 999
    meta.loc[2, "filename"] = "../escape.png"
    meta.loc[3, "filename"] = meta.loc[4, "filename"]
    meta.loc[3, "image_id"] = meta.loc[4, "image_id"]
    (damaged / "train" / meta.loc[5, "filename"]).unlink()
    # an absolute path and a relative one out of the folder are skipped alike, and never become an image id
    meta.loc[6, "filename"] = f"{damaged}/train/{meta.loc[6, 'filename']}"
    meta.loc[7, "filename"] = f"../../{meta.loc[7, 'filename']}"
    meta.loc[8, "filename"] = f"sub/{meta.loc[8, 'filename']}"
    meta.loc[9, "image_id"] = "not-its-id"
    meta.to_csv(damaged / "metadata.csv")
    report = QualityReport()
    images, labels, _, _ = load_wilds(damaged, report, (2000, 2030))
    skipped, examples = report.to_dict()["skipped"], report.to_dict()["examples"]
    assert skipped["split not one of train, val, test, id_val, id_test (row skipped)"] == 1
    assert skipped["y not in categories.csv (row skipped)"] == 1
    assert examples["y not in categories.csv (row skipped)"] == ["metadata.csv: line 3 y='999'"]
    assert skipped["filename escapes the image folder (row skipped)"] == 3
    assert skipped["filename is not <image id>.jpg in train/ (row skipped)"] == 1
    assert skipped["image_id is not the filename without .jpg (row skipped)"] == 1
    assert skipped["duplicate filename (later row skipped)"] == 1
    assert skipped["image file missing (image not read)"] == 1 and (~images["file_ok"]).sum() == 1
    assert len(images) == len(meta) - 8 and labels.index.equals(images.index)
    assert not images.index.str.contains("/").any() and images.index.isin(meta["image_id"]).all()
    meta.drop(columns="sequence_remapped").to_csv(damaged / "metadata.csv")
    with pytest.raises(DataError, match=r"metadata.csv: columns \['sequence_remapped'\] missing"):
        load_wilds(damaged, QualityReport(), (2000, 2030))
    meta.assign(location_remapped="north").to_csv(damaged / "metadata.csv")
    with pytest.raises(DataError, match=rf"metadata.csv: line 5 \({meta.loc[3, 'filename']}\) has invalid "
                                        r"'location_remapped' = 'north'$"):
        load_wilds(damaged, QualityReport(), (2000, 2030))


def test_a_bad_value_is_reported_as_written_and_a_truncated_file_as_truncated(damaged):
    path = damaged / "metadata.csv"
    meta = pd.read_csv(path, index_col=0).astype({"y": object})
    meta.loc[4, "y"] = None  # an empty cell, which pandas would read as NaN: no label, as an unlisted y
    meta.to_csv(path)
    report = QualityReport()
    images, labels, _, _ = load_wilds(damaged, report, (2000, 2030))
    assert report.counts["y empty: no label (row skipped)"] == 1 and len(images) == len(labels) == len(meta) - 1
    assert report.examples["y empty: no label (row skipped)"] == ["metadata.csv: line 6 y=''"]
    meta.loc[4, "y"] = "nan"
    meta.to_csv(path)
    with pytest.raises(DataError, match=r"has invalid 'y' = 'nan'$"):
        load_wilds(damaged, QualityReport(), (2000, 2030))
    meta.loc[4, "y"] = 0
    meta.to_csv(path)
    text = path.read_bytes()
    path.write_bytes(text[:text.rstrip(b"\n").rfind(b",", 0, len(text) - 30)])  # a download cut mid-line
    with pytest.raises(DataError, match=rf"metadata.csv: line {len(meta) + 1} ends the file without a newline and "
                                        r"has \d of 8 fields: the file is truncated \(download it again\)$"):
        load_wilds(damaged, QualityReport(), (2000, 2030))


def test_without_detector_file_or_original_locations_those_families_are_off_in_one_line(damaged, tmp_path):
    (damaged / DETECTOR_JSON).unlink()
    meta = pd.read_csv(damaged / "metadata.csv", index_col=0)
    meta.drop(columns="location").to_csv(damaged / "metadata.csv")
    (tmp_path / "work").mkdir()
    work = project_reading(damaged, tmp_path / "work")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(layout="wilds", metadata="metadata.csv")
    params["split"]["scheme"] = "wilds"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(work, "inventory")
    done = run_stage(work, "load")
    assert "the detector family and the crops are off" in done.stderr
    assert "no original iWildCam `location` column" in done.stderr
    notes = json.loads((work / "reports/quality/load.json").read_text())["notes"]
    assert {"detector off", "landsat off"} <= set(notes)
    assert pd.read_parquet(work / "artifacts/tables/detections.parquet").empty
    assert pd.read_parquet(work / "artifacts/tables/landsat_index.parquet").empty
    images = pd.read_parquet(work / "artifacts/tables/images.parquet")
    remapped = meta.set_index(meta["filename"].str[:-4]).loc[images.index, "location_remapped"]
    assert (images["location"] == remapped).all()
    # the feature stages run without them: no crop view to embed, and the feature table says why those families
    # are absent (test_thin_wilds.py follows such a table through the model stages)
    for stage in ("detector_stats", "sequence_timing", "landsat_summary", "image_stats", "embeddings", "join"):
        run_stage(work, stage)
    columns = pd.read_parquet(work / "artifacts/features/feature_table.parquet").columns
    assert any(c.startswith("embeddings_efficientnet_lite0__frame_") for c in columns)
    assert not any("__crop_" in c or c.startswith(("detector_stats__", "landsat_summary__")) for c in columns)
    absent = json.loads((work / "reports/quality/join.json").read_text())["notes"]["absent families and views"]
    assert absent["embeddings_efficientnet_lite0_crops"].startswith("no value for any image: no MegaDetector file")


def test_wilds_scheme_needs_the_wilds_layout():
    rows = pd.DataFrame({"location": [1, 2], "photo": False})
    with pytest.raises(DataError, match="split.scheme wilds needs the WILDS layout"):
        evaluation_split(rows, "wilds", None)


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    work = tmp_path_factory.mktemp("wilds_repo")
    copy_project(work)
    params = tiny_params()
    params["sample"].update(SMALL)
    params["data"].update(root="sample_data/iwildcam_v2.0", layout="wilds", metadata="metadata.csv")
    params["split"]["scheme"] = "wilds"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run_command(["dvc", "init", "--no-scm", "-q"], work)
    run_command(["dvc", "repro"], work)
    return work, params


def test_repro_on_the_wilds_layout_reports_every_split_beside_the_published_numbers(repro):
    work, _ = repro
    metrics = json.loads((work / "reports/metrics.json").read_text())
    baselines = json.loads((work / "reports/baselines.json").read_text())
    assert metrics["scheme"] == "wilds" and metrics["split"] == "test"  # the leaderboard's split is the headline
    splits = baselines[metrics["model"]]["splits"]  # every split's metrics: the chosen row's in baselines.json
    assert set(splits) == {"test", "val", "id_test", "id_val"}
    assert all({"accuracy", "macro_recall", "macro_f1"} <= set(m) for m in splits.values())
    assert metrics["macro_f1"] == splits["test"]["macro_f1"]
    for probe in ("linear_probe_embeddings", "linear_probe_all_families"):
        for variant in (probe, f"{probe}_sequence_smoothed"):
            assert set(baselines[variant]["splits"]) == set(splits)
    images = pd.read_parquet(work / "artifacts/tables/images.parquet")
    submission = pd.read_csv(work / "reports/submission.csv", dtype={"Id": str})
    assert set(submission["Id"]) == set(images.index[images["wilds_split"] == "test"])
    comparison = json.loads((work / "reports/comparison.json").read_text())
    published = [r for r in comparison if r["kind"] == "published"]
    assert {r["model"] for r in published} == {"ERM, ResNet-50 fine-tuned", "CORAL, ResNet-50 fine-tuned"}
    ours = [r for r in comparison if r["kind"] == "measured"]
    assert all(r["comparable"] for r in ours) and {r["split"] for r in ours} == set(splits)
    text = (work / "reports/comparison.md").read_text()
    assert "| ERM, ResNet-50 fine-tuned | published | wilds | test | 71.6 | 31.0 |" in text
    assert "its `test` and `id_test` rows stand beside the published ones" in text


def test_a_wilds_copy_under_the_location_scheme_submits_no_image_the_final_model_trained_on(repro, tmp_path):
    """Every image of a WILDS copy is labelled, so the final model of the location scheme trained on all of them:
    predict writes the submission's header only, and says so."""
    copy = tmp_path / "repo"
    shutil.copytree(repro[0], copy)
    record = json.loads((copy / "artifacts/models/split.json").read_text())
    (copy / "artifacts/models/split.json").write_text(json.dumps(dict(record, scheme="location")))
    done = run_stage(copy, "predict")
    assert "no unlabelled test image under split.scheme location: the submission has no row" in done.stderr
    assert (copy / "reports/submission.csv").read_text().splitlines() == ["Id,Category"]


def test_tuning_reads_the_val_labels_and_no_test_label(repro, tmp_path):
    """Relabelling the test splits leaves tuning, the choice and the final model as they were (the same
    studies, resumed with nothing to do); relabelling val starts new studies: val is what tuning scores."""
    work, _ = repro
    copy = tmp_path / "repo"
    shutil.copytree(work, copy)
    choice = json.loads((work / "artifacts/models/best_params.json").read_text())
    assert all(len(m["fold_losses"]) == 1 for m in choice["models"].values())  # one fold: val
    assert "on the one validation split" in choice["why"]
    images = pd.read_parquet(copy / "artifacts/tables/images.parquet")
    table = copy / "artifacts/tables/labels.parquet"
    labels = pd.read_parquet(table)

    def relabelled(splits: tuple[str, ...]) -> dict:
        rows = images.index[images["wilds_split"].isin(splits)]
        shuffled = labels.copy()
        shuffled.loc[rows, "category_id"] = np.random.default_rng(0).permutation(labels.loc[rows, "category_id"])
        assert (shuffled["category_id"] != labels["category_id"]).any()
        shuffled.to_parquet(table)
        run_stage(copy, "train")
        return json.loads((copy / "artifacts/models/best_params.json").read_text())

    assert relabelled(("test", "id_test", "id_val")) == choice
    assert (copy / "artifacts/models/final/booster.txt").read_bytes() == \
        (work / "artifacts/models/final/booster.txt").read_bytes()
    studies = {m["study"] for m in relabelled(("val",))["models"].values()}
    assert not studies & {m["study"] for m in choice["models"].values()}
