"""Benchmark: do the boosting rounds a fit picks transfer to its refit on all rows?

Each model fit stops early on its own last location fold and refits on all its rows for the stopped round
count scaled by all rows / fitted rows (models.lgbm.boost). Run by hand after `make repro`:
`.venv/bin/python benchmarks/rounds_transfer.py [--seeds 7,1,2,3]`. For each split seed it fits each tuned
model family (artifacts/models/best_params.json) on the fitting cameras, then trains the same booster on the
same rows past that count while scoring every round on the held-out cameras (the loss tuning minimises:
class-weighted log-loss over the candidates, or multiclass log-loss), and prints the held-out loss at the
scaled count, at the unscaled (stopped) count and at the best round in hindsight.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.artifacts import BEST_PARAMS, FEATURE_TABLE  # noqa: E402
from models import registry  # noqa: E402
from models.labelled import labelled_train  # noqa: E402
from models.lgbm import class_weights  # noqa: E402
from models.reduce import EmbeddingPCA, FeatureFile  # noqa: E402
from models.rerank import PairData, candidate_log_loss, pairs  # noqa: E402
from models.split import holdout_locations  # noqa: E402


def held_out_curve(model, data, x_val, y_val, params: dict, max_rounds: int) -> list[float]:
    """The held-out loss after each round of a booster trained on all of `data` (what the refit trains)."""
    if isinstance(data, PairData):
        _, cand, evidence = model.serving_pairs(x_val)
        codes = np.asarray(model.classes_).searchsorted(y_val)
        known = np.isin(y_val, model.classes_)
        truth = (cand == np.where(known, codes, -1)[:, None]).ravel().astype(np.float32)
        weight = class_weights(y_val, model.class_weight)
        train = data.dataset(params)
        valid = lgb.Dataset(pairs(x_val.to_numpy(np.float32), evidence), label=truth, reference=train,
                            weight=None if weight is None else np.repeat(weight, cand.shape[1]))
        feval, metric = candidate_log_loss(cand.shape[1]), "candidate_log_loss"
        params = dict(params, metric="None")
    else:
        known = np.isin(y_val, model.classes_)
        train = lgb.Dataset(data.x, label=data.codes, weight=data.weight, params=params)
        valid = lgb.Dataset(x_val.to_numpy(np.float32)[known], label=np.searchsorted(model.classes_, y_val[known]),
                            weight=class_weights(y_val[known], model.class_weight), reference=train)
        feval, metric = None, "multi_logloss"
    record: dict = {}
    lgb.train(params, train, num_boost_round=max_rounds, valid_sets=[valid], valid_names=["held"], feval=feval,
              callbacks=[lgb.record_evaluation(record)])
    return record["held"][metric]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="7")
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg, threads = params["train"], params["execution"]["threads"]
    tuned = json.loads(BEST_PARAMS.read_text())["models"]
    labels, rows = labelled_train()
    print("seed  model                 rounds: stopped  scaled  best | held-out loss: stopped  scaled  best")
    for seed in (int(s) for s in args.seeds.split(",")):
        held = rows["location"].isin(holdout_locations(rows["location"], params["split"]["holdout_fraction"], seed))
        pca, x_fit = EmbeddingPCA.fit_transform_file(FeatureFile(FEATURE_TABLE), labels.index[~held],
                                                     cfg["pca_components"], cfg["seed"])
        x_val = pca.transform_file(FeatureFile(FEATURE_TABLE), labels.index[held])
        for name, study in tuned.items():
            if "params" not in study:
                continue
            model = registry.build(name, cfg, study["params"], threads)
            data = model.prepare(x_fit, labels[~held].to_numpy(), rows.loc[~held, "location"].to_numpy())
            model.fit_prepared(data)
            stopped = round(model.rounds_ * (~data.stop).sum() / len(data.stop))
            fixed = {k: v for k, v in model.booster_.params.items() if k not in ("metric", "num_iterations")}
            curve = held_out_curve(model, data, x_val, labels[held].to_numpy(), fixed, 2 * model.rounds_ + 50)
            best = int(np.argmin(curve)) + 1
            print(f"{seed:4d}  {name:20s} {stopped:15d} {model.rounds_:7d} {best:5d} | "
                  f"{curve[stopped - 1]:22.4f} {curve[model.rounds_ - 1]:7.4f} {curve[best - 1]:.4f}")


if __name__ == "__main__":
    main()
