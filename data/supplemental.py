"""The organisers' iNaturalist subsets (iNat 2017 and 2018 competition images of iWildCam classes, with
`category_id` mapped to iWildCam ids) as validated tables keyed by `<source>:<id>`.

The files are COCO as the iNaturalist competitions write it: `images` ({"id": int, "width", "height",
"file_name", ...}), `annotations` ({"id", "image_id", "category_id"}, iNat 2017's with a pixel `bbox`
[x, y, w, h] for part of the mammals) and `categories`; ids may be written as int or str and extra keys
are ignored. Nothing in them says where or when a photo was taken, so the camera-trap families that need a
camera (detector statistics, sequence timing, Landsat) have no value for these rows. The iNat competitions
published each image's date (with latitude, longitude and observer) separately, `inat2017_locations.zip` and
`inat2018_locations.zip` (`train2017_locations.json`, `val2017_locations.json`, and the same for 2018): a JSON
list of records {"id", "lat", "lon", "date", "date_c", "user_id", ...} over all of that competition's images,
keyed by the same ids. A source that names them gets each photo's calendar date; nothing else in them is read.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.coco import check_files, read_json
from data.megadetector import load_detections
from data.quality import DataError, QualityReport, as_written

log = logging.getLogger(__name__)

SPLIT = "supplemental"  # the `split` of these rows: never train, test or a WILDS split
EXAMPLES_SHOWN = 3


ANIMAL = 1  # MegaDetector's animal category (data.megadetector.CATEGORY_CODES)
BOX_COLUMNS = ["box_x", "box_y", "box_w", "box_h"]  # a photo's crop in [0, 1] of it
REQUIRED_KEYS, OPTIONAL_KEYS = {"name", "metadata", "images"}, {"detector_file", "locations", "category_ids"}
# the calendar date an iNat `date` starts with ("2016-05-13 17:25:00+00:00", "2016-05-13"); its time of day is not
# read: whether one was recorded and in which time zone is not documented, unlike a camera's local clock
ISO_DATE = r"^\s*(\d{4}-\d{2}-\d{2})(?:$|[ T])"


@dataclass(frozen=True)
class Source:
    """One supplemental source of `data.supplemental`: its name (the key prefix), its metadata json, the
    folder its `file_name`s are relative to and, optionally, a MegaDetector batch file run over that folder and
    the iNat competition's location files holding its photos' dates, all relative to `data.root` unless
    absolute."""
    name: str
    metadata: str
    images: str
    detector_file: str | None = None
    locations: tuple[str, ...] = ()
    category_ids: tuple[tuple[int, int], ...] = ()  # a stated mapping: (the file's category id, the iWildCam id)


def sources(entries: list | None) -> list[Source]:
    """`data.supplemental` as Sources; a malformed entry is a DataError naming it."""
    found: list[Source] = []
    for k, entry in enumerate(entries or []):
        if not isinstance(entry, dict) or not REQUIRED_KEYS <= set(entry) <= REQUIRED_KEYS | OPTIONAL_KEYS:
            raise DataError(f"params.yaml: data.supplemental[{k}] must have the keys name, metadata and images (and "
                            f"optionally detector_file and locations), not {as_written(entry)}")
        name = entry["name"]
        if not isinstance(name, str) or not name or ":" in name or "/" in name:
            raise DataError(f"params.yaml: data.supplemental[{k}].name {as_written(name)} must be a non-empty name "
                            f"without ':' or '/' (it prefixes the source's image ids)")
        if name in {s.name for s in found}:
            raise DataError(f"params.yaml: data.supplemental[{k}].name {name!r} is used twice")
        detector, locations = entry.get("detector_file"), entry.get("locations", [])
        if not isinstance(locations, list) or not all(isinstance(p, str) and p for p in locations):
            raise DataError(f"params.yaml: data.supplemental[{k}].locations must be a list of files (the iNat "
                            f"competition's train/val location json), not {as_written(locations)}")
        mapping = entry.get("category_ids", {})
        if not isinstance(mapping, dict) or not all(_is_int(a) and _is_int(b) for a, b in mapping.items()):
            raise DataError(f"params.yaml: data.supplemental[{k}].category_ids must map the file's category ids to "
                            f"iWildCam category ids ({{file id: iWildCam id}}), not {as_written(mapping)}")
        found.append(Source(name, str(entry["metadata"]), str(entry["images"]),
                            None if detector is None else str(detector), tuple(locations),
                            tuple(sorted((int(a), int(b)) for a, b in mapping.items()))))
    return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isdigit()


def _normal(name: object) -> str:
    """A category name as compared: lower case, runs of spaces, underscores and hyphens as one space."""
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _check_category_names(doc: dict, source: Source, path: Path, names: pd.Series) -> None:
    """Each category the file lists (after the source's stated `category_ids`) must be named as the camera-trap
    category list names its id (case and spacing aside): a file mapped for another iWildCam year, or a swapped
    id, would otherwise train photos under the wrong class. A disagreement is one DataError naming both."""
    mapping = dict(source.category_ids)
    listed = doc.get("categories", []) if isinstance(doc, dict) else []
    for record in listed if isinstance(listed, list) else []:
        if not isinstance(record, dict) or "name" not in record or not _is_int(record.get("id")):
            continue
        file_id = int(record["id"])
        ours = mapping.get(file_id, file_id)
        if ours in names.index and _normal(record["name"]) != _normal(names[ours]):
            via = f" (mapped to {ours} by data.supplemental's category_ids)" if file_id in mapping else ""
            raise DataError(f"{path}: category {file_id}{via} is {record['name']!r} here but {names[ours]!r} in the "
                            f"camera-trap category list: a file mapped for other category ids? State the mapping "
                            f"in data.supplemental[].category_ids ({{file id: iWildCam id}})")


def _records(doc: dict, key: str, path: Path) -> pd.DataFrame:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise DataError(f"{path}: top-level '{key}' must be a list of records")
    return pd.DataFrame.from_records(value)


def _images(doc: dict, source: Source, path: Path, report: QualityReport) -> pd.DataFrame:
    """The source's image records indexed by `<source>:<id>`: records without an id or a second record of an id
    are counted skips."""
    images = _records(doc, "images", path).reindex(columns=["id", "file_name", "width", "height"])
    report.count_read(f"{source.name} images", len(images))
    no_id = images["id"].isna()
    report.skip_many("supplemental image record without 'id' (skipped)",
                     [f"{path.name}: image record #{k}" for k in np.flatnonzero(no_id)])
    images = images.loc[~no_id]
    images["id"] = images["id"].map(_id_text)
    dup = images["id"].duplicated()
    report.skip_many("duplicate supplemental image id (later record skipped)",
                     [f"{path.name}: image {i}" for i in images.loc[dup, "id"]])
    images = images.loc[~dup]
    for col in ("width", "height"):
        size = pd.to_numeric(images[col], errors="coerce")
        images[col] = size.where(size > 0).astype("Int64")
    images.index = pd.Index(source.name + ":" + images.pop("id"), name="image_id")
    return images


def _id_text(value: object) -> str:
    """An id as text: iNat writes ints, a re-saved file may hold them as str or as floats like 12.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _labels(doc: dict, source: Source, path: Path, images: pd.DataFrame, categories: pd.Index,
            report: QualityReport) -> pd.DataFrame:
    """One iWildCam category per image, and its box where the annotation has one (pixels): unknown categories,
    annotations of unknown images and conflicting labels are counted skips."""
    ann = _records(doc, "annotations", path).reindex(columns=["id", "image_id", "category_id", "bbox"])
    report.count_read(f"{source.name} annotations", len(ann))
    ann["image_id"] = source.name + ":" + ann["image_id"].map(_id_text)
    category = pd.to_numeric(ann["category_id"], errors="coerce")
    if source.category_ids:
        category = category.replace(dict(source.category_ids))
    unknown = ~category.isin(categories)
    report.skip_many("supplemental annotation whose category is not an iWildCam category id (skipped)",
                     [f"{path.name}: annotation {as_written(a)} image {i} category_id={as_written(c)}"
                      for a, i, c in ann.loc[unknown, ["id", "image_id", "category_id"]].itertuples(index=False)])
    ann = ann.loc[~unknown].assign(category_id=category[~unknown].astype("int64"))
    orphan = ~ann["image_id"].isin(images.index)
    report.skip_many("supplemental annotation for an image not in its images (skipped)",
                     [f"{path.name}: annotation {as_written(a)} image {i}"
                      for a, i in ann.loc[orphan, ["id", "image_id"]].itertuples(index=False)])
    ann = ann.loc[~orphan]
    conflicting = ann.groupby("image_id")["category_id"].transform("nunique") > 1
    report.skip_many("supplemental image with conflicting categories (left unlabelled)",
                     sorted(set(ann.loc[conflicting, "image_id"])))
    ann = ann.loc[~conflicting]
    ann = ann.assign(area=[_box_area(b) for b in ann["bbox"]])
    # several boxes of one animal class in a photo (iNat 2017): the largest is the crop
    first = ann.sort_values("area", ascending=False, kind="stable").drop_duplicates("image_id")
    labels = first.set_index("image_id")[["category_id", "bbox"]].rename_axis("image_id")
    unlabelled = images.index.difference(labels.index)
    report.skip_many("supplemental image without a usable label (not used)", list(unlabelled))
    return labels


def _box_area(bbox: object) -> float:
    """Area of a COCO [x, y, w, h] box, -1 where there is none (or it is not four numbers)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return -1.0
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return -1.0
    return w * h if np.isfinite([x, y, w, h]).all() else -1.0


def _boxes(labels: pd.DataFrame, images: pd.DataFrame, path: Path, report: QualityReport) -> pd.DataFrame:
    """Each labelled image's box in [0, 1] of the photo (box_x, box_y, box_w, box_h; NaN without one): boxes
    that are not four finite numbers, have no area or lie outside the photo are counted and dropped (the whole
    photo is the crop then)."""
    raw = labels["bbox"]
    given = raw.map(lambda b: b is not None and not (isinstance(b, float) and np.isnan(b)))
    xywh = np.full((len(labels), 4), np.nan)
    usable = np.zeros(len(labels), bool)
    clipped = np.zeros(len(labels), bool)
    size = images.loc[labels.index, ["width", "height"]].to_numpy(dtype=np.float64, na_value=np.nan)
    for k, (box, has) in enumerate(zip(raw, given)):
        if not has or _box_area(box) <= 0:
            continue
        x, y, w, h = (float(v) for v in box)
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, size[k, 0]), min(y + h, size[k, 1])
        if x1 > x0 and y1 > y0:  # NaN sizes (unknown) fail this too
            xywh[k] = [x0 / size[k, 0], y0 / size[k, 1], (x1 - x0) / size[k, 0], (y1 - y0) / size[k, 1]]
            usable[k] = True
            clipped[k] = (x0, y0, x1, y1) != (x, y, x + w, y + h)
    report.skip_many("supplemental bbox partly outside the photo (clipped to it)",
                     [f"{path.name}: image {i} bbox={as_written(b)}" for i, b in raw[clipped].items()])
    bad = given.to_numpy() & ~usable
    report.skip_many("supplemental bbox not usable: not [x, y, w, h], no area, outside the photo or its size "
                     "unknown (whole photo used)",
                     [f"{path.name}: image {i} bbox={as_written(b)}" for i, b in raw[bad].items()])
    return pd.DataFrame(xywh.astype(np.float32), index=labels.index, columns=BOX_COLUMNS)


def _detector_boxes(root: Path, source: Source, images: pd.DataFrame, min_conf: float, report: QualityReport
                    ) -> pd.DataFrame:
    """Each photo's most confident MegaDetector animal box at least `min_conf` confident, in [0, 1] of the photo
    (NaN where there is none), from the source's batch file as MegaDetector writes it (entries keyed by `file`,
    the path under the folder it ran on); its skips go to the report prefixed with the source's name."""
    own = QualityReport()
    detections, _ = load_detections(root, images.assign(split=source.images), own, source.detector_file)
    _add_prefixed(report, own, f"{source.name} detector file: ")
    animal = detections[(detections["category"] == ANIMAL) & (detections["conf"] >= min_conf)]
    top = animal.sort_values("conf", ascending=False, kind="stable").drop_duplicates("image_id")
    boxes = top[["x", "y", "w", "h"]].set_axis(BOX_COLUMNS, axis=1).set_index(top["image_id"].astype(object))
    return boxes.reindex(images.index)


