"""Benchmark: Optuna tuning of the re-ranker with and without pruning, same trial budget, data and seed.

Run by hand after `make repro` (it reads the pipeline's feature table and labels):
`.venv/bin/python benchmarks/tuning.py [--trials 30]`. Prints the wall time and the best
cross-validated log-loss of each, and their ratio. Studies are in memory: nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import registry  # noqa: E402
from models.split import holdout_locations  # noqa: E402
from models.tune import tune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    images = pd.read_parquet(ROOT / "artifacts/tables/images.parquet")
    labels = pd.read_parquet(ROOT / "artifacts/tables/labels.parquet")["category_id"]
    features = pd.read_parquet(ROOT / "artifacts/features/feature_table.parquet").loc[labels.index]
    locations = images.loc[labels.index, "location"]
    held = holdout_locations(locations, params["split"]["holdout_fraction"], params["split"]["seed"])
    fit = ~locations.isin(held)
    classes = sorted(int(c) for c in labels[fit].unique())
    cfg = params["train"]
    model = registry.build("reranker", cfg, threads=params["execution"]["threads"])
    results = {}
    for pruning in (False, True):
        started = time.perf_counter()
        study = tune(model, features[fit], labels[fit].to_numpy(), locations[fit].to_numpy(), cfg["search_space"],
                     dict(cfg["tune"], n_trials=args.trials, timeout_s=None, storage=None, pruning=pruning),
                     cfg["seed"]).study
        pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        results[pruning] = (time.perf_counter() - started, study.best_value, pruned)
    print(f"{fit.sum()} images x {features.shape[1]} features, {len(classes)} classes, {args.trials} trials, "
          f"{cfg['cv_folds']} location-grouped folds")
    for pruning, (seconds, best, pruned) in results.items():
        print(f"{'pruned  ' if pruning else 'unpruned'}: {seconds:7.1f} s  best CV log-loss {best:.4f}  "
              f"({pruned} trials pruned)")
    ratio = results[True][0] / results[False][0]
    print(f"pruned time / unpruned time: {ratio:.2f}; best log-loss difference: "
          f"{results[True][1] - results[False][1]:+.4f}")


if __name__ == "__main__":
    main()
