"""How sure a number is: a bootstrap over the scored split's camera locations.

Images of one camera are not independent draws (same background, same animals, bursts), and an OOD split
rests on few cameras (WILDS's OOD test: 48; the sample's holdout: 5), so the unit resampled is the location.
Each replicate draws the split's locations with replacement and recomputes accuracy and macro-F1 over the
labels present in that replicate (as WILDS's `eval` averages F1 over `unique(y_true)`). Vectorised: per
location, per class counts of true labels, predictions and hits are summed once; a replicate is then a
weighted sum of those tables (replicates x locations @ locations x classes), whatever the image count.
Differences between two models are paired: both are scored on the same replicates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95


@dataclass
class LocationCounts:
    """Per location and class: images of that class (`true`), predictions of it (`predicted`) and hits."""
    true: np.ndarray       # (locations, classes)
    predicted: np.ndarray
    hits: np.ndarray
    images: np.ndarray     # (locations,)


def location_weights(locations: np.ndarray, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(each row's location code, (replicates, locations) counts of how often each location is drawn)."""
    codes, uniques = pd.factorize(pd.Series(locations), sort=True)
    draws = np.random.default_rng(seed).integers(0, len(uniques), (replicates, len(uniques)))
    weights = np.zeros((replicates, len(uniques)))
    np.add.at(weights, (np.arange(replicates)[:, None], draws), 1)
    return codes, weights


def counts(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, n_locations: int,
           classes: pd.Index) -> LocationCounts:
    """The per-location tables of one model's predictions (`classes`: every label of y_true and y_pred)."""
    shape = (n_locations, len(classes))
    t, p = classes.get_indexer(y_true), classes.get_indexer(y_pred)
    true, predicted, hits = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    np.add.at(true, (codes, t), 1)
    np.add.at(predicted, (codes, p), 1)
    hit = t == p
    np.add.at(hits, (codes[hit], t[hit]), 1)
    return LocationCounts(true, predicted, hits, true.sum(axis=1))


def replicate_scores(table: LocationCounts, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 (over the labels present in each replicate) of every replicate."""
    true, predicted, hits = weights @ table.true, weights @ table.predicted, weights @ table.hits
    present = true > 0
    f1 = np.where(present, 2 * hits / np.where(present, predicted + true, 1), 0.0)
    return {"accuracy": hits.sum(axis=1) / (weights @ table.images),
            "macro_f1": f1.sum(axis=1) / present.sum(axis=1)}


def interval(values: np.ndarray) -> list[float]:
    """The central LEVEL percentile interval of replicate values."""
    tail = 100 * (1 - LEVEL) / 2
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


def location_intervals(y_true: np.ndarray, predictions: dict[str, np.ndarray], locations: np.ndarray,
                       reference: str | None, replicates: int, seed: int) -> dict[str, dict]:
    """Per model: the LEVEL interval of accuracy and macro-F1 over location bootstrap replicates, and, for all
    but `reference`, its paired difference to the reference model (reference minus model) with its interval."""
    codes, weights = location_weights(locations, replicates, seed)
    classes = pd.Index(np.unique(np.concatenate([y_true, *predictions.values()])))
    tables = {name: counts(y_true, y_pred, codes, weights.shape[1], classes) for name, y_pred in predictions.items()}
    scores = {name: replicate_scores(table, weights) for name, table in tables.items()}
    whole = {name: replicate_scores(table, np.ones((1, weights.shape[1]))) for name, table in tables.items()}
    out = {}
    for name, s in scores.items():
        out[name] = {f"{metric}_ci": interval(values) for metric, values in s.items()}
        if reference in scores and name != reference:
            out[name]["vs_chosen"] = {
                metric: {"difference": float(whole[reference][metric][0] - whole[name][metric][0]),
                         "ci": interval(scores[reference][metric] - values)} for metric, values in s.items()}
    return out
