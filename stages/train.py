"""DVC stage `train` (see dvc.yaml)."""
from __future__ import annotations

import logging

import numpy as np

from infra.atomic import write_json
from models import registry, sequence_rows
from models.reduce import EmbeddingPCA, FeatureFile
from models.split import holdout_locations
from models.tune import tune
from stages.common import (FINAL_MODEL, HOLDOUT_PCA, FINAL_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS, OPTUNA, FEATURE_TABLE,
                           compute_backend, labelled_train)

log = logging.getLogger("stages.train")


def run(params: dict) -> None:
    """Tune each model family on location-grouped folds of the non-held-out locations, choose the one with
    the lower tuning-fold loss (the held-out locations choose nothing), and fit it on all train locations
    (for the submission). evaluate fits the tuned models on the non-held-out locations and scores them."""
    cfg, execution = params["train"], params["execution"]
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
    y_fit = sequence_rows.row_labels(labels[fit_rows], seqs[fit_rows], unit).to_numpy()
    groups = sequence_rows.row_groups(rows.loc[fit_rows, "location"], seqs[fit_rows], unit)
    names, skipped = registry.tuned_names(len(x_fit), len(np.unique(y_fit)), cfg["multiclass_max_row_classes"])
    log.info("train: %d %s rows of %d classes; tuning %s", len(x_fit), unit, len(np.unique(y_fit)), ", ".join(names))
    studies = {}
    with compute_backend(execution) as client:
        for name in names:
            model = registry.build(name, cfg, threads=execution["threads"])
            best, study = tune(model, x_fit, y_fit, groups, cfg["search_space"], cfg["tune"], cfg["seed"],
                               client=client, threads_per_worker=execution["threads_per_worker"])
            studies[name] = {"params": best, "study": study.study_name, "cv_log_loss": study.best_value,
                             "fold_losses": study.best_trial.user_attrs["fold_losses"], "trials": study.trials}
    chosen, why = registry.choose(studies)
    log.info("train: chose %s: %s", chosen, why)
    y_all = sequence_rows.row_labels(labels, seqs, unit).to_numpy()
    pca, reduced = EmbeddingPCA.fit_transform_file(features, ids, cfg["pca_components"], cfg["seed"])
    pca.save(FINAL_PCA)
    final = registry.build(chosen, cfg, studies[chosen]["params"], execution["threads"])
    final.fit(sequence_rows.to_rows(reduced, seqs, unit), y_all, sequence_rows.row_groups(rows["location"], seqs, unit))
    final.save(FINAL_MODEL)
    write_json({"holdout_locations": held}, SPLIT_FILE)
    write_json({"chosen": chosen, "why": why, "final_rounds": final.rounds_,
                "models": {**{n: {k: v for k, v in s.items() if k != "trials"} for n, s in studies.items()},
                           **({registry.LightGBMMulticlass.NAME: {"skipped": skipped}} if skipped else {})}},
               BEST_PARAMS)
    history, best_so_far = [], np.inf
    for t in studies[chosen]["trials"]:
        if t.value is not None:
            best_so_far = min(best_so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name, "value": t.value,
                        "best_value": None if np.isinf(best_so_far) else best_so_far})
    write_json(history, PLOTS / "optuna_history.json")
