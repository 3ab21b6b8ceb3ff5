"""DVC stage `predict` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from data.camtrap_dp import TABLES, read_descriptor, read_table
from infra.artifacts import CALIBRATION, FEATURE_TABLE, FINAL_MODEL, FINAL_PCA, REPORTS, SPLIT_FILE, table
from infra.atomic import write_text
from infra.blas import one_blas_thread
from models import registry, sequence_rows
from models.calibration import load_temperature
from models.camtrap_export import machine_observations, write_package
from models.metrics import smooth_by_sequence
from models.reduce import EmbeddingPCA, FeatureFile

log = logging.getLogger("stages.predict")
PREDICTIONS = ["Id", "Category", "probability", "review"]  # reports/predictions.csv: the submission, and how sure
EXPORT = REPORTS / "camtrap_dp"


@one_blas_thread()
def run(params: dict) -> None:
    """Kaggle submission: one row per test image id, in the order of the test information file. Under
    split.scheme wilds (split.json says which scheme train fitted the final model under) the same file for
    the images of WILDS's OOD test split, which that model never saw; under the location scheme the unlabelled
    test images, of which a WILDS copy has none (its every split is labelled, and the final model trained on
    them): the file then has its header only. reports/predictions.csv adds each image's served top probability
    (calibrated where calibration.json says so: models.calibration) and whether it is below
    predictions.review_below, for a person to review; reports/camtrap_dp/ the Camtrap DP export (export)."""
    images, scheme = table("images"), json.loads(SPLIT_FILE.read_text())["scheme"]
    test = images[images["wilds_split"] == "test"] if scheme == "wilds" else images[images["split"] == "test"]
    if test.empty:
        log.warning("predict: no unlabelled test image under split.scheme %s: the submission has no row", scheme)
        write_text(pd.DataFrame(columns=["Id", "Category"]).to_csv(index=False), REPORTS / "submission.csv")
        write_text(pd.DataFrame(columns=PREDICTIONS).to_csv(index=False), REPORTS / "predictions.csv")
        export(params["data"], test, np.array([], np.int64), np.array([]), "")
        return
    unit, seqs = params["train"]["rows"], test["seq_id"].to_numpy()
    features = EmbeddingPCA.load(FINAL_PCA).transform_file(FeatureFile(FEATURE_TABLE), test.index)
    features = sequence_rows.to_rows(features, seqs, unit)
    model = registry.load(FINAL_MODEL)
    proba = sequence_rows.to_images(model.predict_proba(features), features.index, seqs, unit)
    if params["predictions"]["sequence_smoothing"]:
        proba = smooth_by_sequence(proba, seqs)
    temperature = load_temperature(json.loads(CALIBRATION.read_text()))
    if temperature is not None:
        proba = temperature.apply(proba)
    top = proba.argmax(axis=1)
    submission = pd.DataFrame({"Id": test.index, "Category": np.asarray(model.classes_)[top]})
    write_text(submission.to_csv(index=False), REPORTS / "submission.csv")
    probability = proba[np.arange(len(top)), top]
    review = probability < params["predictions"]["review_below"]
    write_text(submission.assign(probability=probability.round(6), review=review).to_csv(index=False),
               REPORTS / "predictions.csv")
    log.info("predict: %d test images, %d (%.1f%%) below predictions.review_below %s for a person to review",
             len(submission), review.sum(), 100 * review.mean(), params["predictions"]["review_below"])
    export(params["data"], test, submission["Category"].to_numpy(), probability, model.NAME)


def export(data: dict, scored: pd.DataFrame, categories: np.ndarray, probability: np.ndarray, model: str) -> None:
    """reports/camtrap_dp/: under data.layout camtrap_dp, the input package with a machine observation per
    scored media and per event (data/camtrap_dp.py); the Kaggle and WILDS layouts give no coordinates for a
    deployments table, so the folder then holds the one line saying so."""
    shutil.rmtree(EXPORT, ignore_errors=True)
    root, layout = Path(data["root"]), data["layout"]
    if layout != "camtrap_dp":
        why = (f"not written: data.layout {layout} gives no deployment coordinates (iWildCam withholds them); "
               f"a Camtrap DP package in (data.layout camtrap_dp) is written back out with the model's observations")
        log.info("predict: Camtrap DP export %s", why)
        write_text(why + "\n", EXPORT / "not_written.txt")
        return
    descriptor = read_descriptor(root)
    tables = {r["name"]: read_table(root, r) for r in descriptor["resources"] if r.get("name") in TABLES}
    media = tables["media"].set_index("mediaID", drop=False).loc[scored.index]
    names = table("categories")["name"].loc[categories].to_numpy()
    detections = table("detections")
    top = detections.sort_values("conf", ascending=False).drop_duplicates("image_id").set_index("image_id")
    machine = machine_observations(media, scored["seq_id"], names, probability, top[["x", "y", "w", "h"]],
                                   f"{model} (camtrap tabular pipeline)") if len(scored) else pd.DataFrame()
    tables["observations"] = pd.concat([tables["observations"], machine], ignore_index=True)
    write_package(EXPORT, descriptor, tables)
    log.info("predict: Camtrap DP package with %d machine observations in %s", len(machine), EXPORT)
