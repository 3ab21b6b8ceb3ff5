"""Validation that holds out whole camera locations: test cameras are unseen, so a random split lies. Two
schemes: our own held-out train locations (`location`, any layout), or WILDS's official splits (`wilds`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold

from data.quality import DataError

log = logging.getLogger(__name__)


class NotFittable(ValueError):
    """A model that these rows give nothing to learn or to stop on (one class, a stopping fold with no class
    the fit knows): the message is the reason it is skipped with, never a traceback."""


def holdout_locations(locations: pd.Series, fraction: float, seed: int) -> list[int]:
    """Locations to hold out, drawn as whole groups from the camera locations of the labelled train images."""
    if locations.nunique() < 2:
        raise DataError(f"split.scheme location holds out whole cameras, but the labelled train images come from "
                        f"{locations.nunique()} location(s): label images of a second location, or use the WILDS "
                        f"layout's official splits")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(locations)), groups=locations.to_numpy()))
    return sorted(int(v) for v in set(locations.iloc[held]))


def fit_metadata(groups: np.ndarray | None, supplemental: np.ndarray | None, n_rows: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(location groups, supplemental mask) of `n_rows` rows as a fit receives them, with scikit-learn's
    defaults: no `groups` is one location (its rows are then split, location_folds), no `supplemental` is no
    supplemental row. A supplemental row's group is not read (NaN where the labelled rows give it); a camera
    row's must be a location."""
    supplemental = np.zeros(n_rows, bool) if supplemental is None else np.asarray(supplemental, bool)
    groups = np.zeros(n_rows) if groups is None else np.asarray(groups)
    if len(groups) != n_rows or len(supplemental) != n_rows:
        raise ValueError(f"{n_rows} rows, but {len(groups)} groups and {len(supplemental)} supplemental flags")
    if pd.isna(groups[~supplemental]).any():
        raise ValueError("a camera-trap row (supplemental False) has no location group")
    return groups, supplemental


