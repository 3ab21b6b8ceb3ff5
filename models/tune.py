"""Optuna tuning of the re-ranker's LightGBM on location-grouped folds, pruned on LightGBM's per-iteration
validation loss.

The study lives in an Optuna storage (SQLite by default), named after everything that defines it
(search space, fixed params, fold count, the content of the training matrix, labels and groups, and the
code of this module and of what it imports, which builds the objective), so an
interrupted run resumes where it stopped, any change to a feature value starts a new study, and
`optuna-dashboard <storage>` shows it. `n_trials` is the study's target: trials already finished count.
"""
from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd

from infra.code_deps import code_digest
from infra.hashing import digest
from models.lgbm import sample_weights
from models.rerank import (Evidence, binary_params, candidates, out_of_fold, pair_columns, pair_dataset,
                           proposer_columns)
from models.split import location_folds

log = logging.getLogger(__name__)
# Optuna labels DaskStorage experimental; the README says so once instead of a warning per call
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message="DaskStorage")


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """Params from the search space in params.yaml: {name: {low, high, log?, int?} or {choices}}. Drawn in
    name order: the study's name hashes the space whatever its key order in params.yaml, so the draws must
    not depend on that order either."""
    params = {}
    for name, spec in sorted(space.items()):
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec.get("int"):
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return params


def _pruning_callback(trial: optuna.Trial):
    """Report the validation loss each iteration and stop the trial when the pruner says so."""
    def callback(env: lgb.callback.CallbackEnv) -> None:
        _, _, loss, _ = env.evaluation_result_list[0]
        trial.report(loss, env.iteration)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at iteration {env.iteration} (loss {loss:.4f})")
    return callback


@dataclass
class TuningData:
    """The re-ranker's tuning rows with their out-of-fold evidence and candidates, built once per study."""
    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None
    fold: np.ndarray          # the location fold that validates each row
    evidence: Evidence
    cand: np.ndarray
    names: list[str]

    def subset(self, rows: np.ndarray) -> tuple:
        return (self.x[rows], self.y[rows], None if self.weight is None else self.weight[rows],
                self.evidence.rows(rows), self.cand[rows], self.names)


def tuning_data(features: pd.DataFrame, y: np.ndarray, groups: np.ndarray, cfg: dict, n_classes: int) -> TuningData:
    x = features.to_numpy(np.float32)
    fold = np.empty(len(y), np.int64)
    for k, (_, val) in enumerate(location_folds(groups, cfg["cv_folds"])):
        fold[val] = k
    columns = proposer_columns(list(features.columns))
    ev = out_of_fold(x, y, groups, columns, cfg["cv_folds"], n_classes, cfg["class_weight"] == "balanced")
    return TuningData(x, y, sample_weights(y, cfg["class_weight"]), fold, ev, candidates(ev.log_proba["all"],
                      cfg["candidates"]), list(features.columns) + pair_columns(columns))


def candidate_log_loss(k: int):
    """LightGBM eval: the multiclass log-loss of the re-ranked probabilities (each row's pair scores
    normalised over its `k` candidates), what the model is judged on, rather than the pairs' binary loss,
    weighted as the rows are in training (train.class_weight: balanced counts every class alike, which is
    what macro-F1 rewards). A row whose class is not among its candidates scores log(1e-15): the
    proposer's misses count."""
    def evaluate(preds: np.ndarray, dataset: lgb.Dataset) -> tuple[str, float, bool]:
        scores, truth = preds.reshape(-1, k), dataset.get_label().reshape(-1, k)
        p_true = (scores * truth).sum(axis=1) / scores.sum(axis=1)
        weight = dataset.get_weight()
        weight = np.ones(len(scores)) if weight is None else weight.reshape(-1, k)[:, 0]
        loss = -np.log(np.maximum(p_true, 1e-15))
        return "candidate_log_loss", float((weight * loss).sum() / weight.sum()), False
    return evaluate


def cross_validate(data: TuningData, params: dict, cfg: dict, seed: int, trial: optuna.Trial | None = None
                   ) -> tuple[float, int]:
    """Mean best validation log-loss of the re-ranked probabilities over the location folds, and the mean
    best iteration. The first fold reports every iteration to the pruner; all folds stop early.
    """
    losses, rounds = [], []
    for k in range(cfg["cv_folds"]):
        train = pair_dataset(*data.subset(data.fold != k))
        valid = pair_dataset(*data.subset(data.fold == k), reference=train)
        callbacks = [lgb.early_stopping(cfg["early_stopping_rounds"], verbose=False)]
        if trial is not None and k == 0:
            callbacks.append(_pruning_callback(trial))
        booster = lgb.train(dict(binary_params(params, seed), metric="None"), train,
                            num_boost_round=cfg["max_rounds"], valid_sets=[valid],
                            feval=candidate_log_loss(data.cand.shape[1]), callbacks=callbacks)
        losses.append(booster.best_score["valid_0"]["candidate_log_loss"])
        rounds.append(booster.best_iteration)
    return float(np.mean(losses)), int(np.mean(rounds))


