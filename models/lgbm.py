"""LightGBM as the models use it: class weights, location-grouped early stopping whose rounds carry over to
the fit on all rows, and the multiclass model (one tree per class per round) as an estimator.

Every fit stops early on the rows of its own last location fold, never on rows it is scored on, and then
refits on all its rows for the stopped round count scaled by the row ratio: the best round grows with the
training rows (a model fitted on 3 folds' rows supports more trees than one fitted on 2), and scaling by
that ratio is what the tuning folds measure, because each fold's model is fitted exactly this way.
Models are saved as LightGBM text files beside a json of their classes and columns: no pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.class_weight import compute_sample_weight

from infra.atomic import write_json, write_text
from models.split import NotFittable, fit_metadata, location_folds

BOOSTER_FILE, META_FILE = "booster.txt", "model.json"
LOSS_FLOOR = 1e-15  # probability a miss is scored at in a log-loss


def class_weights(y: np.ndarray, class_weight: str) -> np.ndarray | None:
    """Per-row weights: `balanced` gives every class the same total weight (what macro-F1 rewards)."""
    if class_weight not in ("balanced", "none"):
        raise ValueError(f"class_weight must be 'balanced' or 'none', not {class_weight!r}")
    return compute_sample_weight("balanced", y) if class_weight == "balanced" else None


def supplemental_weights(supplemental: np.ndarray | None, supplemental_weight: float) -> np.ndarray | None:
    """Per-row weight of the supplemental rows (a mask) against the camera-trap rows (1): `supplemental_weight`
    where the mask is set, 1 elsewhere; None when there is no supplemental row."""
    if not supplemental_weight > 0:
        raise ValueError(f"train.supplemental_weight must be > 0, not {supplemental_weight!r} "
                         f"(train.supplemental: false leaves the supplemental rows out)")
    if supplemental is None or not np.any(supplemental):
        return None
    return np.where(supplemental, float(supplemental_weight), 1.0)


def training_weights(y: np.ndarray, class_weight: str, supplemental: np.ndarray | None, supplemental_weight: float
                     ) -> np.ndarray | None:
    """A fit's row weights: the class weights over all its rows, camera-trap and supplemental alike (a class
    only the photos show gets a balanced class's total), the supplemental rows' then times
    `supplemental_weight`."""
    weight, extra = class_weights(y, class_weight), supplemental_weights(supplemental, supplemental_weight)
    if extra is None:
        return weight
    return extra if weight is None else weight * extra


def class_codes(y) -> tuple[list[int], np.ndarray]:
    """(the sorted category ids in `y`, each row's code into them): the classes a model is fitted on, at least
    two (NotFittable otherwise: nothing to tell apart)."""
    classes = sorted(int(c) for c in pd.unique(np.asarray(y)))
    if len(classes) < 2:
        raise NotFittable(f"the {len(y)} rows it fits on hold {len(classes)} class(es): nothing to tell apart")
    return classes, pd.Index(classes).get_indexer(np.asarray(y))


def fit_params(model, **objective) -> dict:
    """A model's LightGBM params for a deterministic fit: its booster params, the objective's, its seed and
    threads."""
    return dict(model.booster_params or {}, **objective, seed=model.seed, deterministic=True, force_row_wise=True,
                verbose=-1, num_threads=model.num_threads)


def stopping_rows(groups: np.ndarray, n_folds: int, supplemental: np.ndarray | None = None) -> np.ndarray:
    """Rows of the last location fold: the cameras a fit stops early on (unseen by the trees it scores; never a
    supplemental row)."""
    stop = np.zeros(len(groups), bool)
    stop[location_folds(groups, n_folds, supplemental)[-1][1]] = True
    return stop


def boost(params: dict, data: lgb.Dataset, stop: np.ndarray, max_rounds: int, early_stopping_rounds: int,
          feval: Callable | None = None, callbacks: tuple = ()) -> tuple[lgb.Booster, int]:
    """(booster on all of `data`, its rounds). With `early_stopping_rounds`, a first fit on the rows not in
    `stop` (a mask over `data`'s rows) stops on those in it (`feval`, or the objective's own metric; the
    validation set is named `stopping` for `callbacks` such as Optuna's pruning); the refit on all rows runs
    its best round scaled by all rows / fitted rows. Without, `max_rounds` on all rows."""
    if not early_stopping_rounds:
        return lgb.train(params, data, num_boost_round=max_rounds), max_rounds
    data.construct()
    fitted, held = np.flatnonzero(~stop), np.flatnonzero(stop)
    stopped = lgb.train(dict(params, **({"metric": "None"} if feval else {})), data.subset(fitted),
                        num_boost_round=max_rounds, valid_sets=[data.subset(held)], valid_names=["stopping"],
                        feval=feval, callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False),
                                                *callbacks])
    rounds = max(1, round(stopped.best_iteration * len(stop) / len(fitted)))
    return lgb.train(params, data, num_boost_round=rounds), rounds


class ProbabilityClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier defined by its `predict_proba` and `classes_`: `predict` is the likeliest
    class, so `score` (accuracy) and the rest of scikit-learn's classifier API work on it."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes_)[self.predict_proba(X).argmax(axis=1)]


def saved_params(model: BaseEstimator) -> dict:
    """The constructor params a model was fitted with, as its model.json keeps them for `load`: all but the
    thread count, which is how it ran, not what it is."""
    return {k: v for k, v in model.get_params().items() if k != "num_threads"}


def log_loss_of_true_class(proba: np.ndarray, classes: list[int], y: np.ndarray, class_weight: str) -> float:
    """Weighted multiclass log-loss of `proba` (columns in `classes` order) for labels `y`, a class the
    model does not know scoring LOSS_FLOOR: the loss the tuning folds compare models and params by."""
    column = pd.Index(classes).get_indexer(y)
    p = np.where(column >= 0, proba[np.arange(len(y)), np.maximum(column, 0)], 0.0)
    weight = class_weights(y, class_weight)
    return float(np.average(-np.log(np.maximum(p, LOSS_FLOOR)), weights=weight))


class LightGBMMulticlass(ProbabilityClassifier):
    """One multiclass LightGBM (a tree per class per round): affordable while rows x classes stay small.

    Not lightgbm.LGBMClassifier: its fit stops early on an eval set the caller hands it and keeps that booster,
    where this model must choose its own stopping rows (its last location fold, never a supplemental row),
    refit on all rows for the scaled rounds (module docstring), and split that work so tuning builds a fold's
    rows once for every trial (`prepare` / `fit_prepared`); both are thin over LightGBM's own train, early
    stopping callback and text model."""
    NAME, STOPPING_METRIC = "lightgbm_multiclass", "multi_logloss"

    def __init__(self, booster_params: dict | None = None, class_weight: str = "balanced", cv_folds: int = 3,
                 max_rounds: int = 400, early_stopping_rounds: int = 30, seed: int = 0,
                 supplemental_weight: float = 1.0, num_threads: int = 0):
        self.booster_params, self.class_weight, self.cv_folds = booster_params, class_weight, cv_folds
        self.max_rounds, self.early_stopping_rounds, self.seed = max_rounds, early_stopping_rounds, seed
        self.supplemental_weight, self.num_threads = supplemental_weight, num_threads

    def prepare(self, X: pd.DataFrame, y, groups: np.ndarray | None = None,
                supplemental: np.ndarray | None = None) -> "MulticlassData":
        """What a fit needs that does not depend on the booster params (tuning builds it once per fold)."""
        classes, codes = class_codes(y)
        groups, supplemental = fit_metadata(groups, supplemental, len(codes))
        return MulticlassData(X.to_numpy(np.float32), codes, classes, list(X.columns),
                              training_weights(codes, self.class_weight, supplemental, self.supplemental_weight),
                              stopping_rows(groups, self.cv_folds, supplemental))

    def fit_prepared(self, data: "MulticlassData", callbacks: tuple = ()) -> "LightGBMMulticlass":
        params = fit_params(self, objective="multiclass", num_class=len(data.classes))
        dataset = lgb.Dataset(data.x, label=data.codes, weight=data.weight, feature_name=data.columns,
                              params=params, free_raw_data=True)
        self.booster_, self.rounds_ = boost(params, dataset, data.stop, self.max_rounds, self.early_stopping_rounds,
                                            callbacks=callbacks)
        self.classes_, self.feature_names_in_ = np.asarray(data.classes), data.columns
        return self

    def fit(self, X: pd.DataFrame, y, groups: np.ndarray | None = None, supplemental: np.ndarray | None = None
            ) -> "LightGBMMulticlass":
        """`groups`: each row's camera location (none: one location, its rows split); `supplemental`: the rows
        that are photos, not camera frames (models.split.fit_metadata). scikit-learn routes both as metadata."""
        return self.fit_prepared(self.prepare(X, y, groups, supplemental))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict(X[self.feature_names_in_].to_numpy(np.float32))

    def save(self, folder: str | Path) -> None:
        """`folder`/booster.txt (LightGBM's text format) and model.json (classes, columns)."""
        save_booster(self.booster_, folder, {"model": self.NAME, "params": saved_params(self),
                                             "classes": self.classes_.tolist(), "columns": self.feature_names_in_,
                                             "rounds": self.rounds_})

    @classmethod
    def load(cls, folder: str | Path) -> "LightGBMMulticlass":
        meta = json.loads((Path(folder) / META_FILE).read_text())
        model = cls(**meta["params"])
        model.booster_ = lgb.Booster(model_file=str(Path(folder) / BOOSTER_FILE))
        model.classes_, model.feature_names_in_, model.rounds_ = (np.asarray(meta["classes"]), meta["columns"],
                                                                  meta["rounds"])
        return model


@dataclass
class MulticlassData:
    """A multiclass fit's rows: features, class codes (into `classes`), weights, early-stopping rows."""
    x: np.ndarray
    codes: np.ndarray
    classes: list[int]
    columns: list[str]
    weight: np.ndarray | None
    stop: np.ndarray


def save_booster(booster: lgb.Booster, folder: str | Path, meta: dict) -> None:
    """The booster as LightGBM's text model, less the `[num_threads: N]` line of its parameter list: how many
    threads fitted it is not part of the model, and the same fit on another thread count is the same file."""
    text = booster.model_to_string()
    lines = [line for line in text.split("\n") if not line.startswith("[num_threads:")]
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_text("\n".join(lines), Path(folder) / BOOSTER_FILE)
    write_json(meta, Path(folder) / META_FILE)
