"""Metrics people report on iWildCam: accuracy (Kaggle) and macro-F1 over species present (WILDS)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Accuracy and macro-F1 over the classes present in `y_true` (absent classes do not dilute it)."""
    present = np.unique(y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "n_images": int(len(y_true)),
        "n_classes": int(len(present)),
    }
