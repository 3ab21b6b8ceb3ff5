"""iWildCam2020-WILDS (v2.0): `metadata.csv`, `categories.csv` and one `train/` folder of every split's images,
read into the same typed tables as the Kaggle layout, with the official split of each image beside them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from data.coco import check_files, parse_datetimes
from data.quality import DataError, QualityReport

METADATA_CSV, CATEGORIES_CSV, IMAGE_FOLDER = "metadata.csv", "categories.csv", "train"
REQUIRED = ("split", "filename", "y", "location_remapped", "sequence_remapped", "datetime")
ORIGINAL_LOCATION = "location"  # the iWildCam location id, which Landsat sites are named by; not always shipped
SPLITS = ("train", "val", "test", "id_val", "id_test")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype={"filename": "string", "split": "string"}, keep_default_na=False,
                            na_values=[""])
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable csv ({e})") from e
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing (found {list(table.columns)})")
    return table


def _integers(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """A required integer column; the first row holding something else is a DataError naming the file and
    its line (the table's index is the row's position in the file)."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (values != np.floor(values))
    if bad.any():
        row = table.loc[bad.idxmax()]
        raise DataError(f"{path}: line {int(bad.idxmax()) + 2} ({row.get('filename', '')}) has invalid "
                        f"{column!r} = {row[column]!r}")
    return values.astype("int64")


def load_wilds(root: str | os.PathLike, report: QualityReport, valid_years: tuple[int, int]
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, bool]:
    """(images, labels, categories, whether the images' `location` is the original iWildCam location id).

    Images are indexed by the iWildCam image id (the filename without `.jpg`), carry `split` = "train" (the
    folder their files are in, as in the Kaggle layout) and `wilds_split`, the official split. `location` is
    the original location id where metadata.csv has it, else `location_remapped`."""
    root = Path(root)
    path, cat_path = root / METADATA_CSV, root / CATEGORIES_CSV
    categories = _read_csv(cat_path, ("y", "category_id"))
    y_values, ids = _integers(categories, "y", cat_path), _integers(categories, "category_id", cat_path)
    if y_values.duplicated().any():
        raise DataError(f"{cat_path}: y {int(y_values[y_values.duplicated()].iloc[0])} is listed twice")
    names = categories["name"].astype(str) if "name" in categories else ids.astype(str)
    category_of = pd.Series(ids.to_numpy(), index=y_values.to_numpy())

    meta = _read_csv(path, REQUIRED)
    report.count_read("wilds images", len(meta))
    unknown_split = ~meta["split"].isin(SPLITS)
    report.skip_many(f"split not one of {', '.join(SPLITS)} (row skipped)",
                     [f"{METADATA_CSV}: line {k + 2} ({f}) split={s!r}" for k, f, s in
                      meta.loc[unknown_split, ["filename", "split"]].itertuples()])
    meta = meta.loc[~unknown_split]
    y = _integers(meta, "y", path)
    unknown_y = ~y.isin(category_of.index)
    report.skip_many(f"y not in {CATEGORIES_CSV} (row skipped)",
                     [f"{METADATA_CSV}: {f} y={v}" for f, v in zip(meta.loc[unknown_y, "filename"], y[unknown_y])])
    meta, y = meta.loc[~unknown_y], y[~unknown_y]
    named = meta["filename"].fillna("").str.lower().str.endswith(".jpg")
    report.skip_many("filename is not <image id>.jpg (row skipped)",
                     [f"{METADATA_CSV}: line {k + 2} filename={f!r}"
                      for k, f in zip(meta.index[~named], meta.loc[~named, "filename"])])
    meta, y = meta.loc[named], y[named]
    image_id = meta["filename"].str.slice(0, -4).astype(str)
    dup = image_id.duplicated()
    report.skip_many("duplicate filename (later row skipped)",
                     [f"{METADATA_CSV}: {f}" for f in meta.loc[dup, "filename"]])
    meta, y, image_id = meta.loc[~dup], y[~dup], image_id[~dup]

    original = ORIGINAL_LOCATION in meta.columns
    images = pd.DataFrame({
        "split": "train", "wilds_split": meta["split"].astype(str).to_numpy(),
        "file_name": meta["filename"].to_numpy(),
        "location": _integers(meta, ORIGINAL_LOCATION if original else "location_remapped", path).to_numpy(),
        "location_remapped": _integers(meta, "location_remapped", path).to_numpy(),
        "seq_id": _integers(meta, "sequence_remapped", path).astype(str).to_numpy(),
        "datetime_raw": meta["datetime"].astype("string").to_numpy(),
    }, index=pd.Index(image_id.to_numpy(), name="image_id"))
    images["datetime"] = parse_datetimes(images["datetime_raw"], valid_years, report, METADATA_CSV)
    images["datetime_ok"] = images["datetime"].notna()
    # frame order and burst length, which the Kaggle metadata states, from the datetimes within a sequence
    order = images.reset_index().sort_values(["seq_id", "datetime", "image_id"])
    frame = order.groupby("seq_id").cumcount()
    images["frame_num"] = pd.Series(frame.to_numpy(), index=order["image_id"].to_numpy()).reindex(images.index)
    images["seq_num_frames"] = images.groupby("seq_id")["seq_id"].transform("size").astype("int64")
    images["width"] = images["height"] = pd.array([pd.NA] * len(images), dtype="Int64")
    check_files(images, root, IMAGE_FOLDER, METADATA_CSV, report)
    report.note("wilds split images", images["wilds_split"].value_counts().reindex(list(SPLITS), fill_value=0)
                .astype(int).to_dict())
    labels = pd.DataFrame({"category_id": category_of.loc[y.to_numpy()].to_numpy()}, index=images.index)
    cats = pd.DataFrame({"name": names.to_numpy()}, index=pd.Index(ids.to_numpy(), name="id")).sort_index()
    return images, labels, cats, original
