"""Candidate re-ranking: the model for many classes.

A multiclass LightGBM grows one tree per class per round: 188 trees a round on iWildCam, about 10 s a
round on two cores. Here closed-form linear scorers (shrinkage LDA, one pass over the rows: one on all
features, one per feature family) propose the `k` likeliest classes of each row, and one binary LightGBM
scores the (row, candidate) pairs from the row's features and the candidate's evidence: each scorer's
log-probability for it, its rank, the class's training frequency and how many training cameras saw it.
One tree a round whatever the class count, and classes seen at one or two cameras share what the model
learns about rare classes instead of getting a tree each.

Training pairs carry out-of-fold evidence (scorers and class counts from the other location folds), so a
training row's candidates look like those of an unseen camera's row. Everything is saved as arrays (npz)
and a LightGBM text model: no pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.covariance import ledoit_wolf

from infra.atomic import atomic_path, write_json
from models.lgbm import sample_weights
from models.split import location_folds

PROPOSER_ARRAYS = ("medians", "means", "scales", "coef", "intercept")  # Proposer's arguments, as saved
LOG_FLOOR = -50.0  # log-probability of a class the proposer never saw


class Proposer:
    """Linear discriminant analysis (shared within-class covariance, Ledoit-Wolf shrinkage) on median-imputed,
    standardised features, kept as its linear scores per class. Fitting is one pass over the rows and one
    (features x features) solve, whatever the class count."""

    def __init__(self, medians: np.ndarray, means: np.ndarray, scales: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray) -> None:
        self.medians, self.means, self.scales, self.coef, self.intercept = medians, means, scales, coef, intercept

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, balanced: bool) -> "Proposer":
        """Classes are codes 0..n_classes-1; classes absent from `y` score LOG_FLOOR. `balanced` gives every
        class the same prior, so rare classes reach the candidate list on their evidence alone."""
        with np.errstate(all="ignore"):
            medians = np.nan_to_num(np.nanmedian(x, axis=0)).astype(np.float32)
        filled = np.where(np.isnan(x), medians, x).astype(np.float64)
        means, scales = filled.mean(axis=0), filled.std(axis=0)
        scales[scales == 0] = 1.0
        z = (filled - means) / scales
        counts = np.bincount(y, minlength=n_classes)
        present = np.flatnonzero(counts)
        onehot = sparse.csr_matrix((np.ones(len(y)), (y, np.arange(len(y)))), shape=(n_classes, len(y)))
        class_means = (onehot @ z)[present] / counts[present, None]
        within = z - class_means[np.searchsorted(present, y)]
        covariance, _ = ledoit_wolf(within, assume_centered=True)
        coef = np.zeros((n_classes, x.shape[1]), np.float32)
        intercept = np.full(n_classes, -np.inf, np.float32)  # never seen: LOG_FLOOR after the softmax
        prior = np.full(len(present), 1 / len(present)) if balanced else counts[present] / len(y)
        try:
            c = np.linalg.solve(covariance, class_means.T).T
        except np.linalg.LinAlgError:  # no spread at all (e.g. a site-level family constant over these rows)
            c = np.linalg.lstsq(covariance, class_means.T, rcond=None)[0].T
        coef[present] = c
        intercept[present] = -0.5 * (c * class_means).sum(axis=1) + np.log(prior)
        return cls(medians, means.astype(np.float32), scales.astype(np.float32), coef, intercept)

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """(rows, classes) log-probabilities, floored at LOG_FLOOR."""
        z = ((np.where(np.isnan(x), self.medians, x) - self.means) / self.scales) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        return np.maximum(z, LOG_FLOOR).astype(np.float32)


def proposer_columns(columns: list[str]) -> dict[str, list[int]]:
    """The proposers a model keeps: `all` columns, and one per feature family (column prefix before `__`)
    when there are several, so a candidate carries each family's evidence for it, not just the sum."""
    families: dict[str, list[int]] = {}
    for j, c in enumerate(columns):
        families.setdefault(str(c).split("__")[0], []).append(j)
    return {"all": list(range(len(columns))), **(families if len(families) > 1 else {})}


@dataclass
class Evidence:
    """Per row and class: each proposer's log-probability (the `all` proposer picks the candidates), the
    class's log training frequency and the number of training cameras that saw it ((classes,) when shared
    by all rows, (rows, classes) out of fold)."""
    log_proba: dict[str, np.ndarray]
    log_prior: np.ndarray
    locations: np.ndarray

    def rows(self, index: np.ndarray) -> "Evidence":
        return Evidence({k: v[index] for k, v in self.log_proba.items()}, self.log_prior[index],
                        self.locations[index])


