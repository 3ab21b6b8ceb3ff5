"""DVC stage `train` (see dvc.yaml)."""
from __future__ import annotations

import logging
import time

import numpy as np

from data.io import write_json
from models import lgbm, sequence_rows
from models.reduce import EmbeddingPCA
from models.split import holdout_locations
from models.tune import tune
from stages.common import (HOLDOUT_MODEL, FINAL_MODEL, HOLDOUT_PCA, FINAL_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS,
                           OPTUNA, compute_backend, labelled_train)

log = logging.getLogger("stages.train")


def run(params: dict) -> None:
    """Tune on location-grouped folds of the non-held-out locations; fit the best params there (for
    evaluation) and on all train locations (for the submission)."""
    cfg = params["train"]
    OPTUNA.mkdir(parents=True, exist_ok=True)  # declared in dvc.yaml even when the storage is elsewhere
    features, labels, rows = labelled_train()
    held = holdout_locations(rows["location"], params["split"]["holdout_fraction"], params["split"]["seed"])
    fit_rows = ~rows["location"].isin(held)
    log.info("train: %d images from %d locations; holding out %d locations (%d images)",
             fit_rows.sum(), rows.loc[fit_rows, "location"].nunique(), len(held), (~fit_rows).sum())
    unit, seqs = cfg["rows"], rows["seq_id"].to_numpy()
    pca = EmbeddingPCA.fit(features[fit_rows], cfg["pca_components"], cfg["seed"])
    pca.save(HOLDOUT_PCA)
    x_fit = sequence_rows.to_rows(pca.transform(features[fit_rows]), seqs[fit_rows], unit)
    y_fit = sequence_rows.row_labels(labels[fit_rows], seqs[fit_rows], unit)
    groups = sequence_rows.row_groups(rows.loc[fit_rows, "location"], seqs[fit_rows], unit)
    log.info("train: %d %s rows for tuning and fitting", len(x_fit), unit)
    classes = sorted(int(c) for c in y_fit.unique())
    with compute_backend(params["compute"]) as client:
        best, rounds, study = tune(x_fit, lgbm.encode(y_fit, classes), groups, cfg, len(classes), cfg["seed"],
                                   client=client, threads_per_worker=params["compute"]["threads_per_worker"])
        trials, study_name, cv_loss = study.trials, study.study_name, study.best_value
    started = time.perf_counter()
    booster = lgbm.fit(x_fit, y_fit, best, rounds, cfg["seed"], cfg["class_weight"], classes)
    fit_seconds = time.perf_counter() - started
    lgbm.save(booster, classes, HOLDOUT_MODEL)
    y_all = sequence_rows.row_labels(labels, seqs, unit)
    all_classes = sorted(int(c) for c in y_all.unique())
    pca = EmbeddingPCA.fit(features, cfg["pca_components"], cfg["seed"])
    pca.save(FINAL_PCA)
    booster = lgbm.fit(sequence_rows.to_rows(pca.transform(features), seqs, unit), y_all, best, rounds, cfg["seed"],
                       cfg["class_weight"], all_classes)
    lgbm.save(booster, all_classes, FINAL_MODEL)
    write_json({"holdout_locations": held}, SPLIT_FILE)
    write_json({"params": best, "rounds": rounds, "fit_seconds": fit_seconds, "study": study_name,
                "cv_log_loss": cv_loss}, BEST_PARAMS)
    history, best_so_far = [], np.inf
    for t in trials:
        if t.value is not None:
            best_so_far = min(best_so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name, "value": t.value,
                        "best_value": None if np.isinf(best_so_far) else best_so_far})
    write_json(history, PLOTS / "optuna_history.json")
