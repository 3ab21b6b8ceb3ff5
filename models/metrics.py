"""Metrics people report on iWildCam: accuracy (Kaggle), macro-F1 over species present (WILDS), and more."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, log_loss,
                             precision_recall_fscore_support, recall_score)


def smooth_by_sequence(proba: np.ndarray, seq_ids: np.ndarray) -> np.ndarray:
    """Average the class probabilities over the frames of each sequence (all frames share one label)."""
    frame = pd.DataFrame(proba)
    return frame.groupby(seq_ids).transform("mean").to_numpy()


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """WILDS's `eval` (wilds/common/metrics/all_metrics.py): accuracy, and recall and F1 macro-averaged over
    the labels present in `y_true` (a predicted class absent from it costs recall, never adds a class)."""
    present = np.unique(y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
    }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[int], seq_ids: np.ndarray) -> dict:
    """Image- and sequence-level metrics of class probabilities `proba` (columns in `classes` order).

    Macro-F1 averages over the classes present in `y_true`. Log-loss is over the images whose class the
    model knows; images of classes absent from training are counted, not hidden.
    """
    classes = np.asarray(classes)
    y_pred = classes[proba.argmax(axis=1)]
    out = _scores(y_true, y_pred)
    known = np.isin(y_true, classes)
    out["unseen_class_images"] = int((~known).sum())
    out["log_loss"] = float(log_loss(y_true[known], proba[known], labels=classes)) if known.any() else None
    per_seq = pd.DataFrame({"seq": seq_ids, "y": y_true}).groupby("seq")["y"].agg(lambda s: s.mode().iloc[0])
    seq_proba = pd.DataFrame(proba).groupby(seq_ids).mean().loc[per_seq.index].to_numpy()
    out.update({f"sequence_{k}": v for k, v in _scores(per_seq.to_numpy(), classes[seq_proba.argmax(axis=1)]).items()})
    present = np.unique(y_true)
    precision, recall, _, support = precision_recall_fscore_support(y_true, y_pred, labels=present, zero_division=0)
    out["per_class"] = {str(c): {"precision": float(p), "recall": float(r), "support": int(s)}
                        for c, p, r, s in zip(present, precision, recall, support)}
    out["n_images"], out["n_sequences"], out["n_classes"] = int(len(y_true)), int(len(per_seq)), int(len(present))
    return out
