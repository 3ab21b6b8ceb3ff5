"""COCO-CameraTraps metadata (train annotations, test information) as typed, validated tables."""
from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

import numpy as np
import orjson
import pandas as pd

from data.images import ImageError, jpeg_size
from data.io import json_bytes
from data.quality import DataError, QualityReport, as_written, integer_column

log = logging.getLogger(__name__)

TRAIN_JSON = "metadata/iwildcam2020_train_annotations.json"
TEST_JSON = "metadata/iwildcam2020_test_information.json"
IMAGE_KEYS = ("id", "width", "height", "file_name", "location", "datetime",
              "seq_id", "seq_num_frames", "frame_num")
OPTIONAL_KEYS = ("width", "height")  # the JPEG header has them too
SPLITS = {"train": TRAIN_JSON, "test": TEST_JSON}


def read_json(path: str | os.PathLike) -> dict:
    """Parse a json file; a missing or malformed file is a DataError naming it."""
    path = Path(path)
    try:
        return orjson.loads(json_bytes(path))
    except orjson.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def _require_list(doc: dict, key: str, path: Path) -> list:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list):
        raise DataError(f"{path}: top-level '{key}' must be a list")
    return value


def _categories(doc: dict, path: Path) -> pd.DataFrame:
    cats = pd.DataFrame.from_records(_require_list(doc, "categories", path), columns=["id", "name"])
    cats["id"] = pd.to_numeric(cats["id"], errors="raise").astype("int64")
    dup = cats["id"].duplicated()
    if dup.any():
        raise DataError(f"{path}: category id {int(cats.loc[dup, 'id'].iloc[0])} is listed twice")
    return cats.astype({"name": str})


def parse_datetimes(raw: pd.Series, valid_years: tuple[int, int], report: QualityReport,
                    where: str) -> pd.Series:
    """Parse COCO-CameraTraps datetimes; unparseable or implausible ones become NaT and are counted."""
    text = raw.astype("string")
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    unparseable = parsed.isna()
    report.skip_many("datetime unparseable (set to NaT)",
                     [f"{where}: image {i} datetime={v!r}" for i, v in text[unparseable].items()])
    lo, hi = valid_years
    implausible = ~unparseable & ((parsed.dt.year < lo) | (parsed.dt.year > hi))
    report.skip_many(f"datetime year outside {lo}-{hi} (set to NaT)",
                     [f"{where}: image {i} datetime={v!r}" for i, v in text[implausible].items()])
    return parsed.mask(implausible).astype("datetime64[ns]")


def number_frames(images: pd.DataFrame) -> None:
    """Set `frame_num` (order by datetime within the sequence, ties by image id) and `seq_num_frames`, for the
    layouts whose metadata gives sequences but not frames (WILDS, Camtrap DP)."""
    order = images.reset_index().sort_values(["seq_id", "datetime", "image_id"])
    frame = order.groupby("seq_id").cumcount()
    images["frame_num"] = pd.Series(frame.to_numpy(), index=order["image_id"].to_numpy()).reindex(images.index)
    images["seq_num_frames"] = images.groupby("seq_id")["seq_id"].transform("size").astype("int64")


def safe_relative(file_name: object) -> bool:
    """True if `file_name` is a plain relative path that stays inside the image folder (an absolute path, a
    `..` part, a home folder or a Windows separator never does)."""
    if not isinstance(file_name, str) or not file_name or "\\" in file_name or "\x00" in file_name:
        return False
    p = PurePosixPath(file_name)
    return not p.is_absolute() and ".." not in p.parts and p.parts[0] != "~"


def _files_under(folder: Path) -> dict[str, int]:
    """Size of every file under `folder` by relative posix path (one directory walk instead of one stat per
    image)."""
    found: dict[str, int] = {}
    stack = [folder]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file():
                found[Path(entry.path).relative_to(folder).as_posix()] = entry.stat().st_size
    return found


