"""Validation that holds out whole camera locations: test cameras are unseen, so a random split lies."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold

log = logging.getLogger(__name__)


def holdout_locations(locations: pd.Series, fraction: float, seed: int) -> list[int]:
    """Locations to hold out, drawn as whole groups from the labelled train images."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(locations)), groups=locations.to_numpy()))
    return sorted(int(v) for v in set(locations.iloc[held]))


def location_folds(groups: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, validation rows) of `n_folds` folds, each location's rows in one validation fold only:
    tuning measures what the held-out evaluation measures, unseen cameras. With fewer locations than folds
    (a nested fold of a small dataset), one fold per location; with a single location its rows are split
    (KFold), the only out-of-sample there is, and a warning says so."""
    n_groups = len(np.unique(groups))
    if n_groups >= 2:
        return list(GroupKFold(n_splits=min(n_folds, n_groups)).split(np.zeros(len(groups)), groups=groups))
    log.warning("location folds: only one location among %d rows: splitting its rows instead", len(groups))
    return list(KFold(n_splits=min(n_folds, len(groups))).split(np.zeros(len(groups))))
