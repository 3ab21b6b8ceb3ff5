"""LightGBM multiclass model stored as a text model file plus its class list (never a pickle)."""
from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from data.io import atomic_path, write_json


def sample_weights(y: np.ndarray, class_weight: str) -> np.ndarray | None:
    """Inverse class frequency weights (mean 1) for `balanced`, none otherwise."""
    if class_weight == "none":
        return None
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be 'balanced' or 'none', not {class_weight!r}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(counts) * counts))[inverse]


def fit(features: pd.DataFrame, labels: pd.Series, params: dict, seed: int, class_weight: str
        ) -> tuple[lgb.Booster, list[int]]:
    """Fit on the classes present in `labels`; return the booster and the category id of each output."""
    classes = sorted(int(c) for c in labels.unique())
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    lgb_params = {k: v for k, v in params.items() if k != "num_boost_round"}
    lgb_params.update(objective="multiclass", num_class=len(classes), seed=seed, deterministic=True,
                      force_row_wise=True, verbose=-1)
    data = lgb.Dataset(features, label=y, weight=sample_weights(y, class_weight), free_raw_data=True)
    booster = lgb.train(lgb_params, data, num_boost_round=params["num_boost_round"])
    return booster, classes


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
