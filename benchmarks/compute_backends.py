"""Benchmark: per-stage throughput with the local backend and on a Dask LocalCluster, on the sample.

Run by hand after `make repro`: `.venv/bin/python benchmarks/compute_backends.py [--images 400]`.
Times, with empty caches, image_stats, landsat_summary and embeddings (on the first `--images`
images) and an Optuna study of `--trials` trials, first locally (joblib processes, torch threads)
and then through `compute_backend` with `backend: dask` (2 loopback worker processes, 1 thread each),
and asserts both backends give the same features. On one 2-core machine Dask adds scheduling, not
cores: the point is the cost of the engine, and the same code reaching a real cluster.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import QualityReport  # noqa: E402
from features.backbones import build_backbone  # noqa: E402
from features.embeddings import compute_embeddings  # noqa: E402
from features.image_stats import image_stats  # noqa: E402
from features.landsat_summary import landsat_summary  # noqa: E402
from infra.artifacts import FEATURE_TABLE, table  # noqa: E402
from infra.compute import compute_backend  # noqa: E402
from models import registry  # noqa: E402
from models.labelled import labelled_train  # noqa: E402
from models.reduce import EmbeddingPCA, FeatureFile  # noqa: E402
from models.tune import tune  # noqa: E402

DASK = {"backend": "dask", "address": "", "workers": 2, "threads_per_worker": 1}


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def run_stages(params: dict, images: pd.DataFrame, few: pd.DataFrame, cache: Path, dask: bool) -> dict:
    detections, landsat, root = table("detections"), table("landsat_index"), params["data"]["root"]
    emb_cfg = dict(params["embeddings"], threads=1 if dask else params["embeddings"]["threads"])
    out = {}
    out["image_stats"] = timed(image_stats, images, detections, root, params["image_stats"], cache / "stats",
                               QualityReport())
    out["landsat_summary"] = timed(landsat_summary, images, landsat, params["landsat_summary"], cache / "landsat",
                                   QualityReport())
    out["embeddings"] = timed(compute_embeddings, few, detections, root, emb_cfg, partial(build_backbone, emb_cfg["backbones"][0], emb_cfg),
                              cache / "emb", QualityReport())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400, help="images for the embeddings stage")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    images = table("images")
    few = images.iloc[:args.images]
    n_sites = table("landsat_index")["site"].nunique()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["local"] = run_stages(params, images, few, Path(tmp) / "local", dask=False)
        with compute_backend(DASK):
            results["dask"] = run_stages(params, images, few, Path(tmp) / "dask", dask=True)
    pd.testing.assert_frame_equal(results["dask"]["image_stats"][0], results["local"]["image_stats"][0])
    pd.testing.assert_frame_equal(results["dask"]["landsat_summary"][0], results["local"]["landsat_summary"][0])
    for a, b in zip(results["dask"]["embeddings"][0], results["local"]["embeddings"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

    labels, rows = labelled_train()
    _, features = EmbeddingPCA.fit_transform_file(FeatureFile(FEATURE_TABLE), labels.index,
                                                  params["train"]["pca_components"], 0)
    cfg = params["train"]
    tune_cfg = dict(cfg["tune"], n_trials=args.trials, storage=None)
    y, groups = labels.to_numpy(), rows["location"].to_numpy()
    model = registry.build("reranker", cfg, threads=params["execution"]["threads"])
    _, local_tune = timed(tune, model, features, y, groups, cfg["search_space"], tune_cfg, 0)
    with compute_backend(DASK) as client:
        _, dask_tune = timed(tune, model, features, y, groups, cfg["search_space"], tune_cfg, 0, client, 1)

    units = {"image_stats": (len(images), "img"), "landsat_summary": (n_sites, "site"),
             "embeddings": (len(few), "img")}
    print(f"sample: {len(images)} images, {n_sites} Landsat sites; Dask: 2 workers x 1 thread on loopback")
    for stage, (n, unit) in units.items():
        local, dask = n / results["local"][stage][1], n / results["dask"][stage][1]
        print(f"{stage:16s} local {local:8.1f} {unit}/s   dask {dask:8.1f} {unit}/s   ratio {dask / local:4.2f}")
    print(f"{'tuning':16s} local {args.trials / local_tune * 60:8.1f} trials/min   "
          f"dask {args.trials / dask_tune * 60:8.1f} trials/min   ratio {local_tune / dask_tune:4.2f}")


if __name__ == "__main__":
    main()
