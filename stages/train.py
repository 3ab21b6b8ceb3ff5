"""DVC stage `train` (see dvc.yaml)."""
from __future__ import annotations

import logging

import numpy as np

from data.quality import DataError
from infra.artifacts import FINAL_MODEL, HOLDOUT_PCA, FINAL_PCA, SPLIT_FILE, BEST_PARAMS, PLOTS, OPTUNA, FEATURE_TABLE
from infra.atomic import write_json
from infra.blas import one_blas_thread
from infra.compute import compute_backend
from models import registry, sequence_rows
from models.labelled import labelled_rows
from models.reduce import EmbeddingPCA, FeatureFile
from models.split import NotFittable, evaluation_split, holdout_locations, uses_supplemental
from models.tune import tune

log = logging.getLogger("stages.train")


@one_blas_thread()
def run(params: dict) -> None:
    """Tune each model family (on location folds of the fitted rows, or on WILDS's OOD val), choose one by the
    tuning losses (models.registry.choose: the re-ranker only when clearly lower; no scored split chooses
    anything), and fit it for the submission: on all train locations (location scheme) or on WILDS's train
    split. The supplemental photos join every fit's training rows where train.supplemental says so, never a
    validation, early-stopping or scored row. evaluate fits the tuned models and scores them."""
    cfg, execution, split_cfg = params["train"], params["execution"], params["split"]
    OPTUNA.mkdir(parents=True, exist_ok=True)  # declared in dvc.yaml even when the storage is elsewhere
    labels, rows = labelled_rows()
    ids, features = labels.index, FeatureFile(FEATURE_TABLE)
    held = (holdout_locations(rows["location"], split_cfg["holdout_fraction"], split_cfg["seed"])
            if split_cfg["scheme"] == "location" else None)
    supplemental = uses_supplemental(cfg["supplemental"], split_cfg["scheme"])
    split = evaluation_split(rows, split_cfg["scheme"], held, supplemental)
    camera = split.fit & ~split.supplemental
    log.info("train: %s scheme: fitting on %d images from %d locations (%d without usable pixels left out) and "
             "%d supplemental photos (%s); scored on %s", split_cfg["scheme"], camera.sum(),
             rows.loc[camera, "location"].nunique(), split.without_pixels, split.supplemental.sum(),
             f"used, weight {cfg['supplemental_weight']}" if supplemental else "not used (train.supplemental)",
             ", ".join(f"{n} ({m.sum()} images)" for n, m in split.scored.items()))
    unit, seqs = cfg["rows"], rows["seq_id"].to_numpy()
    pca, reduced = EmbeddingPCA.fit_transform_file(features, ids[split.fit], cfg["pca_components"], cfg["seed"])
    pca.save(HOLDOUT_PCA)
    x_fit = sequence_rows.to_rows(reduced, seqs[split.fit], unit)
    y_fit = sequence_rows.row_labels(labels[split.fit], seqs[split.fit], unit).to_numpy()
    groups = sequence_rows.row_groups(rows.loc[split.fit, "location"], seqs[split.fit], unit)
    validation = None
    if split.tuning is not None:
        tuning_ids = ids[split.tuning]
        validation = (sequence_rows.to_rows(pca.transform_file(features, tuning_ids), seqs[split.tuning], unit),
                      sequence_rows.row_labels(labels[split.tuning], seqs[split.tuning], unit).to_numpy())
    if len(np.unique(y_fit)) < 2:
        raise DataError(f"the {len(y_fit)} labelled training {unit}s are all of category {y_fit[0]}: a classifier "
                        f"needs two classes to tell apart")
    names, skipped = registry.tuned_names(len(x_fit), len(np.unique(y_fit)), cfg["multiclass_max_row_classes"])
    skipped = {registry.LightGBMMulticlass.NAME: skipped} if skipped else {}
    log.info("train: %d %s rows of %d classes; tuning %s", len(x_fit), unit, len(np.unique(y_fit)), ", ".join(names))
    studies = {}
    with compute_backend(execution) as client:
        for name in names:
            model = registry.build(name, cfg, threads=execution["threads"])
            try:
                tuned = tune(model, x_fit, y_fit, groups, cfg["search_space"],
                             dict(cfg["tune"], timeout_s=execution["tune_timeout_s"]), cfg["seed"],
                             client=client, threads_per_worker=execution["threads_per_worker"], validation=validation)
            except NotFittable as e:
                skipped[name] = f"skipped: cannot be tuned on these rows: {e}"
                log.warning("train: %s %s", name, skipped[name])
                continue
            log.info("train: %s: %s", name, tuned.why)
            studies[name] = {"params": tuned.params, "study": tuned.study.study_name, "trial": tuned.trial.number,
                             "trial_why": tuned.why, "cv_log_loss": tuned.trial.value,
                             "fold_losses": tuned.trial.user_attrs["fold_losses"], "trials": tuned.study.trials}
    if not studies:
        raise DataError(f"no model family can be fitted on these rows: {skipped}")
    chosen, why = registry.choose(studies, split_cfg["scheme"])
    log.info("train: chose %s: %s", chosen, why)
    last = split.final
    y_final = sequence_rows.row_labels(labels[last], seqs[last], unit).to_numpy()
    if not np.array_equal(last, split.fit):  # the WILDS scheme's final rows are the fitted ones: same PCA
        pca, reduced = EmbeddingPCA.fit_transform_file(features, ids[last], cfg["pca_components"], cfg["seed"])
    pca.save(FINAL_PCA)
    final = registry.build(chosen, cfg, studies[chosen]["params"], execution["threads"])
    final.fit(sequence_rows.to_rows(reduced, seqs[last], unit), y_final,
              sequence_rows.row_groups(rows.loc[last, "location"], seqs[last], unit))
    final.save(FINAL_MODEL)
    write_json({"scheme": split_cfg["scheme"], "holdout_locations": held, "supplemental": supplemental}, SPLIT_FILE)
    write_json({"chosen": chosen, "why": why, "final_rounds": final.rounds_,
                "models": {**{n: {k: v for k, v in s.items() if k != "trials"} for n, s in studies.items()},
                           **{n: {"skipped": why} for n, why in skipped.items()}}},
               BEST_PARAMS)
    history, best_so_far = [], np.inf
    for t in studies[chosen]["trials"]:
        if t.value is not None:
            best_so_far = min(best_so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name, "value": t.value,
                        "best_value": None if np.isinf(best_so_far) else best_so_far,
                        "chosen": t.number == studies[chosen]["trial"]})
    write_json(history, PLOTS / "optuna_history.json")
