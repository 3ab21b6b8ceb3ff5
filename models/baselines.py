"""Baselines evaluated beside the model, on the same held-out locations, so every number has context. Each
is a scikit-learn classifier, so evaluate runs them and the tuned models through one loop."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.lgbm import ProbabilityClassifier, stopping_rows, supplemental_weights
from models.split import NotFittable, fit_metadata

EMPTY = 0


def majority_class() -> DummyClassifier:
    return DummyClassifier(strategy="most_frequent")


class DetectorRule(ProbabilityClassifier):
    """Empty if no box reaches the threshold (or the image is not in the detector file), else the most
    common non-empty training class: the rule many camera-trap projects start with. Its classes are the
    training classes plus "empty", which the rule says even where no training image is labelled empty (many
    projects drop empties before labelling). X: the detector's top confidence per row (`top_conf`)."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y) -> "DetectorRule":
        y = pd.Series(np.asarray(y))
        animals = y[y != EMPTY]
        self.animal_ = int(animals.mode().iloc[0]) if len(animals) else EMPTY
        self.classes_ = np.asarray(sorted({int(c) for c in y.unique()} | {EMPTY}))
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        animal = X["top_conf"].fillna(0).to_numpy() >= self.threshold
        proba = np.zeros((len(X), len(self.classes_)))
        proba[np.arange(len(X)), np.searchsorted(self.classes_, np.where(animal, self.animal_, EMPTY))] = 1.0
        return proba


def linear_probe(class_weight: str, seed: int, max_iter: int):
    """The frozen-feature protocol (BioBench's): multinomial logistic regression on standardised
    (median-imputed) features. One lbfgs iteration costs rows x features x classes, so it runs at every
    scale (a multiclass tree model grows a tree per class per round). Its fit takes a `sample_weight` (the
    supplemental rows' weight, times the balanced class weights) for the regression, not the standardisation;
    build it where metadata routing is on (scikit-learn's `enable_metadata_routing`)."""
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         StandardScaler().set_fit_request(sample_weight=False),
                         LogisticRegression(max_iter=max_iter, random_state=seed,
                                            class_weight="balanced" if class_weight == "balanced" else None
                                            ).set_fit_request(sample_weight=True))


class HistGradientBoosting(ProbabilityClassifier):
    """scikit-learn's peer tree model at the tuned multiclass LightGBM's params, fitted the way our models
    are: early stopping on its last location fold, then a refit on all rows for the stopped round count
    scaled by the row ratio; `supplemental` rows (photos) fit at `supplemental_weight` and never stop. Columns
    with no value in the rows it first fits carry nothing and break its binning, so they are left out."""

    def __init__(self, booster_params: dict | None = None, class_weight: str = "balanced", cv_folds: int = 3,
                 max_rounds: int = 400, early_stopping_rounds: int = 30, seed: int = 0,
                 supplemental_weight: float = 1.0):
        self.booster_params, self.class_weight, self.cv_folds = booster_params, class_weight, cv_folds
        self.max_rounds, self.early_stopping_rounds, self.seed = max_rounds, early_stopping_rounds, seed
        self.supplemental_weight = supplemental_weight

    def _model(self, **settings) -> HistGradientBoostingClassifier:
        p = self.booster_params or {}
        return HistGradientBoostingClassifier(
            learning_rate=p.get("learning_rate", 0.1), max_leaf_nodes=p.get("num_leaves", 31),
            min_samples_leaf=p.get("min_data_in_leaf", 20), l2_regularization=p.get("lambda_l2", 0.0),
            random_state=self.seed, class_weight="balanced" if self.class_weight == "balanced" else None, **settings)

    def fit(self, X: pd.DataFrame, y, groups: np.ndarray | None = None, supplemental: np.ndarray | None = None
            ) -> "HistGradientBoosting":
        groups, supplemental = fit_metadata(groups, supplemental, len(X))
        stop = stopping_rows(groups, self.cv_folds, supplemental)
        self.columns_ = X.columns[X[~stop].notna().any().to_numpy()]
        x, y = X[self.columns_], np.asarray(y)
        known = stop & np.isin(y, y[~stop])  # stopping rows of classes the stopped fit knows
        if len(np.unique(y[~stop])) < 2 or not known.any():
            raise NotFittable("its early-stopping fold (the last location fold) has no image of a class the other "
                              "folds hold, or those hold one class: scikit-learn's early stopping needs both")
        stopped = self._model(max_iter=self.max_rounds, early_stopping=True,
                              n_iter_no_change=self.early_stopping_rounds, scoring="loss")
        weight = supplemental_weights(supplemental, self.supplemental_weight)
        stopped.fit(x[~stop], y[~stop], None if weight is None else weight[~stop], X_val=x[known], y_val=y[known])
        best = int(np.argmax(stopped.validation_score_))  # scores before the first and after each iteration
        self.rounds_ = max(1, round(best * len(y) / (~stop).sum()))
        self.model_ = self._model(max_iter=self.rounds_, early_stopping=False).fit(x, y, weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(X[self.columns_])
