"""Camtrap DP 1.0.2 (TDWG's Camera Trap Data Package: datapackage.json, deployments.csv, media.csv,
observations.csv), read into the same typed tables as the Kaggle and WILDS layouts.

The package is validated offline against the profile and table schemas vendored in data/camtrap_dp_1.0.2/
(jsonschema for the descriptor, frictionless for each table): a package that breaks them stops in one line
naming the file, row and field. What a row-level check can drop without harm is a counted skip instead: a media
of a deployment the deployments table lacks, an observation of a media the media table lacks.

Media are the images (image id = mediaID; `filePath` relative to the package folder or to `data.media_root`; a URL
is never fetched: the media has no pixels, counted). Deployments are the locations. A media's sequence is the
event (observations' eventID, eventStart-eventEnd at its deployment) its timestamp falls in, else the media alone.
Labels are the human observations (machine ones are not labels, counted): `animal` names its scientificName,
`blank` the class `empty`, `human` and `vehicle` classes of those names; `unknown` and `unclassified` label
nothing. Media-level observations label their media, event-level ones every media of the event, and a media with
media-level observations takes those alone. Observations of several classes on one media: the class with the
highest total count (a blank never wins over an animal), counted. Labelled media are the training images, the rest
the test images to classify. Writing a package (the export) is models/camtrap_export.py.
"""
from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import frictionless
import numpy as np
import pandas as pd
from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from data.coco import check_files, number_frames, parse_datetimes
from data.quality import DataError, QualityReport

SCHEMAS = Path(__file__).parent / "camtrap_dp_1.0.2"
DESCRIPTOR = "datapackage.json"
TABLES = ("deployments", "media", "observations")
PROFILE_REFERENCES = {  # the profile's remote references, resolved offline
    "https://specs.frictionlessdata.io/schemas/data-package.json": SCHEMAS / "data-package.json",
    "http://json.schemastore.org/geojson.json": Path(frictionless.__file__).parent / "assets/profiles/geojson.json",
}
CLASS_OF_TYPE = {"blank": "empty", "human": "human", "vehicle": "vehicle"}  # `animal`: its scientificName
EMPTY = "empty"
FIELDS = ["rowNumber", "fieldName", "type", "note", "message"]  # of a frictionless error, for its one line
ALONE = "media:"  # the sequence id of a media in no event: this prefix and its mediaID


@cache
def _profile_validator() -> Draft4Validator:
    registry = Registry().with_resources(
        (url, Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4))
        for url, path in PROFILE_REFERENCES.items())
    return Draft4Validator(json.loads((SCHEMAS / "camtrap-dp-profile.json").read_text()), registry=registry)


def table_schema(name: str, foreign_keys: bool = False) -> dict:
    """A vendored table schema; without its foreign keys unless asked (the loader checks those itself, so that a
    row they reject is a counted skip)."""
    schema = json.loads((SCHEMAS / f"{name}-table-schema.json").read_text())
    if not foreign_keys:
        schema.pop("foreignKeys", None)
    return schema


