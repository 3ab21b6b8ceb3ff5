"""The join stage builds the feature table in Arrow: it must equal pandas' outer concat and reindex."""
import numpy as np
import pandas as pd

import stages.join as join


def test_join_equals_pandas_concat_and_reindex_with_missing_and_shuffled_rows(tmp_path, monkeypatch):
    """Every backbone's embeddings file is a family of its own (in file-name order), prefixed by its name."""
    rng = np.random.default_rng(0)
    ids = pd.Index([f"img{i}" for i in range(50)], name="image_id")
    images = pd.DataFrame({"split": "train"}, index=ids)
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
    monkeypatch.setattr(join, "FEATURE_TABLE", tmp_path / "feature_table.parquet")
    monkeypatch.setattr(join, "table", lambda name: images)
    join.run({"features": {"detector_stats": True, "sequence_timing": True, "landsat_summary": False,
                           "image_stats": False, "embeddings": True}})
    expected = pd.concat([f.add_prefix(f"{n.split('/')[-1]}__") for n, f in families.items()], axis=1,
                         join="outer").reindex(ids)
    got = pd.read_parquet(tmp_path / "feature_table.parquet")
    pd.testing.assert_frame_equal(got, expected)
    assert got["sequence_timing__burst"].isna().sum() == 10