def pair_columns(proposers) -> list[str]:
    """Names of the candidate's evidence columns, one family (`candidate__`) in the importance plot."""
    return (["candidate__class", "candidate__rank", "candidate__gap", "candidate__class_log_prior",
             "candidate__class_locations"] + [f"candidate__{name}_log_proba" for name in proposers])


def class_counts(y: np.ndarray, groups: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(log frequency, number of locations) per class code in these rows."""
    freq = np.bincount(y, minlength=n_classes) / max(len(y), 1)
    seen = pd.DataFrame({"y": y, "g": groups}).drop_duplicates()
    locations = np.bincount(seen["y"].to_numpy(), minlength=n_classes)
    return np.log(np.maximum(freq, 1e-9)).astype(np.float32), locations.astype(np.float32)


def fit_proposers(x: np.ndarray, y: np.ndarray, columns: dict[str, list[int]], n_classes: int, balanced: bool
                  ) -> dict[str, Proposer]:
    return {name: Proposer.fit(x[:, cols], y, n_classes, balanced) for name, cols in columns.items()}


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, columns: dict[str, list[int]], n_folds: int,
                n_classes: int, balanced: bool) -> Evidence:
    """Each row's evidence from proposers and class counts fitted on the other location folds."""
    n = len(y)
    ev = Evidence({name: np.empty((n, n_classes), np.float32) for name in columns},
                  np.empty((n, n_classes), np.float32), np.empty((n, n_classes), np.float32))
    for fit, val in location_folds(groups, n_folds):
        for name, proposer in fit_proposers(x[fit], y[fit], columns, n_classes, balanced).items():
            ev.log_proba[name][val] = proposer.log_proba(x[val][:, columns[name]])
        ev.log_prior[val], ev.locations[val] = class_counts(y[fit], groups[fit], n_classes)
    return ev


def candidates(log_proba: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) class codes, likeliest first (ties by code, so the order is deterministic)."""
    k = min(k, log_proba.shape[1])
    return np.argsort(-log_proba, axis=1, kind="stable")[:, :k]


def pairs(x: np.ndarray, ev: Evidence, cand: np.ndarray) -> np.ndarray:
    """(rows x k, features + pair columns) float32: each row repeated once per candidate, then the
    candidate's evidence."""
    n, k = cand.shape
    rows = np.repeat(np.arange(n), k)
    flat = cand.ravel()

    def per_pair(a: np.ndarray) -> np.ndarray:
        return a[flat] if a.ndim == 1 else a[rows, flat]

    top = ev.log_proba["all"]
    lp = top[rows, flat]
    evidence = [flat, np.tile(np.arange(k), n), top.max(axis=1)[rows] - lp, per_pair(ev.log_prior),
                per_pair(ev.locations)] + [per_pair(a) for a in ev.log_proba.values()]
    out = np.empty((n * k, x.shape[1] + len(evidence)), np.float32)
    out.reshape(n, k, -1)[:, :, :x.shape[1]] = x[:, None, :]  # broadcast: no (rows x k) temporary copy
    for j, column in enumerate(evidence):
        out[:, x.shape[1] + j] = column
    return out


def pair_labels(y: np.ndarray, cand: np.ndarray) -> np.ndarray:
    return (cand == y[:, None]).ravel().astype(np.float32)


def binary_params(params: dict, seed: int) -> dict:
    """LightGBM params for a deterministic binary fit on pairs."""
    return dict(params, objective="binary", seed=seed, deterministic=True, force_row_wise=True, verbose=-1)


def pair_dataset(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None, ev: Evidence, cand: np.ndarray,
                 names: list[str], reference: lgb.Dataset | None = None) -> lgb.Dataset:
    w = None if weight is None else np.repeat(weight, cand.shape[1])
    return lgb.Dataset(pairs(x, ev, cand), label=pair_labels(y, cand), weight=w, feature_name=names,
                       categorical_feature=["candidate__class"], reference=reference, free_raw_data=True)


def training_pairs(features: pd.DataFrame, labels: pd.Series, groups: np.ndarray, classes: list[int], cfg: dict
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]], lgb.Dataset]:
    """(features, class codes, proposer columns, pair Dataset) of a re-ranker's training rows, the pairs
    carrying out-of-fold evidence (`cfg`: candidates, cv_folds, class_weight)."""
    x = features.to_numpy(np.float32)
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    columns = proposer_columns(list(features.columns))
    ev = out_of_fold(x, y, groups, columns, cfg["cv_folds"], len(classes), cfg["class_weight"] == "balanced")
    cand = candidates(ev.log_proba["all"], cfg["candidates"])
    names = list(features.columns) + pair_columns(columns)
    return x, y, columns, pair_dataset(x, y, sample_weights(y, cfg["class_weight"]), ev, cand, names)