def _add_prefixed(report: QualityReport, own: QualityReport, prefix: str) -> None:
    """`own`'s reads, notes and skips into `report`, each named `prefix` + its own name: the camera-trap
    detector file's counts keep their names. (Here rather than a QualityReport method: data/quality.py is in
    the code digest of every cached pixel feature, and an edit there recomputes them all.)"""
    for what, n in own.read.items():
        report.count_read(prefix + what, n)
    for key, value in own.notes.items():
        report.note(prefix + key, value)
    for reason, n in own.counts.items():
        report.counts[prefix + reason] += n
        report.examples[prefix + reason].extend(own.examples[reason])


def _dates(root: Path, source: Source, photos: pd.Index, valid_years: tuple[int, int], report: QualityReport
           ) -> pd.Series:
    """Each photo's calendar date (NaT where unknown) from the source's iNat location files, which cover every
    image of that competition: the records of other images are not read further. A file that is missing or is
    not a list of records is a DataError naming it; a record without an id, a date that is not an ISO date or
    whose year is outside `valid_years`, a photo with dates that disagree across records, a photo without a record
    or whose record has no date: counted in the report (its date features are NA)."""
    found = []
    for rel in source.locations:
        path = root / rel
        if not path.is_file():
            raise DataError(f"{path}: no such file (data.supplemental {source.name}: locations)")
        doc = read_json(path)
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise DataError(f"{path}: must be a list of records ({{\"id\", \"lat\", \"lon\", \"date\", ...}}), as the "
                            f"iNat competitions' location files are")
        records = pd.DataFrame.from_records(doc, columns=["id", "date"])
        report.count_read(f"{source.name} location records", len(records))
        no_id = records["id"].isna()
        report.skip_many("supplemental location record without 'id' (skipped)",
                         [f"{path.name}: record #{k}" for k in np.flatnonzero(no_id)])
        ids = records.loc[~no_id, "id"].map(_id_text)
        mine = (source.name + ":" + ids).isin(photos)
        ids = ids[mine]
        found.append(pd.DataFrame({"image_id": source.name + ":" + ids, "date": records.loc[ids.index, "date"],
                                   "where": f"{path.name}: id " + ids}))
    table = pd.concat(found, ignore_index=True)
    recorded = pd.Index(table["image_id"])
    written = table["date"].notna()
    report.skip_many("supplemental photo whose location record has no date (date features NA)",
                     list(recorded.difference(table.loc[written, "image_id"])))
    table = table.loc[written]
    day = pd.to_datetime(table["date"].astype("string").str.extract(ISO_DATE, expand=False), format="%Y-%m-%d",
                         errors="coerce")
    low, high = valid_years
    usable = day.dt.year.between(low, high)
    report.skip_many(f"supplemental location date that is not an ISO date or whose year is outside {low}-{high} "
                     f"(record not used)",
                     [f"{w} date={as_written(d)}" for w, d in table.loc[~usable, ["where", "date"]].itertuples(False)])
    dated = pd.Series(day[usable].to_numpy(), index=pd.Index(table.loc[usable, "image_id"], name="image_id"))
    disagree = dated.groupby(level=0).nunique() > 1
    report.skip_many("supplemental photo whose location records give different dates (date features NA)",
                     list(disagree.index[disagree]))
    dated = dated[~dated.index.duplicated()].drop(disagree.index[disagree])
    report.skip_many("supplemental photo without a location record (date features NA)",
                     list(photos.difference(recorded)))
    report.count_read(f"{source.name} photos dated", len(dated))
    return dated.reindex(photos).astype("datetime64[ns]")


