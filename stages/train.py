"""DVC stage `train` (see dvc.yaml)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.quality import DataError
from infra.artifacts import (BEST_PARAMS, CALIBRATION, FEATURE_TABLE, FINAL_MODEL, FINAL_PCA, HOLDOUT_PCA, OPTUNA,
                             PLOTS, SPLIT_FILE)
from infra.atomic import write_json
from infra.blas import one_blas_thread
from infra.compute import compute_backend
from models import registry, sequence_rows
from models.calibration import calibrate
from models.labelled import labelled_rows
from models.reduce import EmbeddingPCA, FeatureFile
from models.split import Evaluation, NotFittable, evaluation_split, holdout_locations, uses_supplemental
from models.tune import study_folds, tune, tuning_data

log = logging.getLogger("stages.train")


@dataclass
class ModelRows:
    """Labelled rows as a fit takes them (images or sequences, train.rows): features, labels and the fit
    metadata (`groups`, `supplemental`: models.sequence_rows.row_metadata)."""
    x: pd.DataFrame
    y: np.ndarray
    meta: dict[str, np.ndarray]


def model_rows(features: pd.DataFrame, labels: pd.Series, rows: pd.DataFrame, unit: str) -> ModelRows:
    """`features` of the labelled `rows` (one per image, in `labels`' order) as a fit's rows of `unit`."""
    seqs = rows["seq_id"].to_numpy()
    return ModelRows(sequence_rows.to_rows(features, seqs, unit),
                     sequence_rows.row_labels(labels, seqs, unit).to_numpy(),
                     sequence_rows.row_metadata(rows, seqs, unit))


@one_blas_thread()
def run(params: dict) -> None:
    """Tune each model family (on location folds of the fitted rows, or on WILDS's OOD val), choose one by the
    tuning losses (models.registry.choose: the re-ranker only when clearly lower; no scored split chooses
    anything), and fit it for the submission: on all train locations (location scheme) or on WILDS's train
    split. The supplemental photos join every fit's training rows where train.supplemental says so, never a
    validation, early-stopping or scored row. evaluate fits the tuned models and scores them."""
    cfg, split_cfg = params["train"], params["split"]
    OPTUNA.mkdir(parents=True, exist_ok=True)  # declared in dvc.yaml even when the storage is elsewhere
    labels, rows = labelled_rows()
    features = FeatureFile(FEATURE_TABLE)
    held = (holdout_locations(rows.loc[~rows["photo"], "location"], split_cfg["holdout_fraction"], split_cfg["seed"])
            if split_cfg["scheme"] == "location" else None)
    supplemental, why_supplemental = uses_supplemental(cfg["supplemental"], split_cfg["scheme"])
    split = evaluation_split(rows, split_cfg["scheme"], held, supplemental)
    log_split(split, rows, split_cfg["scheme"], cfg["supplemental_weight"] if supplemental else None,
              why_supplemental)
    pca, reduced = EmbeddingPCA.fit_transform_file(features, labels.index[split.fit], cfg["pca_components"],
                                                   cfg["seed"])
    pca.save(HOLDOUT_PCA)
    fitted = model_rows(reduced, labels[split.fit], rows[split.fit], cfg["rows"])
    validation, tuned_on = None, None
    if split.tuning is not None:  # WILDS's OOD val: the one tuning fold
        tuned_on = model_rows(pca.transform_file(features, labels.index[split.tuning]), labels[split.tuning],
                              rows[split.tuning], cfg["rows"])
        validation = (tuned_on.x, tuned_on.y)
    studies, skipped = tune_families(fitted, validation, cfg, params["execution"])
    chosen, why = registry.choose(studies, split_cfg["scheme"])
    log.info("train: chose %s: %s", chosen, why)
    write_json(calibrate_chosen(chosen, studies[chosen]["params"], fitted, tuned_on, rows, cfg, params["predictions"],
                                params["execution"]["threads"]), CALIBRATION)
    if not np.array_equal(split.final, split.fit):  # the WILDS scheme's final rows are the fitted ones: same PCA
        pca, reduced = EmbeddingPCA.fit_transform_file(features, labels.index[split.final], cfg["pca_components"],
                                                       cfg["seed"])
    pca.save(FINAL_PCA)
    last = model_rows(reduced, labels[split.final], rows[split.final], cfg["rows"])
    final = registry.build(chosen, cfg, studies[chosen]["params"], params["execution"]["threads"])
    final.fit(last.x, last.y, **last.meta)
    final.save(FINAL_MODEL)
    write_json({"scheme": split_cfg["scheme"], "holdout_locations": held, "supplemental": supplemental,
                "supplemental_why": why_supplemental}, SPLIT_FILE)
    write_json({"chosen": chosen, "why": why, "final_rounds": final.rounds_,
                "models": {**{n: {k: v for k, v in s.items() if k != "trials"} for n, s in studies.items()},
                           **{n: {"skipped": why} for n, why in skipped.items()}}},
               BEST_PARAMS)
    write_json(optuna_history(studies[chosen]), PLOTS / "optuna_history.json")


def calibrate_chosen(chosen: str, params: dict, fitted: ModelRows, tuned_on: ModelRows | None, rows: pd.DataFrame,
                     cfg: dict, predictions: dict, threads: int) -> dict:
    """calibration.json: the chosen family with its chosen params on the folds its study was tuned on, their
    out-of-fold probabilities (averaged over sequences where the served ones are) fitting the temperature
    (models.calibration)."""
    started = time.perf_counter()
    model = registry.build(chosen, cfg, params, threads)
    x, y, groups, photo = tuning_data(fitted.x, fitted.y, fitted.meta["groups"], cfg["tune"]["max_rows"],
                                      cfg["seed"], fitted.meta["supplemental"])
    folds = study_folds(model, x, y, groups, photo, None if tuned_on is None else (tuned_on.x, tuned_on.y))
    group_of = pd.Series(fitted.meta["groups"], index=fitted.x.index)
    if tuned_on is not None:
        group_of = pd.concat([group_of, pd.Series(tuned_on.meta["groups"], index=tuned_on.x.index)])
    smoothed = predictions["sequence_smoothing"] and cfg["rows"] == "image"
    record = calibrate(model, folds, rows["seq_id"] if smoothed else None, group_of, predictions["calibration"],
                       cfg["cv_folds"], predictions["calibration_bins"])
    log.info("train: calibration in %.1f s: %s", time.perf_counter() - started, record)
    return record


def log_split(split: Evaluation, rows: pd.DataFrame, scheme: str, supplemental_weight: float | None, why: str
              ) -> None:
    camera = split.fit & ~split.supplemental
    log.info("train: %s scheme: fitting on %d images from %d locations (%d without usable pixels left out) and "
             "%d supplemental photos (%s: %s); scored on %s", scheme, camera.sum(),
             rows.loc[camera, "location"].nunique(), split.without_pixels, split.supplemental.sum(),
             "not used" if supplemental_weight is None else f"used, weight {supplemental_weight}", why,
             ", ".join(f"{n} ({m.sum()} images)" for n, m in split.scored.items()))


def tune_families(fitted: ModelRows, validation: tuple | None, cfg: dict, execution: dict
                  ) -> tuple[dict[str, dict], dict[str, str]]:
    """(each tuned family's study and chosen trial, the families skipped with their reason): the multiclass
    LightGBM is left out over train.multiclass_max_row_classes, a family these rows cannot tune is skipped."""
    n_classes = len(np.unique(fitted.y))
    if n_classes < 2:
        raise DataError(f"the {len(fitted.y)} labelled training {cfg['rows']}s are all of category {fitted.y[0]}: a "
                        f"classifier needs two classes to tell apart")
    names, over_cap = registry.tuned_names(len(fitted.x), n_classes, cfg["multiclass_max_row_classes"])
    skipped = {registry.LightGBMMulticlass.NAME: over_cap} if over_cap else {}
    log.info("train: %d %s rows of %d classes; tuning %s", len(fitted.x), cfg["rows"], n_classes, ", ".join(names))
    studies = {}
    with compute_backend(execution) as client:
        for name in names:
            model = registry.build(name, cfg, threads=execution["threads"])
            try:
                tuned = tune(model, fitted.x, fitted.y, fitted.meta["groups"], cfg["search_space"],
                             dict(cfg["tune"], timeout_s=execution["tune_timeout_s"]), cfg["seed"], client=client,
                             threads_per_worker=execution["threads_per_worker"], validation=validation,
                             supplemental=fitted.meta["supplemental"])
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
    return studies, skipped


def optuna_history(study: dict) -> list[dict]:
    """The chosen family's trials for the Optuna plot: each trial's loss, the best so far, and the chosen one."""
    history, best_so_far = [], np.inf
    for t in study["trials"]:
        if t.value is not None:
            best_so_far = min(best_so_far, t.value)
        history.append({"trial": t.number, "state": t.state.name, "value": t.value,
                        "best_value": None if np.isinf(best_so_far) else best_so_far,
                        "chosen": t.number == study["trial"]})
    return history
