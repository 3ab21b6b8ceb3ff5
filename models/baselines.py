"""Baselines evaluated beside the model, on the same held-out locations, so every number has context."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models import lgbm

EMPTY = 0


def one_hot(predicted: np.ndarray, classes: list[int]) -> np.ndarray:
    """Hard predictions as probabilities, so every baseline goes through the same metrics."""
    proba = np.zeros((len(predicted), len(classes)))
    proba[np.arange(len(predicted)), [classes.index(p) for p in predicted]] = 1.0
    return proba


def majority_class(y_fit: pd.Series, n: int) -> np.ndarray:
    return np.full(n, int(y_fit.mode().iloc[0]))


def detector_only(top_conf: pd.Series, y_fit: pd.Series, threshold: float) -> tuple[np.ndarray, list[int]]:
    """Empty if no box reaches the threshold (or the image is not in the detector file), else the most
    common non-empty training class: the rule many camera-trap projects start with. As (probabilities,
    classes): the training classes plus "empty", which the rule says even where no training image is
    labelled empty (many projects drop empties before labelling)."""
    animals = y_fit[y_fit != EMPTY]
    animal = int(animals.mode().iloc[0]) if len(animals) else EMPTY
    predicted = np.where(top_conf.fillna(0).to_numpy() >= threshold, animal, EMPTY)
    classes = sorted({int(c) for c in y_fit.unique()} | {EMPTY})
    return one_hot(predicted, classes), classes


def linear_probe(x_fit: pd.DataFrame, y_fit: pd.Series, x_val: pd.DataFrame, class_weight: str, seed: int
                 ) -> tuple[np.ndarray, list[int]]:
    """Logistic regression on standardised, median-imputed features."""
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                          LogisticRegression(max_iter=2000, random_state=seed,
                                             class_weight="balanced" if class_weight == "balanced" else None))
    model.fit(x_fit, y_fit)
    return model.predict_proba(x_val), [int(c) for c in model.classes_]


def lightgbm_multiclass(x_fit: pd.DataFrame, y_fit: pd.Series, x_val: pd.DataFrame, params: dict, rounds: int,
                        class_weight: str, seed: int) -> tuple[np.ndarray, list[int]]:
    """The model this pipeline had before the re-ranker: one multiclass LightGBM (one tree per class per
    round), at the re-ranker's tuned params and rounds."""
    classes = sorted(int(c) for c in y_fit.unique())
    booster = lgbm.fit(x_fit, y_fit, params, rounds, seed, class_weight, classes)
    return lgbm.predict_proba(booster, x_val), classes


def hist_gradient_boosting(x_fit: pd.DataFrame, y_fit: pd.Series, x_val: pd.DataFrame, params: dict, rounds: int,
                           class_weight: str, seed: int) -> tuple[np.ndarray, list[int]]:
    """scikit-learn's peer tree model at the tuned LightGBM's budget (rounds, rate, leaves). Columns with
    no value in the training rows carry nothing and break its binning, so they are left out."""
    present = x_fit.columns[x_fit.notna().any().to_numpy()]
    x_fit, x_val = x_fit[present], x_val[present]
    model = HistGradientBoostingClassifier(
        max_iter=rounds, learning_rate=params.get("learning_rate", 0.1),
        max_leaf_nodes=params.get("num_leaves", 31), min_samples_leaf=params.get("min_data_in_leaf", 20),
        l2_regularization=params.get("lambda_l2", 0.0), early_stopping=False, random_state=seed,
        class_weight="balanced" if class_weight == "balanced" else None)
    model.fit(x_fit, y_fit)
    return model.predict_proba(x_val), [int(c) for c in model.classes_]
