"""DVC stage `predict` (see dvc.yaml)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from infra.atomic import write_text
from infra.blas import one_blas_thread
from models import registry, sequence_rows
from models.metrics import smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile
from stages.common import REPORTS, FEATURE_TABLE, FINAL_MODEL, FINAL_PCA, table

log = logging.getLogger("stages.predict")


@one_blas_thread()
def run(params: dict) -> None:
    """Kaggle submission: one row per test image id, in the order of the test information file; in the WILDS
    layout (no unlabelled test images) the same file for the images of WILDS's OOD test split."""
    images = table("images")
    test = images[images["wilds_split"] == "test"] if "wilds_split" in images else images[images["split"] == "test"]
    unit, seqs = params["train"]["rows"], test["seq_id"].to_numpy()
    features = EmbeddingPCA.load(FINAL_PCA).transform_file(FeatureFile(FEATURE_TABLE), test.index)
    features = sequence_rows.to_rows(features, seqs, unit)
    model = registry.load(FINAL_MODEL)
    proba = sequence_rows.to_images(model.predict_proba(features), features.index, seqs, unit)
    if params["evaluate"]["smoothing"]:
        proba = smooth_by_sequence(proba, seqs)
    submission = pd.DataFrame({"Id": test.index, "Category": np.asarray(model.classes_)[proba.argmax(axis=1)]})
    write_text(submission.to_csv(index=False), REPORTS / "submission.csv")
    log.info("predict: %d test images", len(submission))
