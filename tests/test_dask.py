"""The Dask backend: feature work and Optuna trials on a loopback LocalCluster give what the local
backend gives, and a worker killed mid-run is replaced and its work retried by the engine."""
import os
import signal
import threading
import time
from functools import partial

import numpy as np
import pandas as pd
import pytest
from dask.distributed import Client, LocalCluster
from joblib import parallel_config

from data import QualityReport, index_landsat
from features.backbones import build_backbone
from features.embeddings import compute_embeddings
from features.image_stats import image_stats
from features.landsat_summary import landsat_summary
from infra.compute import compute_backend
from models.tune import cross_validate, tune, tuning_folds
from tests.helpers import SPACE, TUNE, load_tables, reranker, toy

EMBED_CFG = dict(backbones=["efficientnet_lite0"], weights={}, input_size=224, import_file=None, device="cpu", threads=1,
                 decode_workers=1, batch_size=8, crops_top_k=2, crop_min_conf=0.3, crop_margin=0.15, chunk_images=8,
                 flip=False, runtime="torch", precision="fp32")
STATS_CFG = dict(short_side=32, box_min_conf=0.3, chunk_sequences=4, n_jobs=2)  # n_jobs: from execution
LANDSAT_CFG = dict(max_cloud_confidence=1, max_cirrus_confidence=1, centre_window=9, min_clear_share=0.1,
                   band_resolution=1, nearest_window_days=60, n_jobs=2)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        yield c


def tables(root):
    return (*load_tables(root), index_landsat(root, QualityReport()))


def on_dask(fn, *args):
    with parallel_config(backend="dask"):
        return fn(*args)


def test_feature_stages_on_dask_equal_local(pristine_root, tmp_path, client):
    root = pristine_root
    images, detections, landsat = tables(root)
    local = image_stats(images, detections, images.index, root, STATS_CFG, tmp_path / "l_stats", QualityReport())
    report = QualityReport()
    remote = on_dask(image_stats, images, detections, images.index, root, STATS_CFG, tmp_path / "d_stats", report)
    assert report.read["images computed"] == images["file_ok"].sum()
    pd.testing.assert_frame_equal(remote, local)

    local = landsat_summary(images, landsat, LANDSAT_CFG, tmp_path / "l_landsat", QualityReport())
    remote = on_dask(landsat_summary, images, landsat, LANDSAT_CFG, tmp_path / "d_landsat", QualityReport())
    pd.testing.assert_frame_equal(remote, local)

    few = images.iloc[:40]
    load = partial(build_backbone, "efficientnet_lite0", EMBED_CFG)
    local = compute_embeddings(few, detections, root, EMBED_CFG, load, tmp_path / "l_emb", QualityReport())
    remote = on_dask(compute_embeddings, few, detections, root, EMBED_CFG, load, tmp_path / "d_emb", QualityReport())
    for a, b in zip(remote, local):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert len(list((tmp_path / "d_emb").glob("shard-*.parquet"))) == 5  # 40 images in chunks of 8


def test_compute_backend_dispatches_joblib_work_to_dask_workers():
    from joblib import Parallel, delayed
    with compute_backend({"backend": "dask", "address": "", "workers": 2, "threads_per_worker": 1}) as c:
        workers = set(c.run(os.getpid).values())
        pids = set(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(20)))
    assert pids <= workers and os.getpid() not in pids
    with compute_backend({"backend": "local"}) as c:
        assert c is None


def test_tuning_trials_share_one_study_and_score_as_locally(client):
    x, y, groups = toy()
    tuned = tune(reranker(), x, y, groups, SPACE, dict(TUNE, n_trials=6, pruning=False), seed=0, client=client,
                 threads_per_worker=1)
    params, study = tuned.params, tuned.study
    done = [t for t in study.trials if t.value is not None]
    assert len(done) == 6 and len({tuple(sorted(t.params.items())) for t in done}) == 6
    folds = tuning_folds(reranker(), x, y, groups, 3)
    for t in done[:3]:  # the objective of given params does not depend on where it ran
        losses, _ = cross_validate(reranker(booster_params=dict(params, **t.params)), folds)
        assert np.mean(losses) == pytest.approx(t.value, rel=1e-9) and t.user_attrs["fold_losses"] == losses
    assert set(SPACE) <= set(params)


def test_a_worker_killed_mid_run_is_replaced_and_the_result_unchanged(pristine_root, tmp_path):
    root = pristine_root
    images, detections, _ = tables(root)
    images = images.iloc[:64]
    load = partial(build_backbone, "efficientnet_lite0", EMBED_CFG)
    expected = compute_embeddings(images, detections, root, EMBED_CFG, load, tmp_path / "local", QualityReport())
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        victim = list(c.run(os.getpid).values())[0]
        cache = tmp_path / "dask"

        def kill_when_work_has_started():
            deadline = time.time() + 60
            while time.time() < deadline and len(list(cache.glob("shard-*.parquet"))) < 1:
                time.sleep(0.05)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_work_has_started)
        killer.start()
        got = on_dask(compute_embeddings, images, detections, root, EMBED_CFG, load, cache, QualityReport())
        killer.join()
        assert victim not in c.run(os.getpid).values()  # the nanny started a new worker process
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
