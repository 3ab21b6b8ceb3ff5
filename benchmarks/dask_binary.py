"""Benchmark: does `lightgbm.dask` train the re-ranker's binary objective (its multiclass fit failed)?

Run by hand after `make repro` (or in a rehearsal's repo, `--repo benchmarks/out/rehearsal/repo`):
`.venv/bin/python benchmarks/dask_binary.py`. Builds the held-out model's training pairs exactly as the
re-ranker's fit does (Reranker.prepare, the tuned params from artifacts/models, the rounds its fit picks), fits them
locally with lightgbm.train and with DaskLGBMClassifier on a loopback LocalCluster (2 workers x 1 thread,
rows split into `--partitions` chunks: a binary label has both values in every chunk of any size), and
prints both times and how far apart the two models' pair scores are.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightgbm as lgb  # noqa: E402

from models import registry, sequence_rows  # noqa: E402
from models.reduce import EmbeddingPCA, FeatureFile  # noqa: E402
from models.rerank import pairs as pair_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    os.chdir(args.repo)
    import yaml
    from infra.artifacts import BEST_PARAMS, FEATURE_TABLE, HOLDOUT_PCA, SPLIT_FILE
    from models.labelled import labelled_train
    params = yaml.safe_load(Path("params.yaml").read_text())
    cfg, unit = params["train"], params["train"]["rows"]
    labels, rows = labelled_train()
    fit = ~rows["location"].isin(json.loads(SPLIT_FILE.read_text())["holdout_locations"]).to_numpy()
    seqs = rows["seq_id"].to_numpy()[fit]
    x = sequence_rows.to_rows(EmbeddingPCA.load(HOLDOUT_PCA).transform_file(FeatureFile(FEATURE_TABLE),
                                                                          labels.index[fit]), seqs, unit)
    y = sequence_rows.row_labels(labels[fit], seqs, unit)
    meta = sequence_rows.row_metadata(rows[fit].assign(photo=False), seqs, unit)
    tuned = json.loads(BEST_PARAMS.read_text())["models"]["reranker"]
    model = registry.build("reranker", cfg, tuned["params"], params["execution"]["threads"])
    data = model.prepare(x, y, **meta)
    rounds = model.fit_prepared(data).rounds_
    k = data.cand.shape[1]
    pairs, label = pair_rows(data.x, data.evidence), (data.cand == data.codes[:, None]).ravel().astype(np.float32)
    weight = None if data.weight is None else np.repeat(data.weight, k)
    lgb_params = dict(tuned["params"], objective="binary", seed=cfg["seed"], deterministic=True, force_row_wise=True,
                      verbose=-1)
    print(f"pairs: {pairs.shape[0]:,} x {pairs.shape[1]}, {rounds} rounds")

    started = time.perf_counter()
    local = lgb.train(lgb_params, lgb.Dataset(pairs, label, weight=weight, categorical_feature=[x.shape[1]]),
                      num_boost_round=rounds)
    local_s = time.perf_counter() - started
    print(f"local lightgbm.train: {local_s:.1f} s")

    import dask.array as da
    from dask.distributed import Client, LocalCluster
    from lightgbm import DaskLGBMClassifier
    chunk = -(-len(pairs) // args.partitions)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        dx, dy = da.from_array(pairs, chunks=(chunk, pairs.shape[1])), da.from_array(label, chunks=chunk)
        dw = da.from_array(weight, chunks=chunk) if weight is not None else None
        model = DaskLGBMClassifier(n_estimators=rounds, **{k: v for k, v in lgb_params.items() if k != "verbose"},
                                   num_threads=1, verbose=-1)
        started = time.perf_counter()
        try:
            model.fit(dx, dy, sample_weight=dw, categorical_feature=[x.shape[1]])
        except Exception as e:  # the result to report, whatever LightGBM raised
            print(f"lightgbm.dask: failed after {time.perf_counter() - started:.1f} s: {type(e).__name__}: {e}")
            return
        dask_s = time.perf_counter() - started
        scores = model.to_local().predict_proba(pairs)[:, 1]
    reference = local.predict(pairs)
    agree = (scores.reshape(-1, k).argmax(axis=1) == reference.reshape(-1, k).argmax(axis=1)).mean()
    print(f"lightgbm.dask ({args.partitions} partitions, 2 workers): {dask_s:.1f} s; "
          f"max |score difference| {np.abs(scores - reference).max():.4f}; same top candidate for {agree:.1%} of rows")


if __name__ == "__main__":
    main()
