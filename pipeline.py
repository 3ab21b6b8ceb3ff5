"""Thin CLI: one subcommand per DVC stage; each reads params.yaml and writes what dvc.yaml declares."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
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
BEST_PARAMS = MODELS / "best_params.json"
PLOTS = REPORTS / "plots"
FIGURES = REPORTS / "figures"


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


def _labelled_train() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """Features, labels and image rows (location, seq_id) of the labelled train images."""
    images, labels = table("images"), table("labels")["category_id"]
    features = pd.read_parquet(FEATURE_TABLE)
    ids = labels.index.intersection(images.index[images["split"] == "train"])
    return features.loc[ids], labels.loc[ids], images.loc[ids]


def stage_train(params: dict) -> None:
    """Tune on location-grouped folds of the non-held-out locations; fit the best params there (for
    evaluation) and on all train locations (for the submission)."""
    from models import lgbm, sequence_rows
    from models.split import holdout_locations
    from models.tune import tune

    cfg = params["train"]
    features, labels, rows = _labelled_train()
    held = holdout_locations(rows["location"], params["split"]["holdout_fraction"], params["split"]["seed"])
    fit_rows = ~rows["location"].isin(held)
    log.info("train: %d images from %d locations; holding out %d locations (%d images)",
             fit_rows.sum(), rows.loc[fit_rows, "location"].nunique(), len(held), (~fit_rows).sum())
    unit, seqs = cfg["rows"], rows["seq_id"].to_numpy()
    x_fit = sequence_rows.to_rows(features[fit_rows], seqs[fit_rows], unit)
    y_fit = sequence_rows.row_labels(labels[fit_rows], seqs[fit_rows], unit)
    groups = sequence_rows.row_groups(rows.loc[fit_rows, "location"], seqs[fit_rows], unit)
    log.info("train: %d %s rows for tuning and fitting", len(x_fit), unit)
    classes = sorted(int(c) for c in y_fit.unique())
    best, rounds, study = tune(x_fit, lgbm.encode(y_fit, classes), groups, cfg, len(classes), cfg["seed"])
    started = time.perf_counter()
    booster = lgbm.fit(x_fit, y_fit, best, rounds, cfg["seed"], cfg["class_weight"], classes)
    fit_seconds = time.perf_counter() - started
    lgbm.save(booster, classes, HOLDOUT_MODEL)
    y_all = sequence_rows.row_labels(labels, seqs, unit)
    all_classes = sorted(int(c) for c in y_all.unique())
    booster = lgbm.fit(sequence_rows.to_rows(features, seqs, unit), y_all, best, rounds, cfg["seed"],
                       cfg["class_weight"], all_classes)
    lgbm.save(booster, all_classes, FINAL_MODEL)
    write_json({"holdout_locations": held}, SPLIT_FILE)
    write_json({"params": best, "rounds": rounds, "fit_seconds": fit_seconds, "study": study.study_name,
                "cv_log_loss": study.best_value}, BEST_PARAMS)
    history, best_so_far = [], np.inf
    for t in study.trials:
        if t.value is not None:
            best_so_far = min(best_so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name, "value": t.value,
                        "best_value": None if np.isinf(best_so_far) else best_so_far})
    write_json(history, PLOTS / "optuna_history.json")


def stage_evaluate(params: dict) -> None:
    """Metrics on the held-out locations for the chosen model and every baseline beside it."""
    from models import baselines, lgbm, sequence_rows
    from models.metrics import classification_metrics, smooth_by_sequence
    from models.report_plots import write_plots

    cfg, train_cfg = params["evaluate"], params["train"]
    features, labels, rows = _labelled_train()
    held = json.loads(SPLIT_FILE.read_text())["holdout_locations"]
    is_held = rows["location"].isin(held).to_numpy()
    tuned = json.loads(BEST_PARAMS.read_text())
    x_fit, y_fit, x_val, y_val = features[~is_held], labels[~is_held], features[is_held], labels[is_held].to_numpy()
    seq_val = rows.loc[is_held, "seq_id"].to_numpy()
    seed, weight, unit = train_cfg["seed"], train_cfg["class_weight"], train_cfg["rows"]
    results: dict[str, dict] = {}
    # models learn on the same rows as the tuned one (images or sequences); metrics are per image
    seq_fit = rows.loc[~is_held, "seq_id"].to_numpy()
    x_fit, y_fit = sequence_rows.to_rows(x_fit, seq_fit, unit), sequence_rows.row_labels(y_fit, seq_fit, unit)
    x_val_images, x_val = x_val, sequence_rows.to_rows(x_val, seq_val, unit)

    def per_image(proba: np.ndarray) -> np.ndarray:
        return sequence_rows.to_images(proba, x_val.index, seq_val, unit)

    def record(name: str, proba: np.ndarray, classes: list[int], seconds: float | None) -> dict:
        metrics = classification_metrics(y_val, proba, classes, seq_val)
        metrics["fit_seconds"] = seconds
        results[name] = metrics
        return metrics

    def timed(fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - started

    fit_classes = sorted(int(c) for c in y_fit.unique())
    majority = baselines.majority_class(y_fit, len(y_val))
    record("majority_class", baselines.one_hot(majority, fit_classes), fit_classes, 0.0)
    top_conf = pd.read_parquet(FEATURES / "detector_stats.parquet")["top_conf"].reindex(x_val_images.index)
    rule = baselines.detector_only(top_conf, y_fit, cfg["detector_threshold"])
    record("detector_only", baselines.one_hot(rule, fit_classes), fit_classes, 0.0)
    (proba, classes), seconds = timed(baselines.linear_probe, x_fit, y_fit, x_val, weight, seed)
    record("logistic_regression", per_image(proba), classes, seconds)
    for family in FAMILIES:
        cols = [c for c in features.columns if c.startswith(f"{family}__")]
        if cols:
            booster, seconds = timed(lgbm.fit, x_fit[cols], y_fit, tuned["params"], tuned["rounds"], seed, weight,
                                     fit_classes)
            record(f"lightgbm_{family}_only", per_image(lgbm.predict_proba(booster, x_val[cols])), fit_classes, seconds)
    booster, classes = lgbm.load(HOLDOUT_MODEL)
    proba = per_image(lgbm.predict_proba(booster, x_val))
    record("lightgbm_all_families", proba, classes, tuned["fit_seconds"])
    smoothed = smooth_by_sequence(proba, seq_val)
    record("lightgbm_all_families_sequence_smoothed", smoothed, classes, tuned["fit_seconds"])
    (proba_hgb, hgb_classes), seconds = timed(baselines.hist_gradient_boosting, x_fit, y_fit, x_val, tuned["params"],
                                              tuned["rounds"], weight, seed)
    record("hist_gradient_boosting", per_image(proba_hgb), hgb_classes, seconds)

    chosen = "lightgbm_all_families_sequence_smoothed" if cfg["smoothing"] else "lightgbm_all_families"
    metrics = dict(results[chosen], model=chosen, holdout_locations=len(held),
                   unseen_classes=sorted(set(int(c) for c in y_val) - set(classes)))
    per_class = metrics.pop("per_class")
    summary = {name: {k: v for k, v in m.items() if k != "per_class"} for name, m in results.items()}
    for name, m in summary.items():
        log.info("evaluate: %-42s accuracy %.3f  macro-F1 %.3f", name, m["accuracy"], m["macro_f1"])
    write_json(metrics, REPORTS / "metrics.json")
    write_json(summary, REPORTS / "baselines.json")
    predicted = np.asarray(classes)[(smoothed if cfg["smoothing"] else proba).argmax(axis=1)]
    names = table("categories")["name"]
    write_plots(y_val, predicted, per_class, booster, names, PLOTS, FIGURES)


def stage_predict(params: dict) -> None:
    """Kaggle submission: one row per test image id, in the order of the test information file."""
    from models import lgbm, sequence_rows
    from models.metrics import smooth_by_sequence

    images = table("images")
    test = images[images["split"] == "test"]
    unit, seqs = params["train"]["rows"], test["seq_id"].to_numpy()
    features = sequence_rows.to_rows(pd.read_parquet(FEATURE_TABLE).loc[test.index], seqs, unit)
    booster, classes = lgbm.load(FINAL_MODEL)
    proba = sequence_rows.to_images(lgbm.predict_proba(booster, features), features.index, seqs, unit)
    if params["evaluate"]["smoothing"]:
        proba = smooth_by_sequence(proba, test["seq_id"].to_numpy())
    submission = pd.DataFrame({"Id": test.index, "Category": np.asarray(classes)[proba.argmax(axis=1)]})
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
