"""Thin CLI: one subcommand per DVC stage; each reads params.yaml and writes what dvc.yaml declares."""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from data import QualityReport, index_landsat, load_detections, load_metadata
from data.io import write_json, write_parquet, write_text

log = logging.getLogger("pipeline")

SAMPLE_DIR = Path("sample_data")
TABLES = Path("artifacts/tables")
FEATURES = Path("artifacts/features")
MODELS = Path("artifacts/models")
REPORTS = Path("reports")
QUALITY = REPORTS / "quality"
FAMILIES = ("detector_stats", "sequence_timing", "landsat_summary", "image_stats")
CACHE = Path("artifacts/cache")
FEATURE_TABLE = FEATURES / "feature_table.parquet"
HOLDOUT_MODEL = MODELS / "holdout_lightgbm.txt"
FINAL_MODEL = MODELS / "final_lightgbm.txt"
SPLIT_FILE = MODELS / "split.json"


def table(name: str) -> pd.DataFrame:
    return pd.read_parquet(TABLES / f"{name}.parquet")


def write_quality(stage: str, report: QualityReport) -> None:
    report.log_summary(stage)
    write_json(report.to_dict(), QUALITY / f"{stage}.json")


def stage_sample(params: dict) -> None:
    """Write the embedded sample in the real formats (a real download replaces it via data.root)."""
    from sample.generate import generate

    if SAMPLE_DIR.exists():
        shutil.rmtree(SAMPLE_DIR)
    tmp = SAMPLE_DIR.with_name(SAMPLE_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = generate(tmp, params["sample"])
    tmp.rename(SAMPLE_DIR)
    log.info("sample: wrote %s", counts)


def stage_load(params: dict) -> None:
    """Read and validate every raw input once; downstream stages read only these typed tables."""
    root = Path(params["data"]["root"])
    report = QualityReport()
    images, labels, categories = load_metadata(root, report, tuple(params["data"]["valid_years"]))
    detections, detector_images = load_detections(root, images, report)
    landsat_index = index_landsat(root, report)
    for name, df in (("images", images), ("labels", labels), ("categories", categories),
                     ("detections", detections), ("detector_images", detector_images),
                     ("landsat_index", landsat_index)):
        write_parquet(df, TABLES / f"{name}.parquet")
    write_quality("load", report)


def stage_detector_stats(params: dict) -> None:
    from features.detector_stats import detector_stats

    cfg = params["detector_stats"]
    stats = detector_stats(table("images"), table("detections"), table("detector_images"),
                           cfg["thresholds"], cfg["empty_threshold"], cfg["location_box_threshold"])
    write_parquet(stats, FEATURES / "detector_stats.parquet")


def stage_sequence_timing(params: dict) -> None:
    from features.sequence_timing import sequence_timing

    cfg = params["sequence_timing"]
    report = QualityReport()
    timing = sequence_timing(table("images"), cfg["max_days_from_location_median"],
                             cfg["activity_windows_hours"], report)
    write_parquet(timing, FEATURES / "sequence_timing.parquet")
    write_quality("sequence_timing", report)


def stage_landsat_summary(params: dict) -> None:
    from features.landsat_summary import landsat_summary

    report = QualityReport()
    summary = landsat_summary(table("images"), table("landsat_index"), params["landsat_summary"], report)
    write_parquet(summary, FEATURES / "landsat_summary.parquet")
    write_quality("landsat_summary", report)


def stage_image_stats(params: dict) -> None:
    from features.image_stats import image_stats

    report = QualityReport()
    stats = image_stats(table("images"), table("detections"), params["data"]["root"], params["image_stats"],
                        CACHE / "image_stats", report)
    write_parquet(stats, FEATURES / "image_stats.parquet")
    write_quality("image_stats", report)


def stage_join(params: dict) -> None:
    """One feature table keyed by image id; family switches choose the columns, prefixed by family."""
    images = table("images")
    chosen = [f for f in FAMILIES if params["features"][f]]
    if not chosen:
        raise SystemExit("features: every family is switched off; switch at least one on")
    parts = [pd.read_parquet(FEATURES / f"{f}.parquet").add_prefix(f"{f}__") for f in chosen]
    joined = pd.concat(parts, axis=1, join="outer").reindex(images.index)
    log.info("join: %d images x %d features from %s", *joined.shape, chosen)
    write_parquet(joined, FEATURE_TABLE)


def _labelled_train() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features, labels and locations of the labelled train images."""
    images, labels = table("images"), table("labels")["category_id"]
    features = pd.read_parquet(FEATURE_TABLE)
    ids = labels.index.intersection(images.index[images["split"] == "train"])
    return features.loc[ids], labels.loc[ids], images.loc[ids, "location"]


def stage_train(params: dict) -> None:
    """Fit on train locations minus the held-out ones (for evaluation), then on all (for submission)."""
    from models import lgbm
    from models.split import holdout_locations

    cfg = params["train"]
    features, labels, locations = _labelled_train()
    held = holdout_locations(locations, params["split"]["holdout_fraction"], params["split"]["seed"])
    fit_rows = ~locations.isin(held)
    log.info("train: %d images from %d locations; holding out %d locations (%d images)",
             fit_rows.sum(), locations[fit_rows].nunique(), len(held), (~fit_rows).sum())
    booster, classes = lgbm.fit(features[fit_rows], labels[fit_rows], cfg["lightgbm"], cfg["seed"],
                                cfg["class_weight"])
    lgbm.save(booster, classes, HOLDOUT_MODEL)
    booster, classes = lgbm.fit(features, labels, cfg["lightgbm"], cfg["seed"], cfg["class_weight"])
    lgbm.save(booster, classes, FINAL_MODEL)
    write_json({"holdout_locations": held}, SPLIT_FILE)


def stage_evaluate(params: dict) -> None:
    """Accuracy and macro-F1 on the held-out locations, for the model and the baselines beside it."""
    import json

    from models import lgbm
    from models.metrics import classification_metrics

    features, labels, locations = _labelled_train()
    held = json.loads(SPLIT_FILE.read_text())["holdout_locations"]
    is_held = locations.isin(held)
    booster, classes = lgbm.load(HOLDOUT_MODEL)
    proba = lgbm.predict_proba(booster, features[is_held])
    y_true = labels[is_held].to_numpy()
    metrics = classification_metrics(y_true, np.asarray(classes)[proba.argmax(axis=1)])
    metrics["holdout_locations"] = len(held)
    majority = int(labels[~is_held].mode().iloc[0])
    baselines = {"majority_class": classification_metrics(y_true, np.full(len(y_true), majority))}
    log.info("evaluate: model %s; baselines %s", metrics, baselines)
    write_json(metrics, REPORTS / "metrics.json")
    write_json(baselines, REPORTS / "baselines.json")


def stage_predict(params: dict) -> None:
    """Kaggle submission: one row per test image id, in the order of the test information file."""
    from models import lgbm

    images = table("images")
    test_ids = images.index[images["split"] == "test"]
    features = pd.read_parquet(FEATURE_TABLE).loc[test_ids]
    booster, classes = lgbm.load(FINAL_MODEL)
    predicted = np.asarray(classes)[lgbm.predict_proba(booster, features).argmax(axis=1)]
    submission = pd.DataFrame({"Id": test_ids, "Category": predicted})
    write_text(submission.to_csv(index=False), REPORTS / "submission.csv")
    log.info("predict: %d test images", len(submission))


STAGES = {name[len("stage_"):]: fn for name, fn in globals().items() if name.startswith("stage_")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = yaml.safe_load(Path(args.params).read_text())
    STAGES[args.stage](params)


if __name__ == "__main__":
    main()
