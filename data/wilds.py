"""iWildCam2020-WILDS (v2.0): `metadata.csv`, `categories.csv` and one `train/` folder of every split's images,
read into the same typed tables as the Kaggle layout, with the official split of each image beside them."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from data.coco import check_files, number_frames, parse_datetimes, safe_relative
from data.quality import DataError, QualityReport, integer_column

METADATA_CSV, CATEGORIES_CSV, IMAGE_FOLDER = "metadata.csv", "categories.csv", "train"
REQUIRED = ("split", "filename", "y", "location_remapped", "sequence_remapped", "datetime")
ORIGINAL_LOCATION = "location"  # the iWildCam location id, which Landsat sites are named by; not always shipped
SPLITS = ("train", "val", "test", "id_val", "id_test")


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Every column as the text the file holds (so a bad value is reported as written); a missing file or
    column, or a last line cut short (a partial download), is one DataError naming the file."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable csv ({' '.join(str(e).split())})") from e
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing (found {list(table.columns)})")
    _check_last_line(path, len(table), len(table.columns))
    return table


def _check_last_line(path: Path, rows: int, columns: int) -> None:
    """pandas pads a row cut short with empty values: a last line without its newline and with fewer fields
    than the header is a truncated file, not a row of bad values."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 65536))
        tail = f.read()
    if not rows or tail.endswith(b"\n"):
        return
    fields = next(csv.reader(io.StringIO(tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace"))), [])
    if len(fields) < columns:
        raise DataError(f"{path}: line {rows + 1} ends the file without a newline and has {len(fields)} of "
                        f"{columns} fields: the file is truncated (download it again)")


def _line(path: Path, table: pd.DataFrame):
    """Describes a row of `table` (read by _read_csv: its index is the row's position) by its line in the file
    and its filename."""
    def record(at) -> str:
        name = table.at[at, "filename"] if "filename" in table.columns else ""
        return f"{path}: line {int(at) + 2}" + (f" ({name})" if name else "")
    return record


def load_wilds(root: str | os.PathLike, report: QualityReport, valid_years: tuple[int, int]
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, bool]:
    """(images, labels, categories, whether the images' `location` is the original iWildCam location id).

    Images are indexed by the iWildCam image id (the filename without `.jpg`), carry `split` = "train" (the
    folder their files are in, as in the Kaggle layout) and `wilds_split`, the official split. `location` is
    the original location id where metadata.csv has it, else `location_remapped`. A row whose filename is not
    a plain `<image id>.jpg` in the image folder (absolute, escaping it, in a subfolder) is skipped: no path
    becomes an image id."""
    root = Path(root)
    category_of, cats = _categories(root / CATEGORIES_CSV)
    meta = _read_csv(root / METADATA_CSV, REQUIRED)
    report.count_read("wilds images", len(meta))
    meta, image_id, y = _usable_rows(meta, category_of, report, root / METADATA_CSV)
    original = ORIGINAL_LOCATION in meta.columns
    images = _images(meta, image_id, original, root / METADATA_CSV, report, valid_years)
    check_files(images, root, IMAGE_FOLDER, METADATA_CSV, report)
    report.note("wilds split images", images["wilds_split"].value_counts().reindex(list(SPLITS), fill_value=0)
                .astype(int).to_dict())
    labels = pd.DataFrame({"category_id": category_of.loc[y.to_numpy()].to_numpy()}, index=images.index)
    return images, labels, cats, original


def _categories(path: Path) -> tuple[pd.Series, pd.DataFrame]:
    """(the category id of each `y`, the categories table indexed by id with their names) from categories.csv."""
    categories = _read_csv(path, ("y", "category_id"))
    y_values = integer_column(categories["y"], "y", _line(path, categories))
    ids = integer_column(categories["category_id"], "category_id", _line(path, categories))
    if y_values.duplicated().any():
        raise DataError(f"{path}: y {int(y_values[y_values.duplicated()].iloc[0])} is listed twice")
    names = categories["name"] if "name" in categories else ids.astype(str)
    cats = pd.DataFrame({"name": names.to_numpy()}, index=pd.Index(ids.to_numpy(), name="id")).sort_index()
    return pd.Series(ids.to_numpy(), index=y_values.to_numpy()), cats


def _usable_rows(meta: pd.DataFrame, category_of: pd.Series, report: QualityReport, path: Path
                 ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(the rows of metadata.csv kept, their image ids, their `y`): each row that cannot be an image of the
    dataset is skipped and counted with its line and value."""
    def skip(bad: pd.Series, reason: str, column: str) -> None:
        nonlocal meta
        report.skip_many(reason, [f"{METADATA_CSV}: line {k + 2} {column}={v!r}" for k, v in
                                  meta.loc[bad, column].items()])
        meta = meta.loc[~bad]

    skip(~meta["split"].isin(SPLITS), f"split not one of {', '.join(SPLITS)} (row skipped)", "split")
    # one rule for a label that names no category, empty or unlisted: the row is skipped and counted; a value that
    # is no integer at all ('nan', 'north') is a damaged file, one line
    skip(meta["y"].str.strip() == "", "y empty: no label (row skipped)", "y")
    y = integer_column(meta["y"], "y", _line(path, meta))
    skip(~y.isin(category_of.index), f"y not in {CATEGORIES_CSV} (row skipped)", "y")
    skip(~meta["filename"].map(safe_relative).astype(bool), "filename escapes the image folder (row skipped)",
         "filename")
    plain = meta["filename"].str.lower().str.endswith(".jpg") & ~meta["filename"].str.contains("/", regex=False)
    skip(~plain, f"filename is not <image id>.jpg in {IMAGE_FOLDER}/ (row skipped)", "filename")
    image_id = meta["filename"].str.slice(0, -4)
    if "image_id" in meta.columns:  # WILDS's own column: the id the filename must carry
        skip(meta["image_id"] != image_id, "image_id is not the filename without .jpg (row skipped)", "image_id")
        image_id = image_id[meta.index]
    skip(image_id.duplicated(), "duplicate filename (later row skipped)", "filename")
    return meta, image_id[meta.index], y[meta.index]


def _images(meta: pd.DataFrame, image_id: pd.Series, original: bool, path: Path, report: QualityReport,
            valid_years: tuple[int, int]) -> pd.DataFrame:
    """The images table of the kept rows, as the Kaggle loader's: location, sequence, datetime, frame order
    and burst length (from the datetimes within a sequence); width and height are left to the JPEG headers."""
    record = _line(path, meta)
    images = pd.DataFrame({
        "split": "train", "wilds_split": meta["split"].to_numpy(),
        "file_name": meta["filename"].to_numpy(),
        "location": integer_column(meta[ORIGINAL_LOCATION if original else "location_remapped"],
                                   ORIGINAL_LOCATION if original else "location_remapped", record).to_numpy(),
        "location_remapped": integer_column(meta["location_remapped"], "location_remapped", record).to_numpy(),
        "seq_id": integer_column(meta["sequence_remapped"], "sequence_remapped", record).astype(str).to_numpy(),
        "datetime_raw": meta["datetime"].astype("string").to_numpy(),
    }, index=pd.Index(image_id.to_numpy(), name="image_id"))
    images["datetime"] = parse_datetimes(images["datetime_raw"], valid_years, report, METADATA_CSV)
    images["datetime_ok"] = images["datetime"].notna()
    number_frames(images)
    images["width"] = images["height"] = pd.array([pd.NA] * len(images), dtype="Int64")
    return images