def load_source(root: Path, source: Source, categories: pd.Series, detector_min_conf: float,
                valid_years: tuple[int, int], report: QualityReport) -> pd.DataFrame:
    """One source's labelled images: split `supplemental`, its name, file_name (under `folder`), width, height,
    file_ok, category_id, the box its crop is cut from (NaN: the whole photo) and where that box comes from
    (`crop_source`: the file's COCO box, else the MegaDetector batch file's most confident animal box of at
    least `detector_min_conf` where the source has one, else the whole photo, since these photos are
    object-centric), counted per source in the report, and its calendar `date` where the source names location
    files (NaT elsewhere). A source whose metadata file is not there is a counted
    skip and a warning, not an error: the sample's source stays configured when `data.root` points at a
    download without it."""
    path = root / source.metadata
    if not path.is_file():
        report.skip("supplemental source whose metadata file is not there (source skipped)", f"{source.name}: {path}")
        log.warning("load: supplemental source %s skipped: no metadata file at %s (data.supplemental)", source.name,
                    path)
        return empty_supplemental()
    doc = read_json(path)
    empty = [key for key in ("images", "annotations") if isinstance(doc, dict) and doc.get(key) == []]
    if empty:  # a mapping written for no photo (or not yet filled): nothing to train on, nothing wrong
        report.skip("supplemental source without images or annotations (source skipped)",
                    f"{source.name}: {path.name}: {' and '.join(repr(k) for k in empty)} empty")
        log.warning("load: supplemental source %s skipped: %s has no %s", source.name, path, " and no ".join(empty))
        return empty_supplemental()
    _check_category_names(doc, source, path, categories)
    images = _images(doc, source, path, report)
    labels = _labels(doc, source, path, images, categories.index, report)
    check_files(images, root, source.images, path.name, report)
    unresolved = images.index[~images["file_ok"]]
    if len(images) and len(unresolved) == len(images):
        examples = ", ".join(repr(f) for f in images.loc[unresolved[:EXAMPLES_SHOWN], "file_name"])
        log.warning("load: none of the %d file_names of %s resolves under %s (e.g. %s): is data.supplemental's "
                    "images folder the one the file_names are relative to?", len(images), path,
                    root / source.images, examples)
    images = images[images.index.isin(labels.index)]  # in the file's order
    labels = labels.loc[images.index]
    boxes = _boxes(labels, images, path, report)
    crop_source = pd.Series(np.where(boxes["box_x"].notna(), "coco_box", "whole_photo"), index=boxes.index)
    if source.detector_file is not None:
        detected = _detector_boxes(root, source, images, detector_min_conf, report)
        fill = boxes["box_x"].isna() & detected["box_x"].notna()
        boxes[fill] = detected[fill]
        crop_source[fill] = "megadetector"
    report.note(f"{source.name} crop source (photos)", crop_source.value_counts().to_dict())
    date = (_dates(root, source, images.index, valid_years, report) if source.locations
            else pd.Series(pd.NaT, index=images.index, dtype="datetime64[ns]"))
    return images.assign(split=SPLIT, source=source.name, folder=source.images,
                         category_id=labels["category_id"]).join(boxes).assign(crop_source=crop_source, date=date)