def tuning_rows(groups: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Rows of whole locations, drawn in a seeded order until `max_rows` is reached (all rows if fewer):
    tuning ranks params, and a few tens of thousands of rows rank them as well as all of them."""
    if not max_rows or len(groups) <= max_rows:
        return np.ones(len(groups), bool)
    locations, sizes = np.unique(groups, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(locations))
    taken = order[:np.searchsorted(np.cumsum(sizes[order]), max_rows) + 1]
    return np.isin(groups, locations[taken])


def _pruner(pruning: bool) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10) if pruning \
        else optuna.pruners.NopPruner()


def study_storage(url: str | None, client=None):
    """The configured Optuna storage; with a Dask client, Optuna's DaskStorage keeps it on the scheduler,
    where every worker reaches it."""
    if url and url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if client is None:
        return url
    from optuna_integration import DaskStorage
    return DaskStorage(url, client=client)


def data_digest(features: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> str:
    """Hash of what the trials are tuned on: every feature value with its row and column names, the labels
    and the location groups (which, with the fold count, decide the folds)."""
    h = hashlib.sha256()
    h.update(repr(list(features.columns)).encode())
    h.update(pd.util.hash_pandas_object(features, index=True).to_numpy().tobytes())
    h.update(np.ascontiguousarray(np.asarray(y, np.int64)).tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(np.asarray(groups)).astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def study_for(features: pd.DataFrame, y: np.ndarray, groups: np.ndarray, cfg: dict, seed: int, pruning: bool,
              storage) -> optuna.Study:
    """Create or resume the study that this data, space and config define. Whether it exists is asked
    first rather than tried, so a DaskStorage scheduler does not log a duplicate-study error."""
    name = "reranker-" + digest(cfg["search_space"], cfg["fixed"], cfg["cv_folds"], cfg["class_weight"],
                                cfg["max_rounds"], cfg["early_stopping_rounds"], cfg["candidates"], seed, pruning,
                                data_digest(features, y, groups), code_digest(__file__))[:12]
    sampler, pruner = optuna.samplers.TPESampler(seed=seed), _pruner(pruning)
    if storage is not None and name in optuna.get_all_study_names(storage):
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=sampler,
                               pruner=pruner)


def _objective(data: TuningData, cfg: dict, seed: int, threads: int | None = None):
    """The tuning objective: mean location-grouped CV log-loss of the trial's params."""
    fixed = dict(cfg["fixed"], **({"num_threads": threads} if threads else {}))

    def objective(trial: optuna.Trial) -> float:
        params = dict(fixed, **suggest(trial, cfg["search_space"]))
        loss, rounds = cross_validate(data, params, cfg, seed, trial)
        trial.set_user_attr("best_iteration", rounds)
        return loss
    return objective


def _optimize_on_worker(study_name: str, storage, sampler_seed: int, pruning: bool, data: TuningData, cfg: dict,
                        seed: int, n_trials: int, threads: int) -> None:
    """Run `n_trials` trials of the shared study on a Dask worker."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=_pruner(pruning),
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    study.optimize(_objective(data, cfg, seed, threads), n_trials=n_trials, timeout=cfg["tune"]["timeout_s"])


def tune(features: pd.DataFrame, y: np.ndarray, groups: np.ndarray, cfg: dict, n_classes: int, seed: int,
         pruning: bool | None = None, client=None, threads_per_worker: int = 1) -> tuple[dict, int, optuna.Study]:
    """Best re-ranker LightGBM params (fixed ones included), their mean best iteration, and the study.

    Tuning runs on whole locations up to `tune.max_rows` rows (`y`: class codes 0..n_classes-1). With a Dask
    client the remaining trials are shared out over the workers, each running LightGBM on
    `threads_per_worker` threads with its own sampler seed; trials then finish in a different order than
    locally, so the study's path (not the objective of any given params) differs from a local run."""
    pruning = cfg["tune"]["pruning"] if pruning is None else pruning
    rows = tuning_rows(groups, cfg["tune"]["max_rows"], seed)
    features, y, groups = features[rows], np.asarray(y)[rows], np.asarray(groups)[rows]
    storage = study_storage(cfg["tune"]["storage"], client)
    study = study_for(features, y, groups, cfg, seed, pruning, storage)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)]
    remaining = max(cfg["tune"]["n_trials"] - len(finished), 0)
    log.info("tune: study %s on %d rows from %d locations has %d finished trials, running %d more",
             study.study_name, len(y), len(np.unique(groups)), len(finished), remaining)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if remaining:
        data = tuning_data(features, y, groups, cfg, n_classes)
    if remaining and client is None:
        study.optimize(_objective(data, cfg, seed), n_trials=remaining, timeout=cfg["tune"]["timeout_s"],
                       show_progress_bar=True)
    elif remaining:
        workers = len(client.scheduler_info()["workers"])
        shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
        [scattered] = client.scatter([data], broadcast=True)
        futures = [client.submit(_optimize_on_worker, study.study_name, storage, seed + 1 + i, pruning, scattered,
                                 cfg, seed, share, threads_per_worker, pure=False)
                   for i, share in enumerate(shares) if share]
        client.gather(futures)
    best = study.best_trial
    return dict(cfg["fixed"], **best.params), int(best.user_attrs["best_iteration"]), study
