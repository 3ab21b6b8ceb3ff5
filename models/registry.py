"""The tuned model families, built from params.yaml's train section, and loaded back by what their files say."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.lgbm import META_FILE, LightGBMMulticlass
from models.rerank import Reranker

MODELS = {m.NAME: m for m in (Reranker, LightGBMMulticlass)}


def build(name: str, settings: dict, booster_params: dict | None = None, threads: int = 0):
    """Model `name` with train's estimator `settings` and LightGBM params (train.fixed, read only when none are
    given: evaluate builds the tuned models and never reads it)."""
    model = dict(class_weight=settings["class_weight"], cv_folds=settings["cv_folds"],
                 max_rounds=settings["max_rounds"], early_stopping_rounds=settings["early_stopping_rounds"],
                 seed=settings["seed"], supplemental_weight=settings["supplemental_weight"], num_threads=threads,
                 booster_params=dict(settings["fixed"]) if booster_params is None else booster_params)
    if name == Reranker.NAME:
        model["candidates"] = settings["candidates"]
    return MODELS[name](**model)


def tuned_names(n_rows: int, n_classes: int, cap: int) -> tuple[list[str], str | None]:
    """The model families to tune on `n_rows` x `n_classes`, and why the multiclass one is left out if it is:
    it grows a tree per class per round (at iWildCam's 163k x 188 one fit takes about an hour on two cores)."""
    if n_rows * n_classes <= cap:
        return [Reranker.NAME, LightGBMMulticlass.NAME], None
    return [Reranker.NAME], (f"skipped: {n_rows:,} rows x {n_classes} classes = {n_rows * n_classes:,} > "
                             f"train.multiclass_max_row_classes ({cap:,})")


def choose(studies: dict[str, dict], scheme: str) -> tuple[str, str]:
    """(chosen model family, why) from each tuned family's chosen trial's `fold_losses` (the same location folds, or
    under `scheme` wilds the one OOD validation split). The multiclass LightGBM is the standard model; the
    re-ranker, which exists for class counts where that does not fit, is chosen over it only when its
    tuning-fold log-loss is lower by more than one standard error of the paired fold differences (with weak
    features the two tie within noise while their accuracy on unseen cameras does not); on WILDS's one
    validation split, which has no spread to weigh the difference by, when its loss there is lower."""
    if len(studies) == 1:
        (only,) = studies
        return only, "the only model tuned (the other is skipped with its reason in best_params.json)"
    difference = np.subtract(studies[Reranker.NAME]["fold_losses"], studies[LightGBMMulticlass.NAME]["fold_losses"])
    if scheme == "wilds":
        chosen = Reranker.NAME if difference[0] < 0 else LightGBMMulticlass.NAME
        return chosen, (f"re-ranker's validation log-loss minus the multiclass LightGBM's: {difference[0]:+.4f} "
                        f"on the one validation split")
    mean, error = difference.mean(), difference.std(ddof=1) / np.sqrt(len(difference))
    chosen, verdict = ((Reranker.NAME, "lower by more than") if mean + error < 0 else
                       (LightGBMMulticlass.NAME, "not lower by more than"))
    return chosen, (f"re-ranker's tuning-fold log-loss minus the multiclass LightGBM's: {mean:+.4f}, {verdict} one "
                    f"standard error ({error:.4f}) of the {len(difference)} paired fold differences")


def load(folder: str | Path):
    return MODELS[json.loads((Path(folder) / META_FILE).read_text())["model"]].load(folder)
