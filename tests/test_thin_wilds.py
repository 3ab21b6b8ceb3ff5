"""Real data as the README writes it: a small WILDS-layout copy in the official format whose classes live at one
or two cameras (as most real classes do), with no MegaDetector file, no Landsat, an empty official split and a
few files without usable pixels, run through the README's own `dvc exp run` command with default params (but a
3-trial tuning budget: how long tuning searches, not what runs; and the embedded sample, which `dvc exp run` also
builds, at the tests' tiny size: nothing reads it here)."""
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import camera_jpeg, git_project, stages_run

# (official split, location_remapped, category_id, images): every training class at one camera only, so each
# location fold (and the stopping fold) holds classes no other fold has; `test` has a class train never saw;
# no id_val row at all
PLAN = [("train", 0, 3, 12), ("train", 0, 7, 6), ("train", 1, 12, 12), ("train", 2, 15, 10), ("train", 2, 7, 0),
        ("train", 3, 21, 10), ("val", 4, 3, 6), ("val", 4, 12, 4), ("test", 5, 15, 8), ("test", 5, 99, 5),
        ("id_test", 1, 12, 4), ("id_test", 3, 21, 4)]
NAMES = {3: "tayassu pecari", 7: "dasyprocta punctata", 12: "cuniculus paca", 15: "leopardus pardalis",
         21: "meleagris ocellata", 99: "panthera onca"}
SIZES = {0: (192, 108), 1: (192, 108), 2: (204, 153), 3: (204, 153), 4: (192, 108), 5: (204, 153)}  # two projects


