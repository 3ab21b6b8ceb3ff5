"""DVC stage `join` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data import QualityReport
from data.quality import count_per_split
from infra.artifacts import (EMBEDDINGS, FEATURES, FAMILIES, FEATURE_TABLE, QUALITY, USABLE_PIXELS, table,
                              write_quality)
from infra.atomic import atomic_path, write_parquet

log = logging.getLogger("stages.join")
# the column of each pixel family that every decoded image has: the family's evidence that it was read
PIXEL_MARKERS = {"image_stats": "brightness", "embeddings": "frame_emb_0"}
# the load report's note that switches a family off, for the families and views it empties
OFF_NOTES = {"detector_stats": "detector off", "crops": "detector off", "landsat_summary": "landsat off"}


def has_value(column: pa.ChunkedArray) -> bool:
    """Whether any image has a value in the column (null and NaN are none)."""
    valid = len(column) - column.null_count
    if valid and pa.types.is_floating(column.type):
        valid -= pc.sum(pc.is_nan(column)).as_py() or 0
    return valid > 0


def part_of(family: str, name: str) -> str:
    """What an ablation row names a column by (stages/evaluate.ablations): its family, or for an embedding
    family its view, `<family>_frame` or `<family>_crops` (the crops and their sequence mean)."""
    if not family.startswith("embeddings"):
        return family
    return f"{family}_frame" if name.startswith("frame_") else f"{family}_crops"


def image_rows() -> pd.DataFrame:
    """The rows of the feature table, each image's split (WILDS's where there is one), whether its file was
    usable at load and whether it is a `photo`: the camera images, then the supplemental photos (split
    `supplemental`), which train where train.supplemental says so and are never scored."""
    images, photos = table("images"), table("supplemental")
    columns = ["split", "file_ok"] + (["wilds_split"] if "wilds_split" in images else []) + ["photo"]
    return pd.concat([images.assign(photo=False)[columns],
                      photos.assign(wilds_split=photos["split"], photo=True)[columns]])


def run(params: dict) -> None:
    """One feature table keyed by image id (the camera images, then the supplemental photos, whose
    camera-only families are NA); family switches choose the columns, prefixed by family. Joined
    in Arrow, column by column: a family already in the image order (the 4.3 GB of embeddings at full
    scale) is not copied, where pandas' concat and reindex copied everything two or three times.

    A column no camera image has a value in (a family or view the data cannot feed: no detector file, no
    Landsat, no box to crop; the supplemental photos' values alone would only tell them apart) is left out, and a family or view left with no column is reported absent with the reason,
    so that nothing downstream measures it. Each image's `usable` pixels (its file was usable at load and a
    pixel family read it) are written beside the table: images without any never train (README, Data
    quality)."""
    images, report = image_rows(), QualityReport()
    chosen = [f for f in FAMILIES if params["features"][f]]
    if not chosen:
        raise SystemExit("features: every family is switched off; switch at least one on")
    notes = json.loads((QUALITY / "load.json").read_text())["notes"]
    # the embeddings switch brings every backbone's family the embeddings stage wrote
    files = {f: [FEATURES / f"{f}.parquet"] for f in chosen}
    files["embeddings"] = sorted(EMBEDDINGS.glob("*.parquet")) if "embeddings" in chosen else []
    # the index column, and pandas metadata for string column names
    skeleton = pa.Table.from_pandas(pd.DataFrame(index=images.index, columns=pd.Index([], dtype=str)))
    columns = dict(zip(skeleton.column_names, skeleton.columns))
    present: dict[str, bool] = {}  # per family or view: whether any camera image has a value in it
    photos_only: dict[str, int] = {}  # per family or view: its columns with values for supplemental photos alone
    camera = pa.array(~images["photo"].to_numpy())
    pixels = []
    for kind, path in ((f, p) for f in chosen for p in files[f]):
        family, part = path.stem, pq.read_table(path)
        index = part.schema.pandas_metadata["index_columns"][0]
        ids = pd.Index(part.column(index).to_pandas())
        if not ids.equals(images.index):
            positions = ids.get_indexer(images.index)  # -1: an image the family has no row for, null
            part = part.take(pa.array(positions, mask=positions < 0))
        for name in (n for n in part.column_names if n != index):
            # a column only the photos have a value in (a crop view without a detector file) would tell a photo
            # from a camera image in training and never serve: it is left out like a column without any value
            kept, part_name = has_value(part.column(name).filter(camera)), part_of(family, name)
            present[part_name] = present.get(part_name, False) or kept
            if not kept and has_value(part.column(name)):
                photos_only[part_name] = photos_only.get(part_name, 0) + 1
            if kept:
                columns[f"{family}__{name}"] = part.column(name)
        if kind in PIXEL_MARKERS:
            pixels.append(part.column(PIXEL_MARKERS[kind]).is_valid().to_numpy(zero_copy_only=False))
    absent = {}
    for name in (n for n, kept in present.items() if not kept):
        note = next((notes[off] for key, off in OFF_NOTES.items()
                     if (name == key or name.endswith(f"_{key}")) and off in notes), None)
        absent[name] = ("no value for any camera image (the supplemental photos have one, which would tell them "
                        "apart in training and never serve: left out)" if name in photos_only
                        else "no value for any image") + (f": {note}" if note else "")
        log.warning("join: %s is absent (%s)", name, absent[name])
    report.note("absent families and views", absent)
    report.note("columns only the supplemental photos have a value in (left out), per family or view", photos_only)
    # a labelled image whose pixels were not read would train the pixel families on NA, a confound: it never
    # trains. With no pixel family chosen there is no such confound (a metadata-only run, no image file needed):
    # every camera image trains; a photo has nothing but pixels
    photo = images["photo"].to_numpy()
    if pixels:
        usable, rule = images["file_ok"].to_numpy() & np.logical_or.reduce(pixels), "a pixel family read its file"
    else:
        usable, rule = ~photo, "no pixel family chosen: every camera image (its file not needed), no photo"
    report.note("usable rule", rule)
    # labelled train images among them never train; every one is still scored and predicted
    count_per_split("join", images, ~usable, "without_pixels", "images without usable pixels, per split",
                    report, params["data"]["warn_unusable_share"],
                    "have no usable pixels (reports/quality/join.json, load.json, image_stats.json, embeddings/)")
    report.skip_many("image without usable pixels (never trains; scored and predicted with its pixel features NA)",
                     list(images.index[~usable]))
    joined = pa.table(columns).replace_schema_metadata(skeleton.schema.metadata)
    log.info("join: %d images x %d features from %s", joined.num_rows, joined.num_columns - 1, chosen)
    with atomic_path(FEATURE_TABLE) as tmp:
        pq.write_table(joined, tmp)
    write_parquet(pd.DataFrame({"usable": usable}, index=images.index), USABLE_PIXELS)
    write_quality("join", report)