def location_folds(groups: np.ndarray, n_folds: int, supplemental: np.ndarray | None = None,
                   spread_supplemental: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, validation rows) of `n_folds` folds, each location's rows in one validation fold only:
    tuning measures what the held-out evaluation measures, unseen cameras. With fewer locations than folds
    (a nested fold of a small dataset), one fold per location; with a single location (a fit given no
    `groups`: fit_metadata) its rows are split (KFold), the only out-of-sample there is, and a warning says so.

    The `supplemental` rows (a mask: photos, no camera) are in every fold's fit rows and in no validation rows;
    with `spread_supplemental` (out-of-fold evidence for training rows, which scores nothing) each is instead in
    the validation rows of one fold, in turn, so that it too gets evidence fitted without it."""
    groups, extra = fit_metadata(groups, supplemental, len(groups))
    camera, supplemental = np.flatnonzero(~extra), np.flatnonzero(extra)
    if len(camera) < 2:
        raise NotFittable(f"{len(camera)} camera-trap row(s): nothing to fit and validate on")
    n_groups = len(np.unique(groups[camera]))
    if n_groups >= 2:
        folds = list(GroupKFold(n_splits=min(n_folds, n_groups)).split(camera, groups=groups[camera]))
    else:
        log.warning("location folds: only one location among %d rows: splitting its rows instead", len(camera))
        folds = list(KFold(n_splits=min(n_folds, len(camera))).split(camera))
    out = []
    for k, (fit, val) in enumerate(folds):
        fit, val = camera[fit], camera[val]
        if spread_supplemental:
            mine = np.arange(len(supplemental)) % len(folds) == k
            fit, val = np.sort(np.r_[fit, supplemental[~mine]]), np.sort(np.r_[val, supplemental[mine]])
        else:
            fit = np.sort(np.r_[fit, supplemental])
        out.append((fit, val))
    return out


SCHEMES = ("location", "wilds")
WILDS_SCORED = ("test", "val", "id_test", "id_val")  # the primary split (OOD test, the leaderboard's) first


@dataclass
class Evaluation:
    """Which labelled rows the evaluated models fit on, which rows tuning scores (None: location folds of the
    fitted rows), the splits they are scored on (the first is the headline), the rows the final model, which
    predicts the submission, fits on; the labelled training images left out for want of pixels, the
    official splits not scored, with the reason, and the usable supplemental rows (in `fit` and `final` when
    they are used)."""
    fit: np.ndarray
    tuning: np.ndarray | None
    scored: dict[str, np.ndarray]
    final: np.ndarray
    without_pixels: int
    unscored: dict[str, str]
    supplemental: np.ndarray


SUPPLEMENTAL_SETTINGS = ("auto", True, False)


def uses_supplemental(setting, scheme: str) -> tuple[bool, str]:
    """(whether the fits train on the supplemental rows, why) from train.supplemental: `auto` trains on them under
    the location scheme and not under `wilds`, whose leaderboard admits no extra data in a standard entry; true
    or false either way."""
    if setting not in SUPPLEMENTAL_SETTINGS:
        raise DataError(f"params.yaml: train.supplemental must be auto, true or false, not {setting!r}")
    if setting != "auto":
        return setting, f"train.supplemental: {str(setting).lower()}"
    if scheme == "location":
        return True, "train.supplemental: auto, on under split.scheme location"
    return False, ("train.supplemental: auto, off under split.scheme wilds: its leaderboard admits no extra data "
                   "in a standard entry (set it true to train on them anyway, a non-standard row)")


REQUIRED_WILDS = ("train", "val", "test")  # fitted, tuned on, the headline: without one the scheme has no result


def evaluation_split(rows: pd.DataFrame, scheme: str, holdout: list[int] | None, supplemental: bool = False
                     ) -> Evaluation:
    """`location`: fit on the locations not in `holdout`, tune on their location folds, score the held-out
    ones, and fit the final model on all. `wilds`: fit on `train`, tune on the OOD `val` (no test split
    chooses anything), score every other split, and the final model is the one fitted on `train`.

    `rows` are the labelled train images and the supplemental photos (`photo`, no location); those whose
    pixels are not `usable` never train (fit and final), and are scored like any other. The photos join
    `fit` and `final` when `supplemental`, and are never tuned on or scored. A WILDS split the scheme needs
    with no labelled row is a DataError naming metadata.csv and the split; an empty in-distribution split is
    left unscored with the reason."""
    if scheme not in SCHEMES:
        raise DataError(f"params.yaml: split.scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if scheme == "wilds" and "wilds_split" not in rows:
        raise DataError("params.yaml: split.scheme wilds needs the WILDS layout's official splits (data.layout: "
                        "wilds); the Kaggle layout has none")
    trains = rows["usable"].to_numpy(bool)
    extra = rows["photo"].to_numpy(bool)
    if scheme == "location":
        held = rows["location"].isin(holdout).to_numpy()
        fit, tuning, scored, final, unscored = ~held & ~extra, None, {"holdout": held}, ~extra, {}
    else:
        split = rows["wilds_split"].to_numpy()
        for name in REQUIRED_WILDS:
            if not (split == name).any():
                raise DataError(f"metadata.csv: no labelled image in split {name!r}, which split.scheme wilds "
                                f"{'fits on' if name == 'train' else 'tunes on' if name == 'val' else 'reports'}: "
                                f"use split.scheme location on this copy")
        fit = final = split == "train"
        tuning = split == "val"
        scored = {s: split == s for s in WILDS_SCORED if (split == s).any()}
        unscored = {s: "no labelled image in this split of metadata.csv" for s in WILDS_SCORED if s not in scored}
    if not (fit & trains).any():
        raise DataError(f"no labelled training image has usable pixels ({int(fit.sum())} without: "
                        f"reports/quality/join.json): nothing to train on")
    added = extra & trains
    if supplemental:
        fit, final = fit | added, final | added
    return Evaluation(fit & trains, tuning, scored, final & trains, int((fit & ~trains & ~extra).sum()), unscored,
                      added)
