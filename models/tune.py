"""Optuna tuning of a model's LightGBM params on location-grouped folds, nested: each fold's model is fitted
by the model's own `fit` on the other folds' rows alone (its evidence out of fold within them, its early
stopping on its own last fold, its refit rounds scaled as for the final fit) and scored on the fold's
cameras, which choose nothing but the params; under the WILDS scheme the one fold is the model fitted on
all tuning rows, scored on WILDS's OOD val. Trials are pruned on the first fold's early-stopping loss
(Optuna's LightGBMPruningCallback).

The study lives in an Optuna storage (SQLite by default), named after everything that defines it (the
model and its settings, search space, the content of the training matrix, labels and groups, and the code
of this module and of what it imports), so an interrupted run resumes where it stopped, any change to a
feature value starts a new study, and `optuna-dashboard <storage>` shows it. `n_trials` is the study's
target: trials already finished count, and the study chooses only once it has them all: `timeout_s` stops a
slow run with an error (the rerun resumes the stored study), never with fewer trials deciding the params.
Execution settings (threads) are not part of the name.

Which trial's params the family is fitted with is `choice` (train.tune.choice): `lowest_loss`, or
`fewest_rounds_within_one_se`, the one-standard-error rule (Breiman et al., CART): of the trials whose tuning-fold
log-loss is within one standard error of the paired fold differences of the lowest, the one with the fewest
boosting rounds. Location folds differ far more than params do: at the full-shape rehearsal the complete trials lay
within 0.010 of each other, the lowest ran 434 rounds, one within one standard error 131 (README, Which trial).
"""
from __future__ import annotations

import hashlib
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna_integration.lightgbm import LightGBMPruningCallback
from sklearn.base import clone

from data.quality import DataError
from infra.code_deps import code_digest
from infra.hashing import digest
from models.lgbm import log_loss_of_true_class
from models.split import fit_metadata, location_folds

log = logging.getLogger(__name__)
# Optuna labels DaskStorage experimental; the README says so once instead of a warning per call
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message="DaskStorage")
EXECUTION = ("num_threads",)  # estimator settings that change speed, not results: outside the study's name


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


@dataclass
class Fold:
    """One tuning fold: the model's prepared training rows (the other folds) and the rows it is scored on."""
    prepared: object
    x_val: pd.DataFrame
    y_val: np.ndarray


def tuning_folds(model, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, n_folds: int,
                 supplemental: np.ndarray | None = None) -> list[Fold]:
    """Location folds, each prepared by the model from the other folds' rows only (built once per study)."""
    groups, supplemental = fit_metadata(groups, supplemental, len(y))
    return [Fold(model.prepare(X.iloc[fit], y[fit], groups[fit], supplemental[fit]), X.iloc[val], y[val])
            for fit, val in location_folds(groups, n_folds, supplemental)]


def cross_validate(model, folds: list[Fold], trial: optuna.Trial | None = None) -> tuple[list[float], list[int]]:
    """Log-loss of the model's probabilities on each fold (class-weighted as it is trained), and the rounds
    each fold's fit chose. The first fold's early stopping reports every iteration to the pruner."""
    losses, rounds = [], []
    for k, fold in enumerate(folds):
        callbacks = (LightGBMPruningCallback(trial, model.STOPPING_METRIC, "stopping"),) if trial and k == 0 else ()
        fitted = clone(model).fit_prepared(fold.prepared, callbacks)
        losses.append(log_loss_of_true_class(fitted.predict_proba(fold.x_val), fitted.classes_, fold.y_val,
                                             model.class_weight))
        rounds.append(fitted.rounds_)
    return losses, rounds


