"""The full-scale rehearsal at 1/100 of the images on 1/20 of the cameras: the real category list's long
tail (100+ classes in train, some seen once), the whole pipeline under DVC, and its scale report."""
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, SHARED_CORES


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("rehearsal")
    subprocess.run([sys.executable, str(REPO / "benchmarks/rehearse.py"), "--scale", "0.01", "--camera-scale",
                    "0.05", "--landsat-size", "34", "--out", str(out), "--report", str(out / "scale.json"),
                    "--inference-images", "0", "--set", "train.tune.n_trials=2",
                    "train.multiclass_max_row_classes=100000",
                    *(f"execution.{key}={value}" for key, value in SHARED_CORES.items())], check=True, capture_output=True)
    return json.loads((out / "scale.json").read_text())


def test_scale_report_measures_every_stage_and_a_noop_repro(rehearsal):
    shape, stages = rehearsal["shape"], rehearsal["stages"]
    assert shape["train_images"] == 2180 and shape["test_images"] == 629
    assert shape["train_classes"] >= 100 and shape["max_boxes_per_image"] <= 100
    assert set(stages) == {"inventory", "load", "detector_stats", "sequence_timing", "landsat_summary",
                           "image_stats", "embeddings", "join", "train", "evaluate", "predict"}
    assert all(s["wall_s"] > 0 and s["peak_rss_gb"] > 0 for s in stages.values())
    # the iNaturalist sources at 1/100 of their estimated size (8,000 and 5,800 photos), boxes on 2017's only
    photos = shape["supplemental_photos"]
    assert {n: p["photos"] for n, p in photos.items()} == {"inat2017": 80, "inat2018": 58}
    assert photos["inat2018"]["boxes"] == 0 < photos["inat2017"]["boxes"] < 80
    # their competitions' location files at 1/100 of their records (675,170 and 461,939), 95% of photos dated
    assert {n: p["location_records"] for n, p in photos.items()} == {"inat2017": 6752, "inat2018": 4619}
    dated = sum(p["dated"] for p in photos.values())
    assert 0.85 * 138 < dated < 138
    timing = stages["sequence_timing"]["outputs"]["artifacts/features/sequence_timing.parquet"]["rows"]
    assert timing == 2180 + 629 + dated  # the camera images, then the dated photos
    files = stages["inventory"]["outputs"]["artifacts/tables/files.parquet"]["rows"]
    assert files == 2180 + 629 + shape["landsat_files"] + 3 + 138 + 2 + 4  # the metadata and location json files
    assert stages["join"]["outputs"]["artifacts/features/feature_table.parquet"]["rows"] == 2180 + 629 + 138
    assert {k: v for k, v in rehearsal["metrics"].items() if k.startswith("supplemental_")} == {
        "supplemental_trained_with": True, "supplemental_rows": 138, "supplemental_weight": 0.1,
        "supplemental_why": "train.supplemental: auto, on under split.scheme location"}
    assert len(rehearsal["noop_repro_s"]) == 2 and rehearsal["totals"]["train_evaluate_s"] > 0


def test_the_long_tail_is_scored_and_the_probe_beats_the_rules_on_held_out_cameras(rehearsal):
    """At 1/100 of the images 133 classes have 1,805 training rows: a fold's candidates mostly miss the true
    class, the re-ranker's tuning loss sits at the floor (about 33.5 of 34.5) and its macro-F1 (0.007-0.034 over
    runs whose PCA differed in the last bits, before the model stages were pinned to one BLAS thread) is noise
    around the rules' (0.008 and 0.018): no bound on it holds with a margin at this size, so none is asserted.
    The full-shape rehearsal (reports/scale.json) measures the re-ranker. What holds here: the chosen model is
    scored on the long tail's held-out classes, and the linear probe's macro-F1 is several times the rules'
    (0.084-0.087 against 0.018)."""
    metrics, baselines = rehearsal["metrics"], rehearsal["baselines"]
    assert metrics["model"] == "reranker_all_families_sequence_smoothed"
    assert metrics["n_classes"] >= 10 and 0 <= metrics["macro_f1"] <= 1  # classes present at the held-out cameras
    rules = max(baselines[rule]["macro_f1"] for rule in ("majority_class", "detector_only"))
    assert baselines["linear_probe_all_families"]["macro_f1"] > 3 * rules


def test_multiclass_trees_past_the_limit_are_neither_tuned_nor_evaluated_and_say_why_but_the_probes_run(rehearsal):
    for name in ("lightgbm_multiclass_all_families", "hist_gradient_boosting"):
        assert "train.multiclass_max_row_classes (100,000)" in rehearsal["baselines"][name]["skipped"]
    headline = rehearsal["metrics"]
    for name in ("linear_probe_embeddings", "linear_probe_all_families"):  # scored on the chosen model's images
        scored = rehearsal["baselines"][name]
        assert scored["split"] == headline["split"] and scored["n_images"] == headline["n_images"] > 0
    choice = rehearsal["best_params"]
    assert choice["chosen"] == "reranker" and choice["why"].startswith("the only model tuned")
    assert "train.multiclass_max_row_classes (100,000)" in choice["models"]["lightgbm_multiclass"]["skipped"]
    assert "accuracy" in rehearsal["baselines"]["reranker_embeddings_parquet_only"]
