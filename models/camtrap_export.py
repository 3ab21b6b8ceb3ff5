"""Camtrap DP 1.0.2 out: a package written back with the model's observations (the `predict` stage's export, and
the sample's package), in the layout data/camtrap_dp.py reads and validates.

Machine observations follow the standard's conventions for classifier output: `classificationMethod: machine`,
`classifiedBy` the model, `classificationProbability` the served probability, the detector's top box as
bboxX/Y/Width/Height (relative, top-left origin, as MegaDetector writes them) where the class is an animal, and
`observationType` blank / human / vehicle for those classes. One per scored media, and one per event.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data.camtrap_dp import ALONE, CLASS_OF_TYPE, DESCRIPTOR, TABLES, table_schema, utc
from infra.atomic import write_text

PROFILE_URL = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/camtrap-dp-profile.json"


def schema_url(name: str) -> str:
    return f"https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{name}-table-schema.json"


def table_fields(name: str) -> list[str]:
    return [f["name"] for f in table_schema(name)["fields"]]


def write_package(folder: str | Path, descriptor: dict, tables: dict[str, pd.DataFrame]) -> None:
    """A Camtrap DP 1.0.2 package in `folder`: each of the three tables as <name>.csv with its schema's columns in
    order (a column the table lacks left empty), and `descriptor` as datapackage.json naming them (its other
    resources kept where their data is inline: a file we did not write is not named), each file atomically."""
    folder = Path(folder)
    for name in TABLES:
        table = tables[name].reindex(columns=table_fields(name))
        write_text(table.to_csv(index=False, lineterminator="\n"), folder / f"{name}.csv")
    inline = [r for r in descriptor.get("resources", []) if r.get("name") not in TABLES and "data" in r]
    resources = [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
                  "mediatype": "text/csv", "encoding": "utf-8", "schema": schema_url(name)} for name in TABLES]
    write_text(json.dumps(dict(descriptor, profile=PROFILE_URL, resources=resources + inline), indent=2,
                          ensure_ascii=False) + "\n", folder / DESCRIPTOR)


TYPE_OF_CLASS = {name: kind for kind, name in CLASS_OF_TYPE.items()}  # the loader's rule reversed; others: animal


def observation_types(names: np.ndarray) -> np.ndarray:
    return pd.Series(names, dtype=object).map(TYPE_OF_CLASS).fillna("animal").to_numpy()


def machine_observations(media: pd.DataFrame, seq_id: pd.Series, names: np.ndarray, probability: np.ndarray,
                         boxes: pd.DataFrame, classified_by: str) -> pd.DataFrame:
    """Machine observations of the scored media (`media` rows, their `names` and calibrated `probability`, each
    already averaged over its sequence where the run smooths): one per media, with the detector's top box
    (`boxes`: x, y, w, h by mediaID, relative, as MegaDetector and Camtrap DP both write them) where it names an
    animal, and one per event: the class most of its media got, at the mean probability they gave it.
    classificationTimestamp is left empty: the same commit and params write the same bytes on any day."""
    kind = observation_types(names)
    event = seq_id.loc[media["mediaID"]].to_numpy()
    real = ~pd.Series(event).str.startswith(ALONE).to_numpy()
    box = boxes.reindex(media["mediaID"].to_numpy())
    animal = kind == "animal"
    on_media = pd.DataFrame({
        "observationID": media["mediaID"].to_numpy() + "-machine", "deploymentID": media["deploymentID"].to_numpy(),
        "mediaID": media["mediaID"].to_numpy(), "eventID": np.where(real, event, ""),
        "eventStart": media["timestamp"].to_numpy(), "eventEnd": media["timestamp"].to_numpy(),
        "observationLevel": "media", "observationType": kind, "scientificName": np.where(animal, names, ""),
        **{f"bbox{c}": np.where(animal, box[k].astype(float).round(4).to_numpy(), np.nan)
           for c, k in (("X", "x"), ("Y", "y"), ("Width", "w"), ("Height", "h"))},
        "classificationMethod": "machine", "classifiedBy": classified_by,
        "classificationProbability": probability.round(4)})
    frames = pd.DataFrame({"eventID": event, "deploymentID": media["deploymentID"].to_numpy(), "name": names,
                           "probability": probability, "t": utc(media["timestamp"]).to_numpy(),
                           "timestamp": media["timestamp"].to_numpy()})[real]
    # per event: the class most of its media got, at the mean probability its media gave that class
    votes = frames.groupby(["eventID", "name"], sort=True)["probability"].agg(["size", "mean"]).reset_index()
    best = votes.sort_values(["eventID", "size", "mean"], ascending=[True, False, False]).drop_duplicates("eventID")
    span = frames.sort_values("t").groupby("eventID").agg(deploymentID=("deploymentID", "first"),
                                                          eventStart=("timestamp", "first"),
                                                          eventEnd=("timestamp", "last"))
    best = best.set_index("eventID").join(span)
    kind = observation_types(best["name"].to_numpy())
    on_event = pd.DataFrame({
        "observationID": best.index + "-machine", "deploymentID": best["deploymentID"].to_numpy(), "mediaID": "",
        "eventID": best.index, "eventStart": best["eventStart"].to_numpy(), "eventEnd": best["eventEnd"].to_numpy(),
        "observationLevel": "event", "observationType": kind,
        "scientificName": np.where(kind == "animal", best["name"].to_numpy(), ""), "classificationMethod": "machine",
        "classifiedBy": classified_by, "classificationProbability": best["mean"].round(4).to_numpy()})
    return pd.concat([on_media, on_event], ignore_index=True)