def tuning_data(X: pd.DataFrame, y, groups: np.ndarray, max_rows: int | None, seed: int,
                supplemental: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, groups, supplemental) of the rows a study tunes on (tuning_rows)."""
    groups, supplemental = fit_metadata(groups, supplemental, len(X))
    rows = tuning_rows(groups, max_rows, seed, supplemental)
    return X[rows], np.asarray(y)[rows], groups[rows], supplemental[rows]


def study_folds(model, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, supplemental: np.ndarray,
                validation: tuple[pd.DataFrame, np.ndarray] | None) -> list[Fold]:
    """The folds a study scores its trials on (of the tuning_data rows): location folds, or the one fold of the
    model prepared on all of them and scored on a fixed `validation` set."""
    if validation is None:
        return tuning_folds(model, X, y, groups, model.cv_folds, supplemental)
    return [Fold(model.prepare(X, y, groups, supplemental), *validation)]


def tuning_rows(groups: np.ndarray, max_rows: int | None, seed: int, supplemental: np.ndarray | None = None
                ) -> np.ndarray:
    """Rows of whole locations, drawn in a seeded order until `max_rows` camera-trap rows are reached (all rows
    if fewer), and the same share of the supplemental rows (they train every fold), drawn with the same seed:
    tuning ranks params, a few tens of thousands of rows rank them as well as all of them, and the tuning folds
    mix photos and camera rows as the fits they tune do."""
    groups, extra = fit_metadata(groups, supplemental, len(groups))
    if not max_rows or (~extra).sum() <= max_rows:
        return np.ones(len(groups), bool)
    rng = np.random.default_rng(seed)
    locations, sizes = np.unique(groups[~extra], return_counts=True)
    order = rng.permutation(len(locations))
    taken = order[:np.searchsorted(np.cumsum(sizes[order]), max_rows) + 1]
    rows = ~extra & np.isin(groups, locations[taken])
    photos = np.flatnonzero(extra)
    share = round(len(photos) * rows.sum() / (~extra).sum())
    rows[rng.permutation(photos)[:share]] = True
    return rows


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


def data_digest(features: pd.DataFrame, y: np.ndarray, groups: np.ndarray, supplemental: np.ndarray | None = None
                ) -> str:
    """Hash of what the trials are tuned on: every feature value with its row and column names, the labels,
    the location groups and which rows are supplemental (which, with the fold count, decide the folds)."""
    h = hashlib.sha256()
    h.update(repr(list(features.columns)).encode())
    h.update(pd.util.hash_pandas_object(features, index=True).to_numpy().tobytes())
    h.update(np.ascontiguousarray(np.asarray(y, np.int64)).tobytes())
    h.update(pd.util.hash_pandas_object(pd.Series(np.asarray(groups)).astype(str), index=False).to_numpy().tobytes())
    if supplemental is not None:
        h.update(np.packbits(np.asarray(supplemental, bool)).tobytes())
    return h.hexdigest()[:16]


def study_name(model, space: dict, seed: int, pruning: bool, data: str) -> str:
    """`<model>-<hash>` of the model's result-deciding settings, the search space, sampler seed, pruning,
    the data digest and the code that scores the trials: this module's and the model's own (its module and
    what that imports: a trial is a fit of that code)."""
    settings = {k: v for k, v in model.get_params().items() if k not in EXECUTION}
    code = [code_digest(__file__), code_digest(sys.modules[type(model).__module__].__file__)]
    return f"{model.NAME}-" + digest(settings, space, seed, pruning, data, code)[:12]


def study_for(name: str, seed: int, pruning: bool, storage) -> optuna.Study:
    """Create or resume the study. Whether it exists is asked first rather than tried, so a DaskStorage
    scheduler does not log a duplicate-study error."""
    sampler, pruner = optuna.samplers.TPESampler(seed=seed), _pruner(pruning)
    if storage is not None and name in optuna.get_all_study_names(storage):
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=sampler,
                               pruner=pruner)


def _objective(model, folds: list[Fold], space: dict):
    """The tuning objective: mean location-fold log-loss of the trial's params (added to the fixed ones)."""
    def objective(trial: optuna.Trial) -> float:
        params = dict(model.booster_params or {}, **suggest(trial, space))
        losses, rounds = cross_validate(clone(model).set_params(booster_params=params), folds, trial)
        trial.set_user_attr("rounds", rounds)
        trial.set_user_attr("fold_losses", losses)
        return float(np.mean(losses))
    return objective


