"""The embedded sample as a Camtrap DP 1.0.2 package, as a team holding its own cameras would exchange it
(Agouti, Wildlife Insights, GBIF): deployments.csv, media.csv, observations.csv and datapackage.json, the media
hard links to the sample's JPEGs, the MegaDetector file beside the package at the path data.detector_file names.

Each camera location is a deployment; its coordinates and the clock offset (+00:00) are invented (iWildCam
withholds both), and the package says so. Each sequence is an event: the labelled (train) images get one human
media-level observation each, the test images one event-level observation per sequence of type `unclassified`,
as annotation platforms write events nobody has classified yet.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from data.camtrap_dp import EMPTY
from data.coco import TEST_JSON, TRAIN_JSON
from data.megadetector import DETECTOR_JSON
from models.camtrap_export import write_package

MEDIA = "media"


def _stamp(t: pd.Series) -> pd.Series:
    return t.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def write_camtrap_dp(kaggle: str | Path, out: str | Path, seed: int) -> dict:
    """Write the Camtrap DP package of the Kaggle-layout copy at `kaggle` to `out`; return its shape. Images whose
    datetime does not parse are left out (a media needs a timestamp)."""
    kaggle, out = Path(kaggle), Path(out)
    train, test = (orjson.loads((kaggle / p).read_bytes()) for p in (TRAIN_JSON, TEST_JSON))
    images = pd.concat([pd.DataFrame.from_records(train["images"]).assign(folder="train"),
                        pd.DataFrame.from_records(test["images"]).assign(folder="test")]).set_index("id")
    images["t"] = pd.to_datetime(images["datetime"], format="ISO8601", errors="coerce")
    images = images[images["t"].notna()].sort_values(["location", "t"])
    names = {c["id"]: c["name"] for c in train["categories"]}
    label = (pd.DataFrame.from_records(train["annotations"]).drop_duplicates("image_id").set_index("image_id")
             ["category_id"].map(names).reindex(images.index))
    rng = np.random.default_rng(seed)
    locations = sorted(images["location"].unique())
    deployment = {loc: f"dep{int(loc):03d}" for loc in locations}
    at = images.groupby("location")["t"]
    deployments = pd.DataFrame({
        "deploymentID": [deployment[loc] for loc in locations], "locationID": [f"loc{int(loc)}" for loc in locations],
        "latitude": np.round(rng.uniform(-5, 5, len(locations)), 4),
        "longitude": np.round(rng.uniform(30, 40, len(locations)), 4),
        "deploymentStart": _stamp(at.min()).to_numpy(), "deploymentEnd": _stamp(at.max()).to_numpy()})
    media = pd.DataFrame({
        "mediaID": images.index, "deploymentID": images["location"].map(deployment).to_numpy(),
        "captureMethod": "activityDetection", "timestamp": _stamp(images["t"]).to_numpy(),
        "filePath": MEDIA + "/" + images["file_name"].to_numpy(), "filePublic": "false",
        "fileName": images["file_name"].to_numpy(), "fileMediatype": "image/jpeg"})
    event = images.groupby("seq_id")["t"].agg(["min", "max"])
    labelled = label.notna()
    animal = labelled & (label != EMPTY)
    on_media = pd.DataFrame({
        "observationID": "obs-" + images.index[labelled], "deploymentID": media["deploymentID"][labelled.to_numpy()],
        "mediaID": images.index[labelled], "eventID": images["seq_id"][labelled].to_numpy(),
        "eventStart": _stamp(images["t"][labelled]).to_numpy(), "eventEnd": _stamp(images["t"][labelled]).to_numpy(),
        "observationLevel": "media", "observationType": np.where(animal[labelled], "animal", "blank"),
        "scientificName": label[labelled].where(animal[labelled], "").to_numpy(),
        "count": np.where(animal[labelled], "1", ""), "classificationMethod": "human",
        "classifiedBy": "iWildCam 2020 sample (generated)"})
    unlabelled = images[~labelled].drop_duplicates("seq_id")
    on_event = pd.DataFrame({
        "observationID": "event-" + unlabelled["seq_id"].to_numpy(),
        "deploymentID": unlabelled["location"].map(deployment).to_numpy(), "mediaID": "",
        "eventID": unlabelled["seq_id"].to_numpy(),
        "eventStart": _stamp(event.loc[unlabelled["seq_id"], "min"]).to_numpy(),
        "eventEnd": _stamp(event.loc[unlabelled["seq_id"], "max"]).to_numpy(),
        "observationLevel": "event", "observationType": "unclassified"})
    (out / MEDIA).mkdir(parents=True, exist_ok=True)
    for folder, file_name in images[["folder", "file_name"]].itertuples(index=False):
        os.link(kaggle / folder / file_name, out / MEDIA / file_name)
    (out / DETECTOR_JSON).parent.mkdir(parents=True, exist_ok=True)
    os.link(kaggle / DETECTOR_JSON, out / DETECTOR_JSON)
    first, last = images["t"].min(), images["t"].max()
    lat, lon = deployments["latitude"], deployments["longitude"]
    write_package(out, {
        "name": "iwildcam-2020-sample", "created": "2026-01-01T00:00:00Z",
        "title": "The iWildCam 2020 tabular pipeline's embedded sample as a Camtrap DP package",
        "description": "Generated images of invented species. Deployment coordinates and clock offsets are "
                       "invented (iWildCam withholds them); nothing here describes real animals or places.",
        "contributors": [{"title": "camtrap tabular pipeline (sample stage)", "role": "contributor"}],
        "project": {"title": "iWildCam 2020 tabular pipeline sample", "samplingDesign": "opportunistic",
                    "captureMethod": ["activityDetection"], "individualAnimals": False,
                    "observationLevel": ["media", "event"]},
        "spatial": {"type": "Polygon", "coordinates": [[[lon.min(), lat.min()], [lon.max(), lat.min()],
                                                         [lon.max(), lat.max()], [lon.min(), lat.max()],
                                                         [lon.min(), lat.min()]]]},
        "temporal": {"start": first.strftime("%Y-%m-%d"), "end": last.strftime("%Y-%m-%d")},
        "taxonomic": [{"scientificName": n} for n in sorted(set(label.dropna()) - {EMPTY})],
    }, {"deployments": deployments, "media": media, "observations": pd.concat([on_media, on_event])})
    return {"deployments": len(deployments), "media": len(media), "labelled_media": int(labelled.sum()),
            "unclassified_events": len(on_event)}
