"""LightGBM multiclass model stored as a text model file plus its class list (never a pickle)."""
from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from infra.atomic import atomic_path, write_json


def sample_weights(y: np.ndarray, class_weight: str) -> np.ndarray | None:
    """Inverse class frequency weights (mean 1) for `balanced`, none otherwise."""
    if class_weight == "none":
        return None
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or 'none', not {class_weight!r}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(counts) * counts))[inverse]


def lgb_params(params: dict, n_classes: int, seed: int) -> dict:
    """LightGBM params for a deterministic multiclass fit."""
    return dict(params, objective="multiclass", num_class=n_classes, seed=seed, deterministic=True,
                force_row_wise=True, verbose=-1)


def encode(labels: pd.Series, classes: list[int]) -> np.ndarray:
    return labels.map({c: i for i, c in enumerate(classes)}).to_numpy()


def fit(features: pd.DataFrame, labels: pd.Series, params: dict, num_boost_round: int, seed: int,
        class_weight: str, classes: list[int]) -> lgb.Booster:
    """Fit with `params` (LightGBM names) on `classes` (the category id of each output)."""
    y = encode(labels, classes)
    data = lgb.Dataset(features, label=y, weight=sample_weights(y, class_weight))
    return lgb.train(lgb_params(params, len(classes), seed), data, num_boost_round=num_boost_round)


def save(booster: lgb.Booster, classes: list[int], path: str | Path) -> None:
    """Text model at `path`, class list beside it as `<path>.classes.json`."""
    with atomic_path(path) as tmp:
        booster.save_model(tmp)
    write_json({"classes": classes}, f"{path}.classes.json")


def load(path: str | Path) -> tuple[lgb.Booster, list[int]]:
    classes = json.loads(Path(f"{path}.classes.json").read_text())["classes"]
    return lgb.Booster(model_file=str(path)), classes


def predict_proba(booster: lgb.Booster, features: pd.DataFrame) -> np.ndarray:
    return booster.predict(features[booster.feature_name()])