def _optimize_on_worker(name: str, storage, sampler_seed: int, pruning: bool, model, folds: list[Fold], space: dict,
                        n_trials: int, timeout_s: float, threads: int) -> None:
    """Run `n_trials` trials of the shared study on a Dask worker."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage, pruner=_pruner(pruning),
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    study.optimize(_objective(clone(model).set_params(num_threads=threads), folds, space), n_trials=n_trials,
                   timeout=timeout_s)


CHOICES = ("lowest_loss", "fewest_rounds_within_one_se")


@dataclass
class Tuned:
    """A finished study and the trial chosen from it: its booster params (the fixed ones included) and why."""
    params: dict[str, Any]
    trial: optuna.trial.FrozenTrial
    why: str
    study: optuna.Study


def chosen_trial(trials: list[optuna.trial.FrozenTrial], choice: str) -> tuple[optuna.trial.FrozenTrial, str]:
    """(the trial a family is fitted with, why) among a study's complete trials, by `choice` (CHOICES). With one
    fold (WILDS's validation split) there is no spread to weigh a difference by: the lowest loss."""
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: (t.value, t.number))
    lowest = f"trial {best.number}: the lowest tuning-fold log-loss ({best.value:.4f})"
    if choice == "lowest_loss" or len(best.user_attrs["fold_losses"]) < 2:
        return best, lowest

    def within_one_se(t: optuna.trial.FrozenTrial) -> bool:
        difference = np.subtract(t.user_attrs["fold_losses"], best.user_attrs["fold_losses"])
        return difference.mean() <= difference.std(ddof=1) / np.sqrt(len(difference))

    close = [t for t in complete if within_one_se(t)]
    chosen = min(close, key=lambda t: (np.mean(t.user_attrs["rounds"]), t.value, t.number))
    if chosen is best:
        return best, f"{lowest}, and the fewest boosting rounds of the {len(close)} within one standard error of it"
    return chosen, (f"trial {chosen.number}: the fewest boosting rounds (mean {np.mean(chosen.user_attrs['rounds']):.0f}"
                    f" over the folds, against {np.mean(best.user_attrs['rounds']):.0f}) of the {len(close)} trials "
                    f"whose tuning-fold log-loss is within one standard error of the paired fold differences of the "
                    f"lowest, trial {best.number}'s ({chosen.value:.4f} against {best.value:.4f})")


def tune(model, X: pd.DataFrame, y, groups: np.ndarray, space: dict, cfg: dict, seed: int, client=None,
         threads_per_worker: int = 1, validation: tuple[pd.DataFrame, np.ndarray] | None = None,
         supplemental: np.ndarray | None = None) -> Tuned:
    """The study and the trial chosen from it by `cfg["choice"]` (chosen_trial).

    `cfg` is train.tune (n_trials, max_rows, pruning, storage, choice) and timeout_s (execution.tune_timeout_s); tuning
    runs on whole locations up to `max_rows` rows, in `model.cv_folds` location folds, or, given a fixed
    `validation` set (X, y: the WILDS scheme's OOD `val`), as one fold: the model fitted on all tuning rows,
    scored on it. With a Dask client the remaining trials are shared out over the workers, each running
    LightGBM on `threads_per_worker` threads with its own sampler seed; trials then finish in a different order than
    locally, so the study's path (not the objective of any given params) differs from a local run."""
    if cfg["choice"] not in CHOICES:  # before the trials, not after them
        raise DataError(f"params.yaml: train.tune.choice must be one of {', '.join(CHOICES)}, not {cfg['choice']!r}")
    X, y, groups, supplemental = tuning_data(X, y, groups, cfg["max_rows"], seed, supplemental)
    storage = study_storage(cfg["storage"], client)
    data = data_digest(X, y, groups, supplemental)
    if validation is not None:
        data += data_digest(*validation, np.zeros(len(validation[1])))
    name = study_name(model, space, seed, cfg["pruning"], data)
    study = study_for(name, seed, cfg["pruning"], storage)
    finished = finished_trials(study)
    remaining = max(cfg["n_trials"] - len(finished), 0)
    log.info("tune: study %s on %d rows from %d locations and %d supplemental rows has %d finished trials, running "
             "%d more", name, (~supplemental).sum(), len(np.unique(groups[~supplemental])), supplemental.sum(),
             len(finished), remaining)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if remaining:
        folds = study_folds(model, X, y, groups, supplemental, validation)
    if remaining and client is None:
        study.optimize(_objective(model, folds, space), n_trials=remaining, timeout=cfg["timeout_s"],
                       show_progress_bar=True)
    elif remaining:
        workers = len(client.scheduler_info()["workers"])
        shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
        [scattered] = client.scatter([folds], broadcast=True)
        futures = [client.submit(_optimize_on_worker, name, storage, seed + 1 + i, cfg["pruning"], model, scattered,
                                 space, share, cfg["timeout_s"], threads_per_worker, pure=False)
                   for i, share in enumerate(shares) if share]
        client.gather(futures)
    done = len(finished_trials(study))
    if done < cfg["n_trials"]:
        # what a study chooses must not depend on how fast the machine was: an incomplete one chooses nothing
        raise DataError(f"train: study {name} finished {done} of its {cfg['n_trials']} trials within "
                        f"execution.tune_timeout_s ({cfg['timeout_s']} s): rerun to resume it where it stopped (it is "
                        f"stored in {cfg['storage']}), or raise the timeout")
    trial, why = chosen_trial(study.trials, cfg["choice"])
    return Tuned(dict(model.booster_params or {}, **trial.params), trial, why, study)


def finished_trials(study: optuna.Study) -> list:
    """The study's complete and pruned trials: the ones that count towards its target."""
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
