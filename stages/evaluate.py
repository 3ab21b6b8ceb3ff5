"""DVC stage `evaluate` (see dvc.yaml)."""
from __future__ import annotations

import inspect
import json
import logging
import time

import numpy as np
import pandas as pd

from infra.atomic import write_json
from models import baselines, registry, sequence_rows
from models.metrics import classification_metrics, smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile
from models.report_plots import write_plots
from models.rerank import Reranker
from stages.common import (FEATURES, REPORTS, HOLDOUT_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS, FIGURES, FEATURE_TABLE,
                           table, labelled_train)

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


def fit(model, x: pd.DataFrame, y: np.ndarray, groups: np.ndarray):
    """`model.fit`, with the location groups for the models that stop early on whole cameras."""
    return model.fit(x, y, groups=groups) if "groups" in inspect.signature(model.fit).parameters else model.fit(x, y)


def run(params: dict) -> None:
    """Metrics on the held-out locations for every tuned model, the chosen one, its single-family ablations
    and the baselines, all fitted on the other train locations and run through one loop."""
    cfg, train_cfg, threads = params["evaluate"], params["train"], params["execution"]["threads"]
    labels, rows = labelled_train()
    features = EmbeddingPCA.load(HOLDOUT_PCA).transform_file(FeatureFile(FEATURE_TABLE), labels.index)
    held = json.loads(SPLIT_FILE.read_text())["holdout_locations"]
    is_held = rows["location"].isin(held).to_numpy()
    tuned = json.loads(BEST_PARAMS.read_text())
    chosen = tuned["chosen"]
    unit = train_cfg["rows"]
    seq_fit, seq_val = rows.loc[~is_held, "seq_id"].to_numpy(), rows.loc[is_held, "seq_id"].to_numpy()
    top_conf = pd.read_parquet(FEATURES / "detector_stats.parquet")[["top_conf"]].reindex(labels.index)
    # models learn on the same rows as the tuned ones (images or sequences); metrics are per image
    x_fit, x_val = (sequence_rows.to_rows(features[~is_held], seq_fit, unit),
                    sequence_rows.to_rows(features[is_held], seq_val, unit))
    conf_fit, conf_val = (sequence_rows.to_rows(top_conf[~is_held], seq_fit, unit),
                          sequence_rows.to_rows(top_conf[is_held], seq_val, unit))
    y_fit = sequence_rows.row_labels(labels[~is_held], seq_fit, unit).to_numpy()
    groups = sequence_rows.row_groups(rows.loc[~is_held, "location"], seq_fit, unit)
    y_val = labels[is_held].to_numpy()

    def tuned_model(name: str, columns: list[str] | None = None):
        return registry.build(name, train_cfg, tuned["models"][name]["params"], threads), columns

    # name: (model, its columns: all features if None, or the detector's confidence)
    models: dict = {"majority_class": (baselines.majority_class(), None),
                    "detector_only": (baselines.DetectorRule(cfg["detector_threshold"]), "top_conf")}
    multiclass = tuned["models"].get(registry.LightGBMMulticlass.NAME, {})
    results: dict[str, dict] = {}
    if "skipped" in multiclass:  # too many rows x classes for any multiclass model (models.registry)
        results.update({n: {"skipped": multiclass["skipped"]} for n in (
            "logistic_regression", "hist_gradient_boosting", f"{registry.LightGBMMulticlass.NAME}_all_families")})
    else:
        models["logistic_regression"] = (baselines.linear_probe(train_cfg["class_weight"], train_cfg["seed"]), None)
        models["hist_gradient_boosting"] = (baselines.HistGradientBoosting(
            multiclass["params"], train_cfg["class_weight"], train_cfg["cv_folds"], train_cfg["max_rounds"],
            train_cfg["early_stopping_rounds"], train_cfg["seed"]), None)
        models[f"{registry.LightGBMMulticlass.NAME}_all_families"] = tuned_model(registry.LightGBMMulticlass.NAME)
    models[f"{Reranker.NAME}_all_families"] = tuned_model(Reranker.NAME)
    for family, prefixes in ablations(features.columns).items():
        columns = [c for c in features.columns if c.startswith(prefixes)]
        if len(columns) < features.shape[1]:  # one family alone is the all-families row
            models[f"{chosen}_{family}_only"] = tuned_model(chosen, columns)

    row = f"{chosen}_all_families"  # the chosen model family on all feature families
    for name, (estimator, columns) in models.items():
        xf, xv = (conf_fit, conf_val) if columns == "top_conf" else (x_fit, x_val) if columns is None else \
            (x_fit[columns], x_val[columns])
        started = time.perf_counter()
        fit(estimator, xf, y_fit, groups)
        seconds = time.perf_counter() - started
        proba = sequence_rows.to_images(estimator.predict_proba(xv), xv.index, seq_val, unit)
        results[name] = dict(classification_metrics(y_val, proba, [int(c) for c in estimator.classes_], seq_val),
                             fit_seconds=seconds)
        if name == row:
            chosen_proba = proba
    model = models[row][0]
    classes = [int(c) for c in model.classes_]
    smoothed = smooth_by_sequence(chosen_proba, seq_val)
    results[f"{row}_sequence_smoothed"] = dict(classification_metrics(y_val, smoothed, classes, seq_val),
                                               fit_seconds=results[row]["fit_seconds"])
    reported = f"{row}_sequence_smoothed" if cfg["smoothing"] else row
    metrics = dict(results[reported], model=reported, chosen_by=tuned["why"], holdout_locations=len(held),
                   unseen_classes=sorted(set(int(c) for c in y_val) - set(classes)),
                   tuning_cv_log_loss={n: m["cv_log_loss"] for n, m in tuned["models"].items() if "cv_log_loss" in m})
    if isinstance(model, Reranker):
        metrics.update(candidates=min(model.candidates, len(classes)),
                       candidate_recall=model.candidate_recall(x_val, sequence_rows.row_labels(
                           labels[is_held], seq_val, unit).to_numpy()))
    per_class = metrics.pop("per_class")
    summary = {name: {k: v for k, v in m.items() if k != "per_class"} for name, m in results.items()}
    for name, m in summary.items():
        if "skipped" in m:
            log.info("evaluate: %-50s %s", name, m["skipped"])
        else:
            log.info("evaluate: %-50s accuracy %.3f  macro-F1 %.3f", name, m["accuracy"], m["macro_f1"])
    write_json(metrics, REPORTS / "metrics.json")
    write_json(summary, REPORTS / "baselines.json")
    predicted = np.asarray(classes)[(smoothed if cfg["smoothing"] else chosen_proba).argmax(axis=1)]
    write_plots(y_val, predicted, per_class, model.booster_, table("categories")["name"], PLOTS, FIGURES)