@dataclass
class Reranker:
    columns: list[str]
    classes: list[int]       # category id of each class code
    k: int
    proposers: dict[str, Proposer]
    proposer_columns: dict[str, list[int]]
    log_prior: np.ndarray
    locations: np.ndarray
    booster: lgb.Booster

    @classmethod
    def fit(cls, features: pd.DataFrame, labels: pd.Series, groups: np.ndarray, classes: list[int], params: dict,
            rounds: int, cfg: dict, seed: int) -> "Reranker":
        """Pairs from out-of-fold evidence (`cfg`: candidates, cv_folds, class_weight); the proposers and class
        counts kept for prediction are then fitted on all rows."""
        x, y, columns, data = training_pairs(features, labels, groups, classes, cfg)
        booster = lgb.train(binary_params(params, seed), data, num_boost_round=rounds)
        log_prior, locations = class_counts(y, groups, len(classes))
        return cls(list(features.columns), [int(c) for c in classes], min(cfg["candidates"], len(classes)),
                   fit_proposers(x, y, columns, len(classes), cfg["class_weight"] == "balanced"), columns,
                   log_prior, locations, booster)

    def evidence(self, features: pd.DataFrame) -> tuple[np.ndarray, Evidence]:
        x = features[self.columns].to_numpy(np.float32)
        return x, Evidence({name: p.log_proba(x[:, self.proposer_columns[name]]) for name, p in self.proposers.items()},
                           self.log_prior, self.locations)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities: the pair scores of each row's candidates, normalised over them;
        classes outside a row's candidates get 0."""
        x, ev = self.evidence(features)
        cand = candidates(ev.log_proba["all"], self.k)
        score = self.booster.predict(pairs(x, ev, cand)).reshape(cand.shape)
        proba = np.zeros((len(x), len(self.classes)))
        np.put_along_axis(proba, cand, score / score.sum(axis=1, keepdims=True), axis=1)
        return proba

    def candidate_recall(self, features: pd.DataFrame, labels: np.ndarray) -> float:
        """Share of rows whose true class is among their candidates: the most the re-ranker can get right."""
        _, ev = self.evidence(features)
        codes = pd.Series(labels).map({c: i for i, c in enumerate(self.classes)}).fillna(-1).to_numpy()
        return float((candidates(ev.log_proba["all"], self.k) == codes[:, None]).any(axis=1).mean())

    def save(self, path: str | Path) -> None:
        """`<path>` LightGBM text model, `<path>.proposer.npz` (arrays), `<path>.classes.json`."""
        with atomic_path(path) as tmp:
            self.booster.save_model(tmp)
        arrays = {"log_prior": self.log_prior, "locations": self.locations}
        for name, p in self.proposers.items():
            arrays.update({f"{name}/{key}": getattr(p, key) for key in PROPOSER_ARRAYS})
        with atomic_path(f"{path}.proposer.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        write_json({"classes": self.classes, "columns": self.columns, "candidates": self.k,
                    "proposers": list(self.proposer_columns.items())},  # a list: the order is the columns'
                   f"{path}.classes.json")

    @classmethod
    def load(cls, path: str | Path) -> "Reranker":
        meta = json.loads(Path(f"{path}.classes.json").read_text())
        meta["proposers"] = dict(meta["proposers"])
        with np.load(f"{path}.proposer.npz", allow_pickle=False) as a:
            proposers = {name: Proposer(*(a[f"{name}/{key}"] for key in PROPOSER_ARRAYS)) for name in meta["proposers"]}
            log_prior, locations = a["log_prior"], a["locations"]
        return cls(meta["columns"], meta["classes"], meta["candidates"], proposers, meta["proposers"], log_prior,
                   locations, lgb.Booster(model_file=str(path)))