def load_supplemental(root: str | os.PathLike, entries: list | None, categories: pd.Series, camera_ids: pd.Index,
                      detector_min_conf: float, valid_years: tuple[int, int], report: QualityReport) -> pd.DataFrame:
    """Every source of `data.supplemental`, labelled images only, one row per `<source>:<id>` (see
    `load_source`; `categories`: the camera-trap category names by id); an id that is also a camera-trap image
    id is a counted skip."""
    tables = [load_source(Path(root), s, categories, detector_min_conf, valid_years, report)
              for s in sources(entries)]
    if not tables:
        return empty_supplemental()
    table = pd.concat(tables)
    clash = table.index.isin(camera_ids)
    report.skip_many("supplemental image id that is also a camera-trap image id (skipped)", list(table.index[clash]))
    return table.loc[~clash]


def empty_supplemental() -> pd.DataFrame:
    """The table `load_supplemental` returns, without rows: no source configured."""
    return pd.DataFrame({
        "file_name": pd.Series([], dtype="string"), "width": pd.Series([], dtype="Int64"),
        "height": pd.Series([], dtype="Int64"), "file_ok": pd.Series([], dtype=bool),
        "split": pd.Series([], dtype=object), "source": pd.Series([], dtype=object),
        "folder": pd.Series([], dtype=object), "category_id": pd.Series([], dtype="int64"),
        **{c: pd.Series([], dtype=np.float32) for c in BOX_COLUMNS}, "crop_source": pd.Series([], dtype=object),
        "date": pd.Series([], dtype="datetime64[ns]")},
        index=pd.Index([], name="image_id", dtype=object))


