"""DVC stage `predict` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from infra.artifacts import REPORTS, FEATURE_TABLE, FINAL_MODEL, FINAL_PCA, SPLIT_FILE, table
from infra.atomic import write_text
from infra.blas import one_blas_thread
from models import registry, sequence_rows
from models.metrics import smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile

log = logging.getLogger("stages.predict")


@one_blas_thread()
def run(params: dict) -> None:
    """Kaggle submission: one row per test image id, in the order of the test information file. Under
    split.scheme wilds (split.json says which scheme train fitted the final model under) the same file for
    the images of WILDS's OOD test split, which that model never saw; under the location scheme the unlabelled
    test images, of which a WILDS copy has none (its every split is labelled, and the final model trained on
    them): the file then has its header only."""
    images, scheme = table("images"), json.loads(SPLIT_FILE.read_text())["scheme"]
    test = images[images["wilds_split"] == "test"] if scheme == "wilds" else images[images["split"] == "test"]
    if test.empty:
        log.warning("predict: no unlabelled test image under split.scheme %s: the submission has no row", scheme)
        write_text(pd.DataFrame(columns=["Id", "Category"]).to_csv(index=False), REPORTS / "submission.csv")
        return
    unit, seqs = params["train"]["rows"], test["seq_id"].to_numpy()
    features = EmbeddingPCA.load(FINAL_PCA).transform_file(FeatureFile(FEATURE_TABLE), test.index)
    features = sequence_rows.to_rows(features, seqs, unit)
    model = registry.load(FINAL_MODEL)
    proba = sequence_rows.to_images(model.predict_proba(features), features.index, seqs, unit)
    if params["predictions"]["sequence_smoothing"]:
        proba = smooth_by_sequence(proba, seqs)
    submission = pd.DataFrame({"Id": test.index, "Category": np.asarray(model.classes_)[proba.argmax(axis=1)]})
    write_text(submission.to_csv(index=False), REPORTS / "submission.csv")
    log.info("predict: %d test images", len(submission))
