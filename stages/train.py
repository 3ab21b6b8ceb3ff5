"""DVC stage `train` (see dvc.yaml)."""
from __future__ import annotations

import logging
import time

import numpy as np

from infra.atomic import write_json
from models import lgbm, sequence_rows
from models.reduce import EmbeddingPCA, FeatureFile
from models.rerank import Reranker
from models.split import holdout_locations
from models.tune import tune
from stages.common import (HOLDOUT_MODEL, FINAL_MODEL, HOLDOUT_PCA, FINAL_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS,
                           OPTUNA, FEATURE_TABLE, compute_backend, labelled_train)

log = logging.getLogger("stages.train")


def run(params: dict) -> None:
    """Tune on location-grouped folds of the non-held-out locations; fit the best params there (for
    evaluation) and on all train locations (for the submission)."""
    cfg = params["train"]
    OPTUNA.mkdir(parents=True, exist_ok=True)  # declared in dvc.yaml even when the storage is elsewhere
    labels, rows = labelled_train()
    ids, features = labels.index, FeatureFile(FEATURE_TABLE)
    held = holdout_locations(rows["location"], params["split"]["holdout_fraction"], params["split"]["seed"])
    fit_rows = ~rows["location"].isin(held)
    log.info("train: %d images from %d locations; holding out %d locations (%d images)",
             fit_rows.sum(), rows.loc[fit_rows, "location"].nunique(), len(held), (~fit_rows).sum())
    unit, seqs = cfg["rows"], rows["seq_id"].to_numpy()
    pca, reduced = EmbeddingPCA.fit_transform_file(features, ids[fit_rows], cfg["pca_components"], cfg["seed"])
    pca.save(HOLDOUT_PCA)
    x_fit = sequence_rows.to_rows(reduced, seqs[fit_rows], unit)
    y_fit = sequence_rows.row_labels(labels[fit_rows], seqs[fit_rows], unit)
    groups = sequence_rows.row_groups(rows.loc[fit_rows, "location"], seqs[fit_rows], unit)
    classes = sorted(int(c) for c in y_fit.unique())
    log.info("train: %d %s rows of %d classes for tuning and fitting", len(x_fit), unit, len(classes))
    with compute_backend(params["compute"]) as client:
        best, rounds, study = tune(x_fit, lgbm.encode(y_fit, classes), groups, cfg, len(classes), cfg["seed"],
                                   client=client, threads_per_worker=params["compute"]["threads_per_worker"])
        trials, study_name, cv_loss = study.trials, study.study_name, study.best_value
    started = time.perf_counter()
    Reranker.fit(x_fit, y_fit, groups, classes, best, rounds, cfg, cfg["seed"]).save(HOLDOUT_MODEL)
    fit_seconds = time.perf_counter() - started
    log.info("train: held-out model fitted in %.0f s (%d rounds)", fit_seconds, rounds)
    y_all = sequence_rows.row_labels(labels, seqs, unit)
    pca, reduced = EmbeddingPCA.fit_transform_file(features, ids, cfg["pca_components"], cfg["seed"])
    pca.save(FINAL_PCA)
    Reranker.fit(sequence_rows.to_rows(reduced, seqs, unit), y_all,
                 sequence_rows.row_groups(rows["location"], seqs, unit), sorted(int(c) for c in y_all.unique()),
                 best, rounds, cfg, cfg["seed"]).save(FINAL_MODEL)
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