def with_photos(images: pd.DataFrame, detections: pd.DataFrame, supplemental: pd.DataFrame
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The images and detections a pixel family reads, with the supplemental photos added: each photo in its
    source's `folder` (a camera image in its own `folder` where the layout gives one, else its split's) as a
    sequence of one, and one box per photo, sure
    (conf 1), as its crop: its COCO box, else the whole photo, since these photos are object-centric (one animal
    filling much of it)."""
    if supplemental.empty:
        return images, detections
    photos = supplemental[["split", "folder", "file_name", "width", "height", "file_ok"]].assign(
        seq_id=supplemental.index, frame_num=0)
    rows = pd.concat([images if "folder" in images else images.assign(folder=images["split"]), photos])
    whole = supplemental["box_x"].isna()
    boxes = supplemental[BOX_COLUMNS].to_numpy(np.float32, copy=True)
    boxes[whole.to_numpy()] = [0, 0, 1, 1]
    ids = detections["image_id"].cat.set_categories(rows.index)
    photo_boxes = pd.DataFrame({"image_id": pd.Categorical(supplemental.index, categories=rows.index),
                                "category": np.ones(len(supplemental), np.int8),
                                "conf": np.ones(len(supplemental), np.float32),
                                **{c: boxes[:, k] for k, c in enumerate("xywh")}})
    return rows, pd.concat([detections.assign(image_id=ids), photo_boxes], ignore_index=True)
