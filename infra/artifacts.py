"""Where the stages' outputs live, reading the typed tables the load stage wrote, and writing quality reports."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from infra.atomic import write_json

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
CALIBRATION = MODELS / "calibration.json"  # the chosen model's temperature, fitted on its tuning folds
OPTUNA = Path("artifacts/optuna")  # the default study storage: a persistent DVC output of train
PLOTS = REPORTS / "plots"
FIGURES = REPORTS / "figures"


def table(name: str) -> pd.DataFrame:
    return pd.read_parquet(TABLES / f"{name}.parquet")


def write_quality(stage: str, report) -> None:
    """Log `report` (a data.QualityReport) and write it as reports/quality/<stage>.json."""
    report.log_summary(stage)
    write_json(report.to_dict(), QUALITY / f"{stage}.json")
