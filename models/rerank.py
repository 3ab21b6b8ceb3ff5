"""Candidate re-ranking: the model for many classes.

A multiclass LightGBM grows one tree per class per round: 188 trees a round on iWildCam, about 10 s a
round on two cores. Here closed-form linear scorers (shrinkage LDA, one pass over the rows: one on all
features, one per feature family) propose the `k` likeliest classes of each row, and one binary LightGBM
scores the (row, candidate) pairs from the row's features and the candidate's evidence: each scorer's
log-probability for it, its rank, the class's training frequency and the share of training cameras that saw it.
One tree a round whatever the class count, and classes seen at one or two cameras share what the model
learns about rare classes instead of getting a tree each.

Training pairs carry out-of-fold evidence (scorers and class statistics from the other location folds),
so a training row's candidates look like those of an unseen camera's row. Everything is saved as arrays
(npz) and a LightGBM text model: no pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import log_softmax
from sklearn.covariance import ledoit_wolf

from infra.atomic import atomic_path
from models.lgbm import (BOOSTER_FILE, LOSS_FLOOR, META_FILE, ProbabilityClassifier, boost, class_codes, fit_params,
                         save_booster, saved_params, stopping_rows, supplemental_weights, training_weights)
from models.split import NotFittable, fit_metadata, location_folds

PROPOSERS_FILE = "proposers.npz"
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
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, balanced: bool, weight: np.ndarray | None = None
            ) -> "Proposer":
        """Classes are codes 0..n_classes-1; classes absent from `y` score LOG_FLOOR. `balanced` gives every
        class the same prior, so rare classes reach the candidate list on their evidence alone. `weight` (per
        row; None: all 1) weighs the class means and the within-class covariance (the supplemental rows')."""
        with np.errstate(all="ignore"):
            medians = np.nan_to_num(np.nanmedian(x, axis=0)).astype(np.float32)
        filled = np.where(np.isnan(x), medians, x).astype(np.float64)
        means, scales = filled.mean(axis=0), filled.std(axis=0)
        scales[scales == 0] = 1.0
        z = (filled - means) / scales
        row_weight = np.ones(len(y)) if weight is None else weight
        counts = np.bincount(y, weights=row_weight, minlength=n_classes)
        present = np.flatnonzero(counts)
        onehot = sparse.csr_matrix((row_weight, (y, np.arange(len(y)))), shape=(n_classes, len(y)))
        class_means = (onehot @ z)[present] / counts[present, None]
        within = z - class_means[np.searchsorted(present, y)]
        if weight is not None:  # rows scaled by sqrt(weight / mean weight): the weighted covariance
            within *= np.sqrt(weight / weight.mean())[:, None]
        covariance, _ = ledoit_wolf(within, assume_centered=True)
        coef = np.zeros((n_classes, x.shape[1]), np.float32)
        intercept = np.full(n_classes, -np.inf, np.float32)  # never seen: LOG_FLOOR after the softmax
        prior = np.full(len(present), 1 / len(present)) if balanced else counts[present] / counts.sum()
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
        return np.maximum(log_softmax(z, axis=1), LOG_FLOOR).astype(np.float32)


def proposer_columns(columns: list[str]) -> dict[str, list[int]]:
    """The proposers a model keeps: `all` columns, and one per feature family (column prefix before `__`)
    when there are several, so a candidate carries each family's evidence for it, not just the sum."""
    families: dict[str, list[int]] = {}
    for j, c in enumerate(columns):
        families.setdefault(str(c).split("__")[0], []).append(j)
    return {"all": list(range(len(columns))), **(families if len(families) > 1 else {})}


def candidates(log_proba: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) class codes, likeliest first (ties by code, so the order is deterministic)."""
    k = min(k, log_proba.shape[1])
    return np.argsort(-log_proba, axis=1, kind="stable")[:, :k]


@dataclass
class ClassEvidence:
    """What the re-ranker knows about each class beyond the row, fitted on some labelled rows: the proposers
    and, per class, its log frequency and the share of those rows' cameras that saw it. Shares, not counts:
    training pairs take theirs from the other location folds (fewer cameras) and serving from all training
    cameras, and a count would be larger when serving than anything the booster saw. Supplemental rows count
    in the frequency (at their weight), never as a camera."""
    proposers: dict[str, Proposer]
    columns: dict[str, list[int]]
    log_prior: np.ndarray      # (classes,)
    location_share: np.ndarray  # (classes,)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, groups: np.ndarray, columns: dict[str, list[int]], n_classes: int,
            balanced: bool, weight: np.ndarray | None = None, supplemental: np.ndarray | None = None
            ) -> "ClassEvidence":
        counts = np.bincount(y, weights=weight, minlength=n_classes)
        freq = counts / max(counts.sum(), 1)
        camera = np.ones(len(y), bool) if supplemental is None else ~supplemental
        seen = pd.DataFrame({"y": y[camera], "g": groups[camera]}).drop_duplicates()
        share = np.bincount(seen["y"].to_numpy(), minlength=n_classes) / max(seen["g"].nunique(), 1)
        return cls({name: Proposer.fit(x[:, cols], y, n_classes, balanced, weight) for name, cols in columns.items()},
                   columns, np.log(np.maximum(freq, 1e-9)).astype(np.float32), share.astype(np.float32))

    def names(self) -> list[str]:
        """The pair columns `score` adds, one family (`candidate__`) in the importance plot."""
        return (["candidate__class", "candidate__rank", "candidate__gap", "candidate__class_log_prior",
                 "candidate__class_location_share"] + [f"candidate__{name}_log_proba" for name in self.proposers])

    def score(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(candidates (rows, k), their evidence (rows, k, len(names())))."""
        log_proba = {name: p.log_proba(x[:, self.columns[name]]) for name, p in self.proposers.items()}
        seen = np.isfinite(self.proposers["all"].intercept)  # a seen class floored at LOG_FLOOR still goes first
        cand = candidates(np.where(seen, log_proba["all"], -np.inf), k)
        top = np.take_along_axis(log_proba["all"], cand, axis=1)
        columns = [cand, np.broadcast_to(np.arange(cand.shape[1]), cand.shape), top[:, :1] - top,
                   self.log_prior[cand], self.location_share[cand]]
        columns += [np.take_along_axis(lp, cand, axis=1) for lp in log_proba.values()]
        return cand, np.stack(columns, axis=2).astype(np.float32)


def out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, columns: dict[str, list[int]], n_folds: int,
                n_classes: int, balanced: bool, k: int, weight: np.ndarray | None = None,
                supplemental: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, evidence) of each row from class evidence fitted on the other location folds only (a
    supplemental row's from the folds its share of those rows is not in). A candidate is always a class the
    fold's rows hold, as every served candidate is a training class: with fewer than `k` classes in some fold's
    rows, every row gets that fewer (padding with classes the fold never saw taught the booster that a class
    nobody saw is the right one whenever classes live at one camera each)."""
    groups, supplemental = fit_metadata(groups, supplemental, len(y))
    folds = location_folds(groups, n_folds, supplemental, spread_supplemental=True)
    k = min([k] + [len(np.unique(y[fit])) for fit, _ in folds])
    if k < 2:
        raise NotFittable("a location fold's other rows hold a single class: no candidate to rank it against")
    cand = np.empty((len(y), k), np.int64)
    evidence = None
    for fit, val in folds:
        ev = ClassEvidence.fit(x[fit], y[fit], groups[fit], columns, n_classes, balanced,
                               None if weight is None else weight[fit], supplemental[fit])
        c, e = ev.score(x[val], k)
        if evidence is None:
            evidence = np.empty((len(y), *e.shape[1:]), e.dtype)
        cand[val], evidence[val] = c, e
    return cand, evidence


def pairs(x: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """(rows x k, features + evidence columns) float32: each row repeated once per candidate, then the
    candidate's evidence."""
    n, k, m = evidence.shape
    out = np.empty((n, k, x.shape[1] + m), np.float32)
    out[:, :, :x.shape[1]] = x[:, None, :]  # broadcast: no (rows x k) temporary copy
    out[:, :, x.shape[1]:] = evidence
    return out.reshape(n * k, -1)


def candidate_log_loss(k: int):
    """LightGBM eval: the multiclass log-loss of the re-ranked probabilities (each row's pair scores
    normalised over its `k` candidates), what the model is judged on, rather than the pairs' binary loss,
    weighted as the rows are in training. A row whose class is not among its candidates scores
    log(LOSS_FLOOR): the proposer's misses count."""
    def evaluate(preds: np.ndarray, dataset: lgb.Dataset) -> tuple[str, float, bool]:
        scores, truth = preds.reshape(-1, k), dataset.get_label().reshape(-1, k)
        p_true = (scores * truth).sum(axis=1) / scores.sum(axis=1)
        weight = dataset.get_weight()
        weight = None if weight is None else weight.reshape(-1, k)[:, 0]
        return "candidate_log_loss", float(np.average(-np.log(np.maximum(p_true, LOSS_FLOOR)), weights=weight)), False
    return evaluate


@dataclass
class PairData:
    """A re-ranker's training rows, built once per fold (it does not depend on the booster params): features,
    class codes, out-of-fold candidates and evidence, weights, early-stopping rows, and the class evidence
    fitted on all the rows, which serves."""
    x: np.ndarray
    codes: np.ndarray
    classes: list[int]
    columns: list[str]
    cand: np.ndarray
    evidence: np.ndarray
    weight: np.ndarray | None
    stop: np.ndarray
    serving: ClassEvidence

    def dataset(self, params: dict) -> lgb.Dataset:
        k = self.cand.shape[1]
        label = (self.cand == self.codes[:, None]).ravel().astype(np.float32)
        return lgb.Dataset(pairs(self.x, self.evidence), label=label,
                           weight=None if self.weight is None else np.repeat(self.weight, k),
                           feature_name=self.columns + self.serving.names(),
                           categorical_feature=["candidate__class"], params=params, free_raw_data=True)


class Reranker(ProbabilityClassifier):
    """Proposers + one binary LightGBM over (row, candidate) pairs, as a scikit-learn classifier:
    `fit(X, y, groups, supplemental)` builds and names its own pairs (evidence out of location fold), stops early on its
    last location fold and refits on all rows (models.lgbm.boost); `predict_proba` gives (rows, classes_)."""
    NAME, STOPPING_METRIC = "reranker", "candidate_log_loss"

    def __init__(self, booster_params: dict | None = None, candidates: int = 10, class_weight: str = "balanced",
                 cv_folds: int = 3, max_rounds: int = 400, early_stopping_rounds: int = 30, seed: int = 0,
                 supplemental_weight: float = 1.0, num_threads: int = 0):
        self.booster_params, self.candidates, self.class_weight, self.cv_folds = (booster_params, candidates,
                                                                                  class_weight, cv_folds)
        self.max_rounds, self.early_stopping_rounds, self.seed = max_rounds, early_stopping_rounds, seed
        self.supplemental_weight, self.num_threads = supplemental_weight, num_threads

    def prepare(self, X: pd.DataFrame, y, groups: np.ndarray | None = None,
                supplemental: np.ndarray | None = None) -> PairData:
        """Everything a fit needs but the booster (tuning builds it once per fold and reuses it per trial)."""
        classes, codes = class_codes(y)
        groups, photo = fit_metadata(groups, supplemental, len(codes))
        x, columns = X.to_numpy(np.float32), proposer_columns(list(X.columns))
        balanced = self.class_weight == "balanced"
        k, extra = min(self.candidates, len(classes)), supplemental_weights(photo, self.supplemental_weight)
        cand, evidence = out_of_fold(x, codes, groups, columns, self.cv_folds, len(classes), balanced, k, extra,
                                     photo)
        if not (cand == codes[:, None]).any():
            raise NotFittable(f"no row's class is among its {cand.shape[1]} out-of-fold candidates (each class's "
                              f"rows are in one location fold, so no other fold proposes it): no right candidate "
                              f"to learn from")
        return PairData(x, codes, classes, list(X.columns), cand, evidence,
                        training_weights(codes, self.class_weight, photo, self.supplemental_weight),
                        stopping_rows(groups, self.cv_folds, photo),
                        ClassEvidence.fit(x, codes, groups, columns, len(classes), balanced, extra, photo))

    def fit_prepared(self, data: PairData, callbacks: tuple = ()) -> "Reranker":
        params = fit_params(self, objective="binary")
        k = data.cand.shape[1]
        self.booster_, self.rounds_ = boost(params, data.dataset(params), np.repeat(data.stop, k), self.max_rounds,
                                            self.early_stopping_rounds, candidate_log_loss(k), callbacks)
        self.classes_, self.feature_names_in_, self.evidence_ = np.asarray(data.classes), data.columns, data.serving
        self.candidates_ = k
        return self

    def fit(self, X: pd.DataFrame, y, groups: np.ndarray | None = None, supplemental: np.ndarray | None = None
            ) -> "Reranker":
        """`groups`: each row's camera location (none: one location, its rows split); `supplemental`: the rows
        that are photos, not camera frames (models.split.fit_metadata). scikit-learn routes both as metadata."""
        return self.fit_prepared(self.prepare(X, y, groups, supplemental))

    def serving_pairs(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, candidates, evidence) of rows to predict: the class evidence fitted on all training rows, as
        many candidates as the training pairs had."""
        x = X[self.feature_names_in_].to_numpy(np.float32)
        return (x, *self.evidence_.score(x, self.candidates_))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities: the pair scores of each row's candidates, normalised over them;
        classes outside a row's candidates get 0."""
        x, cand, evidence = self.serving_pairs(X)
        score = self.booster_.predict(pairs(x, evidence)).reshape(cand.shape)
        proba = np.zeros((len(x), len(self.classes_)))
        np.put_along_axis(proba, cand, score / score.sum(axis=1, keepdims=True), axis=1)
        return proba

    def candidate_recall(self, X: pd.DataFrame, y) -> float:
        """Share of rows whose true class is among their candidates: the most the re-ranker can get right."""
        _, cand, _ = self.serving_pairs(X)
        codes = pd.Index(self.classes_).get_indexer(np.asarray(y))
        return float((cand == codes[:, None]).any(axis=1).mean())

    def save(self, folder: str | Path) -> None:
        """`folder`/booster.txt (LightGBM's text format), model.json, proposers.npz (arrays)."""
        ev = self.evidence_
        arrays = {"log_prior": ev.log_prior, "location_share": ev.location_share}
        for name, p in ev.proposers.items():
            arrays.update({f"{name}/{key}": getattr(p, key) for key in PROPOSER_ARRAYS})
        Path(folder).mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(folder) / PROPOSERS_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        save_booster(self.booster_, folder, {"model": self.NAME, "params": saved_params(self),
                                             "classes": self.classes_.tolist(), "columns": self.feature_names_in_,
                                             "rounds": self.rounds_, "candidates_fitted": self.candidates_,
                                             "proposers": list(ev.columns.items())})  # a list: keeps the order

    @classmethod
    def load(cls, folder: str | Path) -> "Reranker":
        meta = json.loads((Path(folder) / META_FILE).read_text())
        columns = dict(meta["proposers"])
        with np.load(Path(folder) / PROPOSERS_FILE, allow_pickle=False) as a:
            proposers = {name: Proposer(*(a[f"{name}/{key}"] for key in PROPOSER_ARRAYS)) for name in columns}
            evidence = ClassEvidence(proposers, columns, a["log_prior"], a["location_share"])
        model = cls(**meta["params"])
        model.booster_ = lgb.Booster(model_file=str(Path(folder) / BOOSTER_FILE))
        model.classes_, model.feature_names_in_ = np.asarray(meta["classes"]), meta["columns"]
        model.evidence_, model.rounds_, model.candidates_ = evidence, meta["rounds"], meta["candidates_fitted"]
        return model
