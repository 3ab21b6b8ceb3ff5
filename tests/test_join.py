"""The join stage builds the feature table in Arrow: it must equal pandas' outer concat and reindex."""
import json

import numpy as np
import pandas as pd

import infra.artifacts as artifacts
import stages.join as join

PARAMS = {"features": {"detector_stats": True, "sequence_timing": True, "landsat_summary": False,
                       "image_stats": False, "embeddings": True}, "data": {"warn_unusable_share": 0.01}}


def in_folder(monkeypatch, folder, images: pd.DataFrame, notes: dict | None = None) -> None:
    """The join stage reading its inputs from `folder` and writing there, the load report's notes given."""
    (folder / "quality").mkdir(exist_ok=True)
    (folder / "quality" / "load.json").write_text(json.dumps({"notes": notes or {}}))
    for module in (join, artifacts):
        monkeypatch.setattr(module, "QUALITY", folder / "quality")
    monkeypatch.setattr(join, "FEATURES", folder)
    monkeypatch.setattr(join, "EMBEDDINGS", folder / "embeddings")
    monkeypatch.setattr(join, "FEATURE_TABLE", folder / "feature_table.parquet")
    monkeypatch.setattr(join, "USABLE_PIXELS", folder / "usable_pixels.parquet")
    monkeypatch.setattr(join, "table", lambda name: images if name == "images" else images.iloc[:0])  # no photos


def test_join_equals_pandas_concat_and_reindex_with_missing_and_shuffled_rows(tmp_path, monkeypatch):
    """Every backbone's embeddings file is a family of its own (in file-name order), prefixed by its name."""
    rng = np.random.default_rng(0)
    ids = pd.Index([f"img{i}" for i in range(50)], name="image_id")
    images = pd.DataFrame({"split": "train", "file_ok": True}, index=ids)
    families = {
        "detector_stats": pd.DataFrame({"n_boxes": rng.integers(0, 5, 50), "top_conf": rng.random(50)}, index=ids),
        # another order, some images missing, an integer column
        "sequence_timing": pd.DataFrame({"night": (rng.random(40) < 0.5).astype(np.float32),
                                         "burst": rng.integers(1, 9, 40)}, index=ids[rng.permutation(50)[:40]]),
        "embeddings/embeddings_dinov2_vits14": pd.DataFrame(rng.normal(size=(50, 3)).astype(np.float32),
                                                            columns=[f"frame_emb_{k}" for k in range(3)],
                                                            index=ids[rng.permutation(50)]),
        "embeddings/embeddings_efficientnet_lite0": pd.DataFrame(rng.normal(size=(50, 4)).astype(np.float32),
                                                                 columns=[f"frame_emb_{k}" for k in range(4)], index=ids),
    }
    (tmp_path / "embeddings").mkdir()
    for name, frame in families.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    monkeypatch.setattr(join, "FEATURES", tmp_path)
    monkeypatch.setattr(join, "EMBEDDINGS", tmp_path / "embeddings")
    in_folder(monkeypatch, tmp_path, images)
    join.run(PARAMS)
    expected = pd.concat([f.add_prefix(f"{n.split('/')[-1]}__") for n, f in families.items()], axis=1,
                         join="outer").reindex(ids)
    got = pd.read_parquet(tmp_path / "feature_table.parquet")
    pd.testing.assert_frame_equal(got, expected)
    assert got["sequence_timing__burst"].isna().sum() == 10


def test_families_and_views_without_any_value_are_left_out_and_reported_absent(tmp_path, monkeypatch):
    """No detector file: the detector family and the crop views are empty for every image; no pixel family read
    img1, whose file was there, nor img2, whose file was not: neither trains."""
    ids = pd.Index(["img0", "img1", "img2"], name="image_id")
    images = pd.DataFrame({"split": "train", "file_ok": [True, True, False]}, index=ids)
    empty = np.full(3, np.nan, np.float32)
    (tmp_path / "embeddings").mkdir()
    pd.DataFrame({"n_boxes": empty, "top_conf": empty}, index=ids).to_parquet(tmp_path / "detector_stats.parquet")
    pd.DataFrame({"night": [1.0, 0.0, 1.0]}, index=ids).to_parquet(tmp_path / "sequence_timing.parquet")
    pd.DataFrame({"frame_emb_0": [0.5, np.nan, np.nan], "crop_emb_0": empty, "seq_crop_emb_0": empty},
                 index=ids).to_parquet(tmp_path / "embeddings" / "embeddings_x.parquet")
    in_folder(monkeypatch, tmp_path, images, {"detector off": "no MegaDetector file at m.json"})
    join.run(PARAMS)
    got = pd.read_parquet(tmp_path / "feature_table.parquet")
    assert list(got.columns) == ["sequence_timing__night", "embeddings_x__frame_emb_0"]
    report = json.loads((tmp_path / "quality" / "join.json").read_text())
    assert report["notes"]["absent families and views"] == {
        "detector_stats": "no value for any image: no MegaDetector file at m.json",
        "embeddings_x_crops": "no value for any image: no MegaDetector file at m.json"}
    assert pd.read_parquet(tmp_path / "usable_pixels.parquet")["usable"].tolist() == [True, False, False]
    assert report["notes"]["images without usable pixels, per split"] == {
        "train": {"images": 3, "without_pixels": 2, "share": 0.6667}}


def test_a_view_only_the_photos_have_is_left_out_for_them_too(tmp_path, monkeypatch):
    """No detector file (WILDS ships none): no camera image has a crop view, while every supplemental photo has one
    (its COCO box or the whole photo). Kept, "crop view present" would mean "photo" in training and never serve:
    the photos carry exactly the views the camera images can have, and join.json says what was left out."""
    ids = pd.Index(["img0", "img1", "img2", "inat:1", "inat:2"], name="image_id")
    cameras = pd.DataFrame({"split": "train", "file_ok": True}, index=ids[:3])
    photos = pd.DataFrame({"split": "supplemental", "file_ok": True}, index=ids[3:])
    (tmp_path / "embeddings").mkdir()
    pd.DataFrame({"night": [1.0, 0.0, 1.0]}, index=ids[:3]).to_parquet(tmp_path / "sequence_timing.parquet")
    pd.DataFrame({"frame_emb_0": [0.5, 0.1, 0.2, 0.3, 0.4], "crop_emb_0": [np.nan] * 3 + [0.7, 0.8],
                  "seq_crop_emb_0": [np.nan] * 3 + [0.7, 0.8]},
                 index=ids).to_parquet(tmp_path / "embeddings" / "embeddings_x.parquet")
    pd.DataFrame({"n_boxes": np.full(3, np.nan), "top_conf": np.full(3, np.nan)},
                 index=ids[:3]).to_parquet(tmp_path / "detector_stats.parquet")
    in_folder(monkeypatch, tmp_path, cameras, {"detector off": "no MegaDetector file at m.json"})
    monkeypatch.setattr(join, "table", lambda name: cameras if name == "images" else photos)
    join.run(PARAMS)
    got = pd.read_parquet(tmp_path / "feature_table.parquet")
    assert list(got.index) == list(ids) and list(got.columns) == ["sequence_timing__night", "embeddings_x__frame_emb_0"]
    notes = json.loads((tmp_path / "quality" / "join.json").read_text())["notes"]
    assert notes["absent families and views"]["embeddings_x_crops"] == (
        "no value for any camera image (the supplemental photos have one, which would tell them apart in training and "
        "never serve: left out): no MegaDetector file at m.json")
    assert notes["columns only the supplemental photos have a value in (left out), per family or view"] == {
        "embeddings_x_crops": 2}