def read_descriptor(root: Path) -> dict:
    """datapackage.json, checked against the Camtrap DP profile; each of the three tables a local CSV file."""
    path = root / DESCRIPTOR
    try:
        descriptor = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found (data.layout camtrap_dp reads a Camtrap DP package's folder)") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from e
    resources = descriptor.get("resources") if isinstance(descriptor, dict) else None
    names = [r.get("name") for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []
    for name in TABLES:
        if name not in names:
            raise DataError(f"{path}: no resource named {name!r} (resources: {', '.join(map(str, names))})")
    error = best_match(_profile_validator().iter_errors(descriptor))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 160 else \
            f"fails {error.validator} {json.dumps(error.validator_value)[:80]}"
        raise DataError(f"{path}: {where}: {message} (Camtrap DP 1.0.2 profile)")
    for name in TABLES:
        resource = resources[names.index(name)]
        if not isinstance(resource["path"], str) or "://" in resource["path"]:
            raise DataError(f"{path}: resource {name!r}: path {resource['path']!r} is not one local file (a URL is "
                            f"never fetched)")
    return descriptor


def _checked(root: Path, resource: dict, foreign_keys: bool) -> frictionless.Resource:
    """The resource's CSV as frictionless checks it against its vendored table schema; a file absent is one line."""
    name, path = resource["name"], root / resource["path"]
    if not path.is_file():
        raise DataError(f"{path}: file not found (resource {name!r} of {root / DESCRIPTOR})")
    return frictionless.Resource(name=name, path=resource["path"], basepath=str(root),
                                 schema=frictionless.Schema.from_descriptor(table_schema(name, foreign_keys)))


def _stop_at_first_error(root: Path, resource: dict, errors: list) -> None:
    """One line for a table's errors (frictionless's rowNumber, fieldName, type, note, message): the first, with how
    many there are."""
    if not errors:
        return
    row, field, kind, note, message = errors[0]
    at = ", ".join([f"row {row}"] * bool(row) + [f"field {field}"] * bool(field)) or "the table"
    raise DataError(f"{root / resource['path']}: {at}: {kind}: {note or message} ({len(errors)} error(s); Camtrap "
                    f"DP 1.0.2 {resource['name']} table schema)")


def validate_table(root: Path, resource: dict) -> None:
    """The resource's CSV against its vendored table schema (header, types, required values, enumerations,
    unique ids): the first error in one line, with how many there are."""
    _stop_at_first_error(root, resource, _checked(root, resource, False).validate().flatten(FIELDS))


def read_table(root: Path, resource: dict) -> pd.DataFrame:
    """A validated table, every value as the text the file holds ('' for an empty cell)."""
    return pd.read_csv(root / resource["path"], dtype=str, keep_default_na=False)


def utc(text: pd.Series) -> pd.Series:
    """Validated ISO 8601 timestamps with offset as UTC instants (offsets may differ between rows)."""
    return pd.to_datetime(text, format="ISO8601", utc=True)


def load_camtrap_dp(root: str | Path, report: QualityReport, valid_years: tuple[int, int],
                    media_root: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(images, labels, categories): the tables of the Kaggle layout, from a Camtrap DP package in `root`; the
    media files are under `media_root` (default: `root`); location k is the k-th deploymentID in sorted order."""
    root = Path(root)
    descriptor = read_descriptor(root)
    resources = {r["name"]: r for r in descriptor["resources"] if r.get("name") in TABLES}
    for name in TABLES:
        validate_table(root, resources[name])
    deployments, media, observations = (read_table(root, resources[name]) for name in TABLES)
    for name, table in zip(TABLES, (deployments, media, observations)):
        report.count_read(f"camtrap_dp {name}", len(table))
    media = _media_of_known_deployments(media, deployments, root / resources["media"]["path"], report)
    observations = _observations_of_known_media(observations, media, root / resources["observations"]["path"],
                                                report)
    events = _events(observations)
    seq_id = _sequences(media, events, report)
    label = _labels(observations, media, seq_id, report)
    names = sorted(set(label), key=lambda n: (n != EMPTY, n))  # empty first, as iWildCam's id 0
    categories = pd.DataFrame({"name": pd.array(names, dtype="string")},
                              index=pd.Index(np.arange(len(names), dtype=np.int64), name="id"))
    images = _images(media, seq_id, label.index, deployments, root, Path(media_root) if media_root else root,
                     root / resources["media"]["path"], report, valid_years)
    labels = pd.DataFrame({"category_id": pd.Index(names).get_indexer(label.to_numpy()).astype(np.int64)},
                          index=label.index.rename("image_id"))
    return images, labels, categories


def _media_of_known_deployments(media: pd.DataFrame, deployments: pd.DataFrame, path: Path,
                                report: QualityReport) -> pd.DataFrame:
    unknown = ~media["deploymentID"].isin(deployments["deploymentID"])
    report.skip_many("media's deploymentID not in the deployments table (media skipped)",
                     [f"{path.name}: media {m} deploymentID={d!r}" for m, d in
                      media.loc[unknown, ["mediaID", "deploymentID"]].itertuples(index=False)])
    return media.loc[~unknown]


def _observations_of_known_media(observations: pd.DataFrame, media: pd.DataFrame, path: Path,
                                 report: QualityReport) -> pd.DataFrame:
    unknown = (observations["mediaID"] != "") & ~observations["mediaID"].isin(media["mediaID"])
    report.skip_many("observation's mediaID not in the media table (observation skipped)",
                     [f"{path.name}: observation {o} mediaID={m!r}" for o, m in
                      observations.loc[unknown, ["observationID", "mediaID"]].itertuples(index=False)])
    return observations.loc[~unknown]


def _events(observations: pd.DataFrame) -> pd.DataFrame:
    """One row per eventID: its deployment and the widest start-end its observations give (UTC)."""
    rows = observations[observations["eventID"] != ""]
    return (pd.DataFrame({"eventID": rows["eventID"], "deploymentID": rows["deploymentID"],
                          "start": utc(rows["eventStart"]), "end": utc(rows["eventEnd"])})
            .groupby(["eventID", "deploymentID"], sort=True).agg(start=("start", "min"), end=("end", "max"))
            .reset_index())


def _sequences(media: pd.DataFrame, events: pd.DataFrame, report: QualityReport) -> pd.Series:
    """Each media's sequence (indexed by mediaID): the event of its deployment whose start-end holds its
    timestamp (the latest starting, where events overlap), else the media alone (counted)."""
    stamps = pd.DataFrame({"mediaID": media["mediaID"].to_numpy(), "deploymentID": media["deploymentID"].to_numpy(),
                           "t": utc(media["timestamp"]).to_numpy()}).sort_values("t")
    found = pd.merge_asof(stamps, events.sort_values("start"), left_on="t", right_on="start", by="deploymentID")
    inside = found["eventID"].notna() & (found["t"] <= found["end"])
    report.skip_many("media in no event of its deployment (a sequence of its own)",
                     [f"media {m}" for m in found.loc[~inside, "mediaID"]])
    seq = found["eventID"].where(inside, ALONE + found["mediaID"])
    return pd.Series(seq.to_numpy(), index=found["mediaID"].to_numpy()).reindex(media["mediaID"].to_numpy())


def _labels(observations: pd.DataFrame, media: pd.DataFrame, seq_id: pd.Series, report: QualityReport
            ) -> pd.Series:
    """Each labelled media's class name (indexed by mediaID) from the human observations."""
    machine = observations["classificationMethod"] == "machine"
    report.skip_many("machine observation (a classifier's output, not a label)",
                     [f"observation {o}" for o in observations.loc[machine, "observationID"]])
    human = observations.loc[~machine]
    name = human["observationType"].map(CLASS_OF_TYPE).where(human["observationType"] != "animal",
                                                             human["scientificName"].str.strip())
    nameless = (human["observationType"] == "animal") & (name == "")
    report.skip_many("animal observation without scientificName (not a label)",
                     [f"observation {o}" for o in human.loc[nameless, "observationID"]])
    untyped = name.isna()
    report.skip_many("observationType unknown or unclassified (not a label)",
                     [f"observation {o} observationType={t!r}" for o, t in
                      human.loc[untyped, ["observationID", "observationType"]].itertuples(index=False)])
    usable = ~nameless & ~untyped
    human, name = human.loc[usable], name[usable]
    count = pd.to_numeric(human["count"], errors="coerce").fillna(1)
    on_media = pd.DataFrame({"mediaID": human["mediaID"], "name": name, "count": count, "level": "media"})
    on_media = on_media[human["observationLevel"] == "media"]
    event = human[human["observationLevel"] == "event"]
    members = pd.DataFrame({"mediaID": seq_id.index, "eventID": seq_id.to_numpy()})
    on_event = members.merge(pd.DataFrame({"eventID": event["eventID"], "name": name[event.index],
                                           "count": count[event.index]}), on="eventID")
    on_event = on_event[~on_event["mediaID"].isin(on_media["mediaID"])]  # media-level observations win
    votes = pd.concat([on_media[["mediaID", "name", "count"]], on_event[["mediaID", "name", "count"]]])
    totals = votes.groupby(["mediaID", "name"], sort=True)["count"].sum().reset_index()
    totals["animal"] = totals["name"] != EMPTY
    several = totals.groupby("mediaID")["name"].transform("size") > 1
    report.skip_many("media with observations of several classes (labelled by the highest total count, a blank "
                     "never over an animal)", [f"media {m}" for m in totals.loc[several, "mediaID"].unique()])
    best = totals.sort_values(["mediaID", "animal", "count", "name"], ascending=[True, False, False, True])
    best = best.drop_duplicates("mediaID")
    return pd.Series(best["name"].to_numpy(), index=pd.Index(best["mediaID"].to_numpy(), name="mediaID"))


def _images(media: pd.DataFrame, seq_id: pd.Series, labelled: pd.Index, deployments: pd.DataFrame, root: Path,
            media_root: Path, path: Path, report: QualityReport, valid_years: tuple[int, int]) -> pd.DataFrame:
    """The images table: location = the deployment's position among the sorted deploymentIDs, the local
    wall-clock time of the timestamp (the camera's hours, what the timing features read), frames numbered within
    each sequence, `folder` the media root relative to the package (what the pixel stages join to data.root); a
    media with a URL for filePath has no file (counted, never fetched)."""
    ids = media["mediaID"].to_numpy()
    url = media["filePath"].str.contains("://", regex=False).to_numpy()
    images = pd.DataFrame({
        "split": np.where(pd.Index(ids).isin(labelled), "train", "test"),
        "width": pd.array([pd.NA] * len(media), dtype="Int64"), "height": pd.array([pd.NA] * len(media), dtype="Int64"),
        "file_name": media["filePath"].to_numpy(),
        "location": pd.Index(sorted(deployments["deploymentID"])).get_indexer(media["deploymentID"]).astype(np.int64),
        "seq_id": seq_id.loc[ids].to_numpy(),
        "datetime_raw": media["timestamp"].to_numpy(),
    }, index=pd.Index(ids, name="image_id"))
    images["split"] = images["split"].astype("string")
    images["datetime"] = parse_datetimes(images["datetime_raw"].str.slice(0, 19), valid_years, report, path.name)
    images["datetime_ok"] = images["datetime"].notna()
    number_frames(images)
    report.skip_many("media filePath is a URL (never fetched: the media has no pixels)",
                     [f"{path.name}: media {i}" for i in images.index[url]])
    local = images.loc[~url].copy()
    check_files(local, media_root, "", path.name, report)
    images["file_ok"] = local["file_ok"].reindex(images.index, fill_value=False).astype(bool)
    images["width"], images["height"] = local["width"].reindex(images.index), local["height"].reindex(images.index)
    images["file_name"] = images["file_name"].astype("string")
    images["datetime_raw"] = images["datetime_raw"].astype("string")
    images["seq_id"] = images["seq_id"].astype("string")
    images["folder"] = os.path.relpath(media_root, root)
    return images


def validate_package(root: str | Path) -> None:
    """The whole package offline, as `frictionless validate` would with the vendored profile and schemas: the
    descriptor against the profile, each table against its schema, and the foreign keys between the tables (a
    media's deployment, an observation's deployment and media). Any error: one DataError line."""
    root = Path(root)
    descriptor = read_descriptor(root)
    resources = {r["name"]: r for r in descriptor["resources"] if r.get("name") in TABLES}
    package = frictionless.Package(basepath=str(root),
                                   resources=[_checked(root, resources[name], True) for name in TABLES])
    for task in package.validate().tasks:  # one pass over each table: schema and foreign keys
        _stop_at_first_error(root, resources[task.name], task.flatten(FIELDS))


if __name__ == "__main__":  # python -m data.camtrap_dp <package folder>: validate it offline
    import sys
    try:
        validate_package(sys.argv[1])
    except DataError as e:
        sys.exit(f"invalid: {e}")
    print(f"{sys.argv[1]}: a valid Camtrap DP 1.0.2 package (profile, table schemas and foreign keys)")