def load_split(root: Path, split: str, report: QualityReport, valid_years: tuple[int, int]
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read one metadata json: (images indexed by image_id, raw annotations, categories)."""
    path = root / SPLITS[split]
    doc = read_json(path)
    records = _require_list(doc, "images", path)
    images = pd.DataFrame.from_records(records)
    missing = [k for k in IMAGE_KEYS if k not in images.columns and k not in OPTIONAL_KEYS]
    if missing and len(images):
        raise DataError(f"{path}: images lack required keys {missing}")
    images = images.reindex(columns=list(IMAGE_KEYS))
    report.count_read(f"{split} images", len(images))
    if images["id"].isna().any():
        raise DataError(f"{path}: image record #{int(images['id'].isna().idxmax())} has no 'id'")
    images["id"] = images["id"].astype(str)

    dup = images["id"].duplicated()
    report.skip_many("duplicate image id (later record skipped)",
                     [f"{path.name}: image {i}" for i in images.loc[dup, "id"]])
    images = images.loc[~dup]

    for col in ("location", "seq_num_frames", "frame_num"):
        images[col] = integer_column(images[col], col, lambda at: f"{path}: image {images.at[at, 'id']!r}")
    for col in OPTIONAL_KEYS:
        size = pd.to_numeric(images[col], errors="coerce")
        images[col] = size.where(size > 0).astype("Int64")
    images["seq_id"] = images["seq_id"].astype(str)
    images = images.set_index("id").rename_axis("image_id")
    images["datetime_raw"] = images["datetime"].astype("string")
    images["datetime"] = parse_datetimes(images["datetime"], valid_years, report, path.name)
    images["datetime_ok"] = images["datetime"].notna()

    check_files(images, root, split, path.name, report)
    images.insert(0, "split", split)

    annotations = pd.DataFrame.from_records(doc.get("annotations") or [],
                                            columns=["id", "image_id", "category_id"])
    report.count_read(f"{split} annotations", len(annotations))
    return images, annotations, _categories(doc, path)


def check_files(images: pd.DataFrame, root: Path, folder: str, where: str, report: QualityReport) -> None:
    """Set `file_ok` (the image's file is under `root`/`folder`, its name stays inside it, it is not empty and,
    where the metadata lacks the size, its JPEG header reads) and fill a missing width or height from the
    JPEG header; `where` names the metadata file in the skip lines."""
    safe = images["file_name"].map(safe_relative).astype(bool)
    report.skip_many("file_name escapes the image folder (image not read)",
                     [f"{where}: image {i} file_name={f!r}" for i, f in images.loc[~safe, "file_name"].items()])
    size = images["file_name"].where(safe).map(_files_under(root / folder))
    present, empty = size.notna(), size == 0
    report.skip_many("image file missing (image not read)",
                     [f"{folder}/{f} (image {i})" for i, f in images.loc[safe & ~present, "file_name"].items()])
    report.skip_many("image file empty, 0 bytes (image not read)",
                     [f"{folder}/{f} (image {i})" for i, f in images.loc[empty, "file_name"].items()])
    images["file_name"] = images["file_name"].astype("string")
    images["file_ok"] = present & ~empty
    _sizes_from_headers(images, root / folder, where, report)


def _sizes_from_headers(images: pd.DataFrame, folder: Path, where: str, report: QualityReport) -> None:
    """Width and height from the JPEG header where the metadata lacks them (or gives one not positive); a file
    whose header does not read (not a JPEG, cut inside its header) has no usable pixels: `file_ok` false."""
    lacking = images["width"].isna() | images["height"].isna()
    sizes, unread = {}, {}
    for i, f in images.loc[lacking & images["file_ok"], "file_name"].items():
        try:
            sizes[i] = jpeg_size(folder / f)
        except ImageError as e:
            unread[i] = f"{where}: image {i} ({e.reason})"
    if sizes:
        ids = list(sizes)
        images.loc[ids, ["width", "height"]] = np.array(list(sizes.values()), dtype=np.int64)
    images.loc[list(unread), "file_ok"] = False
    report.skip_many("image width/height missing or not positive (read from the JPEG header)",
                     [f"{where}: image {i}" for i in sizes])
    unreadable = images.index[lacking & ~images["file_ok"]].difference(list(unread))
    report.skip_many("image width/height missing or not positive, JPEG header unreadable (left NA, image not read)",
                     list(unread.values()) + [f"{where}: image {i} (file not read)" for i in unreadable])


def _labels(annotations: pd.DataFrame, images: pd.DataFrame, categories: pd.DataFrame,
            report: QualityReport) -> pd.Series:
    """One category per train image; unknown ids and conflicting labels are skipped and counted."""
    ann = annotations.assign(image_id=annotations["image_id"].astype(str),
                             category_id=pd.to_numeric(annotations["category_id"], errors="coerce"))
    unknown_cat = ~ann["category_id"].isin(categories["id"])
    report.skip_many("annotation with unknown category id",
                     [f"annotation {a} image {i} category={as_written(c)}" for a, i, c in
                      annotations.loc[unknown_cat, ["id", "image_id", "category_id"]].itertuples(index=False)])
    ann = ann.loc[~unknown_cat]
    train_ids = images.index[images["split"] == "train"]
    unknown_img = ~ann["image_id"].isin(train_ids)
    report.skip_many("annotation for an image not in the train images",
                     [f"annotation {a} image {i}" for a, i in
                      ann.loc[unknown_img, ["id", "image_id"]].itertuples(index=False)])
    ann = ann.loc[~unknown_img].astype({"category_id": "int64"})
    repeated = ann.duplicated(["image_id", "category_id"])
    report.skip_many("repeated annotation (same image and category)",
                     [f"annotation {a} image {i}" for a, i in
                      ann.loc[repeated, ["id", "image_id"]].itertuples(index=False)])
    ann = ann.loc[~repeated]
    conflicting = ann["image_id"].duplicated(keep=False)
    report.skip_many("image with conflicting labels (left unlabelled)",
                     sorted(set(ann.loc[conflicting, "image_id"])))
    labels = ann.loc[~conflicting].set_index("image_id")["category_id"].rename_axis("image_id")
    unlabelled = train_ids.difference(labels.index)
    report.skip_many("train image without a usable label (not used for training)", list(unlabelled))
    return labels.sort_index()


def load_metadata(root: str | os.PathLike, report: QualityReport, valid_years: tuple[int, int]
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train and test metadata as (images, labels, categories); images carry a `split` column."""
    root = Path(root)
    train, train_ann, categories = load_split(root, "train", report, valid_years)
    test, _, _ = load_split(root, "test", report, valid_years)
    in_both = test.index.isin(train.index)
    report.skip_many("test image id also in train (test record skipped)",
                     [f"image {i}" for i in test.index[in_both]])
    images = pd.concat([train, test.loc[~in_both]])
    shared = sorted(set(train["location"]) & set(test["location"]))
    report.note("locations in both train and test", shared)
    if shared:
        log.warning("locations %s appear in both train and test; validation holds out train locations only",
                    shared)
    labels = _labels(train_ann, images, categories, report)
    return images, labels.to_frame(), categories.set_index("id").sort_index()
