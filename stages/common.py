"""What the stages share: where their outputs live, and reading the typed tables the load stage wrote."""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
from joblib import parallel_config

from data import QualityReport
from infra.atomic import write_json

log = logging.getLogger("stages.compute")

SAMPLE_DIR = Path("sample_data")
TABLES = Path("artifacts/tables")
FEATURES = Path("artifacts/features")
MODELS = Path("artifacts/models")
REPORTS = Path("reports")
QUALITY = REPORTS / "quality"
FAMILIES = ("detector_stats", "sequence_timing", "landsat_summary", "image_stats", "embeddings")
CACHE = Path("artifacts/cache")
EMBEDDINGS = FEATURES / "embeddings"  # one <family>.parquet per backbone (features.backbones.family_name)
WEIGHTS = Path("weights")  # downloaded backbone weights: a dependency of the embeddings stage
# under data.root, listed by `inventory` instead of hashed by DVC: the image and Landsat folders, and the metadata
# (a stage reading it depends on the table) of both layouts (Kaggle: metadata/; WILDS: the two csv files)
DATA_FOLDERS = ("train", "test", "iwildcam_rs_npy", "metadata", "metadata.csv", "categories.csv")
FILES_TABLE = TABLES / "files.parquet"
FEATURE_TABLE = FEATURES / "feature_table.parquet"
USABLE_PIXELS = FEATURES / "usable_pixels.parquet"  # per image: whether its pixels were read (join)
FINAL_MODEL = MODELS / "final"  # the chosen model fitted on all train locations: booster.txt, model.json, ...
HOLDOUT_PCA = MODELS / "holdout_embedding_pca.npz"
FINAL_PCA = MODELS / "final_embedding_pca.npz"
SPLIT_FILE = MODELS / "split.json"
BEST_PARAMS = MODELS / "best_params.json"
OPTUNA = Path("artifacts/optuna")  # the default study storage: a persistent DVC output of train
PLOTS = REPORTS / "plots"
FIGURES = REPORTS / "figures"


def table(name: str) -> pd.DataFrame:
    return pd.read_parquet(TABLES / f"{name}.parquet")


def write_quality(stage: str, report: QualityReport) -> None:
    report.log_summary(stage)
    write_json(report.to_dict(), QUALITY / f"{stage}.json")


def labelled_train() -> tuple[pd.Series, pd.DataFrame]:
    """Labels and image rows (location, seq_id, whether its pixels are `usable`) of the labelled train images.
    Their features are read from the feature table a block at a time (models.reduce.FeatureFile): at full
    scale it is 4.5 GB."""
    images, labels = table("images"), table("labels")["category_id"]
    ids = labels.index.intersection(images.index[images["split"] == "train"])
    rows = images.loc[ids].join(pd.read_parquet(USABLE_PIXELS)["usable"])
    return labels.loc[ids], rows


@contextmanager
def compute_backend(compute: dict):
    """Where the per-image and per-site work runs (params.yaml's execution section): `local` (this process
    and its joblib workers) or `dask` (joblib's Dask backend on the scheduler at `address`, or on a loopback
    LocalCluster of `workers` processes when it is empty). Yields the Dask client, or None."""
    if compute["backend"] == "local":
        yield None
        return
    if compute["backend"] != "dask":
        raise SystemExit(f"execution.backend must be local or dask, not {compute['backend']!r}")
    from dask.distributed import Client, LocalCluster
    with ExitStack() as stack:
        if compute["address"]:
            client = stack.enter_context(Client(compute["address"]))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=compute["workers"], threads_per_worker=compute["threads_per_worker"], processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0"))
            client = stack.enter_context(Client(cluster))
        log.info("compute: Dask scheduler %s with %d workers, dashboard %s", client.scheduler.address,
                 len(client.scheduler_info()["workers"]), client.dashboard_link)
        stack.enter_context(parallel_config(backend="dask"))
        yield client
