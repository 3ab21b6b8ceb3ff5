"""DVC stage `evaluate` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from infra.atomic import write_json
from models import baselines, sequence_rows
from models.metrics import classification_metrics, smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile
from models.report_plots import write_plots
from models.rerank import Reranker
from stages.common import (FEATURES, REPORTS, HOLDOUT_MODEL, HOLDOUT_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS, FIGURES,
                           FEATURE_TABLE, table, labelled_train)

log = logging.getLogger("stages.evaluate")


def ablations(columns: pd.Index) -> dict[str, tuple[str, ...]]:
    """Column prefixes of each single-family model: every family in the table (one per embedding
    backbone), and each embedding family split by view: whole frame (scene) against detector crops (animal)."""
    families = list(dict.fromkeys(str(c).split("__")[0] for c in columns))
    rows = {f: (f"{f}__",) for f in families}
    for f in (f for f in families if f.startswith("embeddings")):
        rows[f"{f}_frame"] = (f"{f}__frame_",)
        rows[f"{f}_crops"] = (f"{f}__crop_", f"{f}__seq_crop_")
    return rows


def run(params: dict) -> None:
    """Metrics on the held-out locations for the chosen model and every baseline beside it."""
    cfg, train_cfg = params["evaluate"], params["train"]
    labels, rows = labelled_train()
    features = EmbeddingPCA.load(HOLDOUT_PCA).transform_file(FeatureFile(FEATURE_TABLE), labels.index)
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
    y_val_rows = sequence_rows.row_labels(labels[is_held], seq_val, unit).to_numpy()
    x_val_images, x_val = x_val, sequence_rows.to_rows(x_val, seq_val, unit)

    def per_image(proba: np.ndarray) -> np.ndarray:
        return sequence_rows.to_images(proba, x_val.index, seq_val, unit)

    def record(name: str, proba: np.ndarray, classes: list[int], seconds: float | None) -> None:
        results[name] = dict(classification_metrics(y_val, proba, classes, seq_val), fit_seconds=seconds)

    def timed(fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        return out, time.perf_counter() - started

    fit_classes = sorted(int(c) for c in y_fit.unique())
    groups_fit = sequence_rows.row_groups(rows.loc[~is_held, "location"], seq_fit, unit)
    majority = baselines.majority_class(y_fit, len(y_val))
    record("majority_class", baselines.one_hot(majority, fit_classes), fit_classes, 0.0)
    top_conf = pd.read_parquet(FEATURES / "detector_stats.parquet")["top_conf"].reindex(x_val_images.index)
    record("detector_only", *baselines.detector_only(top_conf, y_fit, cfg["detector_threshold"]), 0.0)
    # multiclass models grow one tree (or weight vector) per class: past the limit they would not fit the
    # budget, and are skipped with the reason
    row_classes = len(x_fit) * len(fit_classes)
    too_big = (f"skipped: {len(x_fit):,} rows x {len(fit_classes)} classes = {row_classes:,} > "
               f"evaluate.multiclass_max_row_classes ({cfg['multiclass_max_row_classes']:,})")
    multiclass = {
        "logistic_regression": lambda: baselines.linear_probe(x_fit, y_fit, x_val, weight, seed),
        "lightgbm_multiclass": lambda: baselines.lightgbm_multiclass(x_fit, y_fit, x_val, tuned["params"],
                                                                     tuned["rounds"], weight, seed),
        "hist_gradient_boosting": lambda: baselines.hist_gradient_boosting(x_fit, y_fit, x_val, tuned["params"],
                                                                           tuned["rounds"], weight, seed)}
    for name, fit_predict in multiclass.items():
        if row_classes > cfg["multiclass_max_row_classes"]:
            results[name] = {"skipped": too_big}
            continue
        (proba, classes), seconds = timed(fit_predict)
        record(name, per_image(proba), classes, seconds)
    for name, prefixes in ablations(features.columns).items():
        cols = [c for c in features.columns if c.startswith(prefixes)]
        if cols:
            model, seconds = timed(Reranker.fit, x_fit[cols], y_fit, groups_fit, fit_classes, tuned["params"],
                                   tuned["rounds"], train_cfg, seed)
            record(f"reranker_{name}_only", per_image(model.predict_proba(x_val[cols])), fit_classes, seconds)
    model = Reranker.load(HOLDOUT_MODEL)
    classes = model.classes
    proba = per_image(model.predict_proba(x_val))
    record("reranker_all_families", proba, classes, tuned["fit_seconds"])
    smoothed = smooth_by_sequence(proba, seq_val)
    record("reranker_all_families_sequence_smoothed", smoothed, classes, tuned["fit_seconds"])

    chosen = "reranker_all_families_sequence_smoothed" if cfg["smoothing"] else "reranker_all_families"
    metrics = dict(results[chosen], model=chosen, holdout_locations=len(held), candidates=model.k,
                   candidate_recall=model.candidate_recall(x_val, y_val_rows),
                   unseen_classes=sorted(set(int(c) for c in y_val) - set(classes)))
    per_class = metrics.pop("per_class")
    summary = {name: {k: v for k, v in m.items() if k != "per_class"} for name, m in results.items()}
    for name, m in summary.items():
        if "skipped" in m:
            log.info("evaluate: %-42s %s", name, m["skipped"])
        else:
            log.info("evaluate: %-42s accuracy %.3f  macro-F1 %.3f", name, m["accuracy"], m["macro_f1"])
    write_json(metrics, REPORTS / "metrics.json")
    write_json(summary, REPORTS / "baselines.json")
    predicted = np.asarray(classes)[(smoothed if cfg["smoothing"] else proba).argmax(axis=1)]
    names = table("categories")["name"]
    write_plots(y_val, predicted, per_class, model.booster, names, PLOTS, FIGURES)
