"""Probabilities that mean what they say: temperature scaling fitted on out-of-fold predictions of the training
locations, and the expected calibration error that measures it.

An ecologist sets a threshold below which a person looks at the image (predictions.review_below); that works only
if "0.8" means right 8 times in 10 at cameras the model never saw. Boosted trees with balanced class weights are
not calibrated that way by construction, so the chosen model's probabilities may be rescaled by one temperature T
(Guo et al. 2017, On Calibration of Modern Neural Networks): p_T(c) proportional to p(c)^(1/T). T is fitted by
log-loss on the
tuning folds' out-of-fold predictions of the chosen family with its chosen params (location folds of the
training rows, or WILDS's OOD val, the tuning split), never on a scored split, and it keeps every row's ranking
of the classes, so accuracy and macro-F1 do not move. Isotonic regression of the top-label confidence is measured
beside it, cross-fitted over the out-of-fold rows' locations; it is not applied, because it can reorder a row's
classes once the others share the rest of its mass. predictions.calibration `auto` applies the temperature only
where it lowers that cross-fitted error.

The expected calibration error (ECE) is the top-label one: equal-width confidence bins, the mean |accuracy -
confidence| weighted by the bin's share of rows. Its intervals resample whole locations, as the accuracy's do
(models.bootstrap), from per-location bin tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.base import clone
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold

from models.bootstrap import interval, location_weights
from models.metrics import smooth_by_sequence

METHODS = ("auto", "temperature", "none")
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


@dataclass
class Temperature:
    """p_T(c) proportional to p(c)^(1/T): T > 1 softens overconfident probabilities, T < 1 sharpens; a class at 0
    stays at 0 (the re-ranker's non-candidates), and each row's order of classes is kept."""
    temperature: float

    def apply(self, proba: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            scaled = np.log(proba) / self.temperature
        return np.exp(log_softmax(scaled, axis=1))

    @classmethod
    def fit(cls, proba: np.ndarray, truth: np.ndarray) -> tuple["Temperature", int]:
        """(the T of lowest log-loss on the rows whose true class (a column code) has a probability above 0, how
        many rows had 0: no temperature moves a 0, so they are left out of the fit and counted)."""
        p_true = proba[np.arange(len(truth)), truth]
        usable = p_true > 0
        log_p = np.log(np.where(proba[usable] > 0, proba[usable], 1.0))
        zero = proba[usable] == 0
        true = truth[usable]

        def loss(log_t: float) -> float:
            scaled = np.where(zero, -np.inf, log_p / np.exp(log_t))
            return float(-log_softmax(scaled, axis=1)[np.arange(len(true)), true].mean())

        best = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
        return cls(float(np.exp(best.x))), int((~usable).sum())


def top_label(proba: np.ndarray, classes, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's top probability, whether its top class is its label)."""
    top = proba.argmax(axis=1)
    return proba[np.arange(len(proba)), top], np.asarray(classes)[top] == np.asarray(y)


def bin_tables(confidence: np.ndarray, correct: np.ndarray, codes: np.ndarray, n_groups: int, bins: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group and equal-width confidence bin: rows, summed confidence, right rows ((groups, bins) each)."""
    b = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, conf, hits = (np.zeros((n_groups, bins)) for _ in range(3))
    np.add.at(rows, (codes, b), 1)
    np.add.at(conf, (codes, b), confidence)
    np.add.at(hits, (codes, b), correct)
    return rows, conf, hits


def ece_of_tables(rows: np.ndarray, conf: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """ECE of (replicates, bins) tables: sum over bins of |hits - confidence| / rows."""
    return np.abs(hits - conf).sum(axis=1) / rows.sum(axis=1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    rows, conf, hits = bin_tables(confidence, correct, np.zeros(len(confidence), int), 1, bins)
    return float(ece_of_tables(rows, conf, hits)[0])


def ece_with_interval(confidence: np.ndarray, correct: np.ndarray, locations: np.ndarray, bins: int,
                      replicates: int, seed: int) -> dict:
    """ECE and its 95% interval over location bootstrap replicates (the same draws as the accuracy's)."""
    codes, weights = location_weights(locations, replicates, seed)
    tables = bin_tables(confidence, correct, codes, weights.shape[1], bins)
    replicate = ece_of_tables(*(weights @ t for t in tables))
    return {"ece": expected_calibration_error(confidence, correct, bins), "ece_ci": interval(replicate)}


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[dict]:
    """The reliability diagram's points: per non-empty bin, its rows, mean confidence and accuracy."""
    rows, conf, hits = (t[0] for t in bin_tables(confidence, correct, np.zeros(len(confidence), int), 1, bins))
    return [{"bin_low": k / bins, "rows": int(rows[k]), "confidence": float(conf[k] / rows[k]),
             "accuracy": float(hits[k] / rows[k])} for k in np.flatnonzero(rows)]


def out_of_fold_proba(model, folds, seqs: list[np.ndarray] | None) -> tuple[np.ndarray, list[int]]:
    """(rows of all folds' validation rows in fold order x classes probabilities, the classes: every fold's fit's
    and validation labels), each fold's from the model fitted on its prepared rows (models.tune.Fold), 0 for a
    class its fit lacks; with `seqs` (each fold's validation rows' sequence ids) averaged over each sequence's
    frames, as the served probabilities are."""
    fitted = [clone(model).fit_prepared(fold.prepared) for fold in folds]
    classes = sorted({int(c) for f in fitted for c in f.classes_} | {int(c) for fold in folds for c in fold.y_val})
    out = []
    for k, (fold, f) in enumerate(zip(folds, fitted)):
        p = np.zeros((len(fold.y_val), len(classes)))
        p[:, pd.Index(classes).get_indexer(f.classes_)] = f.predict_proba(fold.x_val)
        out.append(p if seqs is None else smooth_by_sequence(p, seqs[k]))
    return np.concatenate(out), classes


def compare_methods(proba: np.ndarray, y: np.ndarray, classes: list[int], groups: np.ndarray, n_folds: int,
                    bins: int) -> dict[str, float]:
    """ECE of the out-of-fold rows uncalibrated, temperature-scaled and isotonic (top-label confidence), each
    calibrator fitted on the other location folds of those rows and measured on the held-out one."""
    truth = pd.Index(classes).get_indexer(y)
    conf, correct = top_label(proba, classes, y)
    scaled, isotonic = np.empty(len(y)), np.empty(len(y))
    n = min(n_folds, len(np.unique(groups)))
    if n < 2:
        return {"uncalibrated": expected_calibration_error(conf, correct, bins)}
    for fit, val in GroupKFold(n_splits=n).split(proba, groups=groups):
        temperature, _ = Temperature.fit(proba[fit], truth[fit])
        scaled[val] = temperature.apply(proba[val]).max(axis=1)
        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(conf[fit], correct[fit])
        isotonic[val] = iso.predict(conf[val])
    return {"uncalibrated": expected_calibration_error(conf, correct, bins),
            "temperature": expected_calibration_error(scaled, correct, bins),
            "isotonic": expected_calibration_error(isotonic, correct, bins)}


def calibrate(model, folds, seq_of: pd.Series | None, group_of: pd.Series, method: str, n_folds: int, bins: int
              ) -> dict:
    """calibration.json: the method applied and why, the temperature fitted on the out-of-fold predictions of
    `folds` (the chosen family's tuning folds with its chosen params: models.tune.Fold), and the out-of-fold ECE of
    each method. `auto` applies the temperature only where it lowers the cross-fitted out-of-fold ECE (training
    locations only: a log-loss optimum need not be an ECE one). `seq_of` maps a row to its sequence where the
    served probabilities are averaged over sequences; `group_of` maps a row to its location."""
    if method not in METHODS:
        raise ValueError(f"params.yaml: predictions.calibration must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "none":
        return {"method": "none", "why": "predictions.calibration: none", "bins": bins}
    index = pd.Index(np.concatenate([f.x_val.index.to_numpy() for f in folds]))
    y = np.concatenate([f.y_val for f in folds])
    proba, classes = out_of_fold_proba(model, folds, None if seq_of is None else
                                       [seq_of.loc[f.x_val.index].to_numpy() for f in folds])
    temperature, at_zero = Temperature.fit(proba, pd.Index(classes).get_indexer(y))
    measured = compare_methods(proba, y, classes, group_of.loc[index].to_numpy(), n_folds, bins)
    if method == "temperature":
        applied, why = "temperature", "predictions.calibration: temperature"
    elif "temperature" not in measured:
        applied, why = "none", "auto: the out-of-fold rows are of one location, nothing to cross-fit a temperature on"
    else:
        applied = "temperature" if measured["temperature"] < measured["uncalibrated"] else "none"
        why = (f"auto: the temperature {'lowers' if applied == 'temperature' else 'does not lower'} the cross-fitted "
               f"out-of-fold ECE ({measured['temperature']:.4f} against {measured['uncalibrated']:.4f} as given)")
    return {"method": applied, "why": why, "temperature": temperature.temperature, "rows": int(len(y)),
            "rows_at_zero": at_zero,  # their class outside the candidates, or absent from their fold's fit
            "out_of_fold_ece": measured, "bins": bins}


def load_temperature(record: dict) -> Temperature | None:
    """The Temperature calibration.json applies, or None where it applies none (none, or auto deciding so)."""
    return Temperature(record["temperature"]) if record["method"] == "temperature" else None


def scored_calibration(proba: np.ndarray, classes, y: np.ndarray, locations: np.ndarray,
                       temperature: Temperature | None, bins: int, review_below: float, replicates: int,
                       seed: int) -> dict:
    """One scored split's calibration report for the reported model's probabilities: the ECE and its location
    interval as the model gives them and as served (calibrated by `temperature`, or not: None), and the review
    rule on the served ones (the share of images below `review_below`, the accuracy of the rest) and the
    reliability diagram's points."""
    raw_conf, correct = top_label(proba, classes, y)
    conf = raw_conf if temperature is None else temperature.apply(proba).max(axis=1)
    kept = conf >= review_below
    return {"uncalibrated": ece_with_interval(raw_conf, correct, locations, bins, replicates, seed),
            "served": ece_with_interval(conf, correct, locations, bins, replicates, seed),
            "review_share": float(1 - kept.mean()),
            "accuracy_not_reviewed": float(correct[kept].mean()) if kept.any() else None,
            "reliability": {"uncalibrated": reliability(raw_conf, correct, bins),
                            "served": reliability(conf, correct, bins)}}
