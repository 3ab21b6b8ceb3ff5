"""Validation that holds out whole camera locations: test cameras are unseen, so a random split lies."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit


def holdout_locations(locations: pd.Series, fraction: float, seed: int) -> list[int]:
    """Locations to hold out, drawn as whole groups from the labelled train images."""
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(locations)), groups=locations.to_numpy()))
    return sorted(int(v) for v in set(locations.iloc[held]))
