"""The WILDS re-packing of a Kaggle-layout copy: what `p-lambda/wilds` ships as iWildCam2020-WILDS v2.0.

The labelled train images are split as WILDS splits them: whole cameras for the out-of-distribution `val`
and `test`, and, at the remaining (training) cameras, whole days for the in-distribution `id_val` and
`id_test`; the rest is `train`. Image counts per split and camera counts are targets (the official ones
at full shape, shares of them for the sample); images beyond a split's target are left out, as WILDS left
out part of the competition's train set. Written: metadata.csv (the columns the WILDS loader reads, plus
the original `location` where asked), categories.csv, train/<image id>.jpg (hard links), and, as a user
adds them beside a WILDS download, the competition's MegaDetector file and the Landsat tree.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from data.coco import TRAIN_JSON
from data.landsat import LANDSAT_DIR
from data.megadetector import DETECTOR_JSON

# iWildCam2020-WILDS v2.0 (Koh et al. 2021, table 15): images per split, and training / OOD cameras
IMAGES = {"train": 129_809, "val": 14_961, "test": 42_791, "id_val": 7_314, "id_test": 8_154}
CAMERAS = {"train": 243, "val": 32, "test": 48}


def _pick_cameras(sizes: pd.Series, n: int, images: int, rng: np.random.Generator) -> list[int]:
    """`n` cameras drawn at random, then the smallest swapped for the largest left until they hold `images`."""
    order = list(rng.permutation(sizes.index.to_numpy()))
    chosen, rest = order[:n], sorted(order[n:], key=lambda c: -sizes[c])
    while sizes[chosen].sum() < images and rest and sizes[rest[0]] > min(sizes[c] for c in chosen):
        smallest = min(chosen, key=lambda c: sizes[c])
        chosen[chosen.index(smallest)] = rest.pop(0)
        rest = sorted(rest + [smallest], key=lambda c: -sizes[c])
    return [int(c) for c in chosen]


def _first(rows: pd.DataFrame, n: int) -> pd.Index:
    """`n` images of `rows`: the earliest same share of each camera's images, so every camera keeps some."""
    ordered = rows.sort_values(["datetime", "seq_id", "frame_num"])
    at_camera = ordered.groupby("location")
    share = at_camera.cumcount() / at_camera["location"].transform("size")
    return share.sort_values(kind="stable").index[:n]


def assign_splits(images: pd.DataFrame, image_targets: dict[str, int], camera_targets: dict[str, int],
                  seed: int) -> pd.Series:
    """WILDS split of each labelled image (index of `images`: location, seq_id, datetime, frame_num), NaN for
    those left out."""
    rng = np.random.default_rng(seed)
    sizes = images.groupby("location").size()
    split = pd.Series(np.nan, index=images.index, dtype=object)
    free = sizes
    for name in ("test", "val"):
        cameras = _pick_cameras(free, camera_targets[name], image_targets[name], rng)
        split[_first(images[images["location"].isin(cameras)], image_targets[name])] = name
        free = free.drop(cameras)
    in_distribution = image_targets["train"] + image_targets["id_val"] + image_targets["id_test"]
    cameras = _pick_cameras(free, min(camera_targets["train"], len(free)), in_distribution, rng)
    at_train = images[images["location"].isin(cameras)]
    day = at_train["location"].astype(str) + " " + at_train["datetime"].dt.strftime("%Y-%m-%d")
    days = rng.permutation(day.unique())
    per_day = day.value_counts()
    taken = 0
    for name in ("id_test", "id_val"):
        chosen, total = [], 0
        for d in days[taken:]:
            if total >= image_targets[name]:
                break
            chosen.append(d)
            total += per_day[d]
        taken += len(chosen)
        split[_first(at_train[day.isin(chosen)], image_targets[name])] = name
    rest = at_train[~day.isin(days[:taken])]
    split[_first(rest, image_targets["train"])] = "train"
    return split


def write_wilds(kaggle: str | Path, out: str | Path, image_targets: dict[str, int] = IMAGES,
                camera_targets: dict[str, int] = CAMERAS, seed: int = 0, original_locations: bool = True,
                detector_file: bool = True, landsat: bool = True) -> dict:
    """Write the WILDS layout of the Kaggle-layout copy at `kaggle` to `out`; return its shape."""
    kaggle, out = Path(kaggle), Path(out)
    doc = orjson.loads((kaggle / TRAIN_JSON).read_bytes())
    images = pd.DataFrame.from_records(doc["images"]).set_index("id")
    labels = pd.DataFrame.from_records(doc["annotations"]).drop_duplicates("image_id").set_index("image_id")
    images = images.loc[images.index.isin(labels.index)]
    images["datetime"] = pd.to_datetime(images["datetime"], format="ISO8601", errors="coerce")
    images = images[images["datetime"].notna()]  # WILDS parses every datetime: images with broken ones are out
    split = assign_splits(images, image_targets, camera_targets, seed).dropna()
    kept = images.loc[split.index].assign(split=split, category_id=labels.loc[split.index, "category_id"])
    classes = np.sort(kept["category_id"].unique())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    (out / "train").mkdir(parents=True, exist_ok=True)
    locations = {loc: k for k, loc in enumerate(sorted(kept["location"].unique()))}
    sequences = {s: k for k, s in enumerate(sorted(kept["seq_id"].unique()))}
    meta = pd.DataFrame({
        "split": kept["split"], "location_remapped": kept["location"].map(locations),
        **({"location": kept["location"]} if original_locations else {}),
        "sequence_remapped": kept["seq_id"].map(sequences), "y": np.searchsorted(classes, kept["category_id"]),
        "datetime": kept["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S.%f"), "filename": kept.index + ".jpg",
    }).reset_index(drop=True)
    meta.to_csv(out / "metadata.csv")  # WILDS's file starts with pandas' unnamed index column too
    pd.DataFrame({"y": np.arange(len(classes)), "category_id": classes,
                  "name": [names[c] for c in classes]}).to_csv(out / "categories.csv", index=False)
    for image_id, file_name in kept["file_name"].items():
        os.link(kaggle / "train" / file_name, out / "train" / f"{image_id}.jpg")
    if detector_file:
        (out / DETECTOR_JSON).parent.mkdir(parents=True, exist_ok=True)
        os.link(kaggle / DETECTOR_JSON, out / DETECTOR_JSON)
    if landsat and (kaggle / LANDSAT_DIR).is_dir():
        shutil.copytree(kaggle / LANDSAT_DIR, out / LANDSAT_DIR, copy_function=os.link)
    return {"images": len(meta), **{f"{s}_images": int((meta["split"] == s).sum()) for s in IMAGES},
            "locations": len(locations), "classes": len(classes),
            **{f"{s}_locations": int(meta.loc[meta["split"] == s, "location_remapped"].nunique()) for s in IMAGES}}
