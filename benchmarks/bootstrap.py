"""Benchmark: the location bootstrap of reported metrics at the WILDS OOD test shape.

Run by hand: `.venv/bin/python benchmarks/bootstrap.py [--replicates 1000] [--models 20]`. 42,791 images of 48
cameras and 182 classes (iWildCam2020-WILDS's OOD test), predictions of `--models` models. Prints the seconds
of models.bootstrap.location_intervals for all models and, as the reference in the same run, a per-replicate
loop with scikit-learn's accuracy_score and f1_score(labels=unique(y_true)) on a few replicates (scaled to
the same count), and checks that both give the same replicate values.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bootstrap import counts, location_intervals, location_weights, replicate_scores  # noqa: E402

ROWS, CAMERAS, CLASSES = 42_791, 48, 182


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--reference-replicates", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    locations = rng.integers(0, CAMERAS, ROWS)
    y = (rng.zipf(1.6, ROWS) % CLASSES) * 3  # a long tail of sparse category ids
    predictions = {f"model_{k}": np.where(rng.random(ROWS) < 0.6, y, rng.choice(np.unique(y), ROWS))
                   for k in range(args.models)}
    started = time.perf_counter()
    location_intervals(y, predictions, locations, "model_0", args.replicates, seed=0)
    ours = time.perf_counter() - started

    codes, weights = location_weights(locations, args.reference_replicates, seed=1)
    classes = pd.Index(np.unique(np.concatenate([y, predictions["model_0"]])))
    vectorised = replicate_scores(counts(y, predictions["model_0"], codes, weights.shape[1], classes), weights)
    started = time.perf_counter()
    for r in range(args.reference_replicates):
        rows = np.concatenate([np.flatnonzero(codes == loc) for loc in np.repeat(np.arange(weights.shape[1]),
                                                                                  weights[r].astype(int))])
        truth, guess = y[rows], predictions["model_0"][rows]
        accuracy = accuracy_score(truth, guess)
        macro_f1 = f1_score(truth, guess, labels=np.unique(truth), average="macro", zero_division=0)
        assert np.isclose(accuracy, vectorised["accuracy"][r]) and np.isclose(macro_f1, vectorised["macro_f1"][r])
    naive = (time.perf_counter() - started) / args.reference_replicates * args.replicates * args.models
    print(f"bootstrap: {args.replicates} replicates x {args.models} models at {ROWS:,} rows, {CAMERAS} cameras, "
          f"{len(np.unique(y))} classes: {ours:.2f} s (scikit-learn per replicate, scaled from "
          f"{args.reference_replicates} replicates of one model: {naive:.0f} s, {naive / ours:.0f}x); replicate "
          f"values equal scikit-learn's")


if __name__ == "__main__":
    main()