def write_thin_wilds(out) -> pd.DataFrame:
    """The copy: metadata.csv with pandas' unnamed index column and WILDS's `image_id` beside `filename`,
    categories.csv, train/<image id>.jpg as camera firmware writes them (EXIF, a trailer after the end marker)."""
    rng = np.random.default_rng(5)
    classes = sorted(NAMES)
    (out / "train").mkdir(parents=True)
    rows, sequence = [], 0
    for split, location, category, n in PLAN:
        for k in range(n):
            if k % 3 == 0:
                sequence += 1
            image_id = f"{rng.integers(16 ** 8):08x}-{location}{category:03d}{k:02d}"
            w, h = SIZES[location]
            hue = np.uint8(20 * classes.index(category))
            pixels = np.full((h, w, 3), (hue, 120, 90), np.uint8) + rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
            (out / "train" / f"{image_id}.jpg").write_bytes(camera_jpeg(cv2.cvtColor(pixels, cv2.COLOR_HSV2BGR),
                                                                         trailer=b"\x00" * 16))
            day = 1 + (k // 3) + 10 * (split == "id_test")
            rows.append({"split": split, "location_remapped": location, "sequence_remapped": sequence,
                         "datetime": f"2013-06-{day:02d} 0{k % 3}:44:19.000", "filename": f"{image_id}.jpg",
                         "y": classes.index(category), "image_id": image_id})
    meta = pd.DataFrame(rows)
    meta.to_csv(out / "metadata.csv")
    pd.DataFrame({"y": range(len(classes)), "category_id": classes,
                  "name": [NAMES[c] for c in classes]}).to_csv(out / "categories.csv", index=False)
    return meta


@pytest.fixture(scope="module")
def thin(tmp_path_factory):
    """The README's WILDS command, with default params but the tuning budget, in a git repository of the project."""
    data = tmp_path_factory.mktemp("thin") / "iwildcam_v2.0"
    meta = write_thin_wilds(data)
    train = meta.index[meta["split"] == "train"]
    (data / "train" / meta.at[train[0], "filename"]).write_bytes(b"")  # a download cut to nothing
    (data / "train" / meta.at[train[1], "filename"]).write_bytes(b"<html>Service unavailable</html>")
    tested = meta.index[meta["split"] == "test"]
    (data / "train" / meta.at[tested[0], "filename"]).unlink()  # a test image missing from the copy
    work = git_project(tmp_path_factory.mktemp("thin_repo"))
    ran = stages_run(work, ["dvc", "exp", "run", "-S", f"data.root={data}", "-S", "data.layout=wilds",
                            "-S", "data.metadata=metadata.csv", "-S", "split.scheme=wilds",
                            "-S", "train.tune.n_trials=3"])
    return work, meta, ran


def report(work, name: str) -> dict:
    return json.loads((work / name).read_text())


def test_the_readme_wilds_command_runs_to_the_end_on_thin_real_data(thin):
    work, meta, ran = thin
    assert {"load", "train", "evaluate", "predict"} <= ran
    metrics, baselines = report(work, "reports/metrics.json"), report(work, "reports/baselines.json")
    assert metrics["scheme"] == "wilds" and set(baselines[metrics["model"]]["splits"]) == {"test", "val", "id_test"}
    assert metrics["unscored_splits_id_val"] == "no labelled image in this split of metadata.csv"
    # the sample's photos are configured, and the report says why this run does not train on them
    assert not metrics["supplemental_trained_with"]
    assert metrics["supplemental_why"].startswith("train.supplemental: auto, off under split.scheme wilds: ")
    # the stopping fold holds no class the other folds know: scikit-learn's early stopping has nothing to stop on
    assert baselines["hist_gradient_boosting"]["skipped"].startswith("skipped: its early-stopping fold")
    comparison = (work / "reports/comparison.md").read_text()
    assert "| hist_gradient_boosting | all | skipped: its early-stopping fold" in comparison
    assert "| every model | id_val | no labelled image in this split of metadata.csv |" in comparison
    submission = pd.read_csv(work / "reports/submission.csv", dtype={"Id": str})
    assert sorted(submission["Id"]) == sorted(meta.loc[meta["split"] == "test", "image_id"])  # the missing one too


def test_families_the_data_lacks_are_absent_with_the_reason_never_zeros(thin):
    work, _, _ = thin
    table = pd.read_parquet(work / "artifacts/features/feature_table.parquet")
    families = {c.split("__")[0] for c in table.columns}
    assert families == {"sequence_timing", "image_stats", "embeddings_efficientnet_lite0"}
    assert not any("__crop_" in c or "__seq_crop_" in c for c in table.columns)
    assert table.notna().any().all()  # no column without a value reaches the models
    # no detector: whether a box is there is unknown (NA, not 0), so the box's columns carry nothing
    assert pd.read_parquet(work / "artifacts/features/image_stats.parquet")["box_present"].isna().all()
    assert not any(c.startswith("image_stats__box_") for c in table.columns)
    absent = report(work, "reports/quality/join.json")["notes"]["absent families and views"]
    assert set(absent) == {"detector_stats", "landsat_summary", "embeddings_efficientnet_lite0_crops"}
    assert "no MegaDetector file" in absent["detector_stats"] and "location" in absent["landsat_summary"]
    baselines = report(work, "reports/baselines.json")
    chosen = report(work, "artifacts/models/best_params.json")["chosen"]
    assert baselines["detector_only"] == {"skipped": "no MegaDetector output for any image "
                                                     "(reports/quality/load.json)"}
    for family in absent:
        assert baselines[f"{chosen}_{family}_only"]["skipped"].startswith("skipped: no value for any image")
    measured = [r["model"] for r in report(work, "reports/comparison.json") if r["kind"] == "measured"]
    assert "detector_only" not in measured


def test_rows_without_pixels_are_counted_per_split_and_never_train(thin):
    work, meta, _ = thin
    load = report(work, "reports/quality/load.json")
    per_split = load["notes"]["images without a usable file, per split"]
    assert per_split["train"]["without_usable_file"] == 2 and per_split["test"]["without_usable_file"] == 1
    assert load["skipped"]["image file empty, 0 bytes (image not read)"] == 1
    unreadable = "image width/height missing or not positive, JPEG header unreadable (left NA, image not read)"
    assert load["skipped"][unreadable] == 3  # the web page, and the two files not there to read
    html = meta.loc[meta["split"] == "train", "image_id"].iloc[1]
    assert f"metadata.csv: image {html} (not a JPEG)" in load["examples"][unreadable]
    join = report(work, "reports/quality/join.json")
    assert join["notes"]["images without usable pixels, per split"]["train"]["without_pixels"] == 2
    metrics = report(work, "reports/metrics.json")
    assert metrics["training_images_without_pixels"] == 2
    splits = report(work, "reports/baselines.json")[metrics["model"]]["splits"]
    assert splits["test"]["n_images"] == (meta["split"] == "test").sum()  # scored all the same


def test_metadata_only_labels_train_with_every_pixel_family_off_and_no_image_file(thin, tmp_path):
    """The README's metadata-only command (timing features alone) on the copy's metadata without a single image
    file: the rule that keeps images without pixels out of training guards the pixel families, and with none of
    them chosen every labelled image trains."""
    work = tmp_path / "repo"
    shutil.copytree(thin[0], work, symlinks=True)
    data = tmp_path / "metadata_only"
    shutil.copytree(yaml.safe_load((work / "params.yaml").read_text())["data"]["root"], data,
                    ignore=shutil.ignore_patterns("*.jpg"))
    off = [f"features.{f}=false" for f in ("embeddings", "image_stats", "detector_stats", "landsat_summary")]
    ran = stages_run(work, ["dvc", "exp", "run", "-S", f"data.root={data}", *(a for f in off for a in ("-S", f))])
    assert {"load", "join", "train", "evaluate", "predict"} <= ran
    meta = thin[1]
    load = report(work, "reports/quality/load.json")["notes"]["images without a usable file, per split"]
    assert load["train"]["without_usable_file"] == (meta["split"] == "train").sum()  # every file is missing
    join = report(work, "reports/quality/join.json")
    assert join["notes"]["usable rule"] == "no pixel family chosen: every camera image (its file not needed), no photo"
    assert {c.split("__")[0] for c in pd.read_parquet(work / "artifacts/features/feature_table.parquet").columns} == {
        "sequence_timing"}
    metrics = report(work, "reports/metrics.json")
    assert metrics["training_images_without_pixels"] == 0
    splits = report(work, "reports/baselines.json")[metrics["model"]]["splits"]
    assert splits["test"]["n_images"] == (meta["split"] == "test").sum()
    submission = pd.read_csv(work / "reports/submission.csv", dtype={"Id": str})
    assert sorted(submission["Id"]) == sorted(meta.loc[meta["split"] == "test", "image_id"])
