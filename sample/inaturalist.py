"""The embedded sample's supplemental source, in the organisers' iNaturalist format: object-centric colour photos
of the sample's species (daylight, one animal filling much of the photo, unlike a camera trap's frame), more of
the species the sample's training cameras rarely see. Written as iNat 2017's mapped file is: int ids, file names
`train_val_images/<super category>/<name>/<id>.jpg`, a pixel COCO `bbox` on part of the annotations, and the
competition's extra keys (license, rights_holder, supercategory, area, iscrowd). Beside it, the competition's
location files (LOCATIONS: train and val, as `inat2017_locations.zip` unpacks) date most photos: the seasonal
species in their season, as at the cameras; some records without a date, others of images not in the subset.

Which species are rare at the training cameras is the sample's own construction: the effect of these photos on
the sample's metrics says nothing about iNaturalist's.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from sample.generate import SPECIES, Species, _draw_animal, season_weight

METADATA = "inaturalist_sample_to_iwildcam_train.json"
FOLDER = "inaturalist_sample"
LOCATIONS = ("inat2017_locations/train2017_locations.json", "inat2017_locations/val2017_locations.json")
SIZES = ((320, 240), (240, 320), (288, 288))  # small stand-ins for iNat's 800-px photos, both orientations
SKIES = np.array([[235, 200, 150], [220, 215, 205], [250, 225, 180]], np.float32)      # BGR: blue, overcast, haze
GROUNDS = np.array([[60, 140, 70], [70, 120, 150], [90, 160, 120]], np.float32)        # grass, sand, meadow


def _photo(rng: np.random.Generator, s: Species, width: int, height: int) -> tuple[bytes, list[float]]:
    """One daylight photo with the animal large and central; (JPEG bytes, its pixel box [x, y, w, h])."""
    horizon = int(height * rng.uniform(0.3, 0.55))
    img = np.empty((height, width, 3), np.float32)
    img[:horizon] = SKIES[rng.integers(len(SKIES))]
    img[horizon:] = GROUNDS[rng.integers(len(GROUNDS))]
    img = cv2.GaussianBlur(img + rng.normal(0, 10, (height, width, 1)).astype(np.float32), (0, 0), 3)
    h = height * rng.uniform(0.45, 0.7) / max(1.0, s.aspect * height / width * 0.9)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.45, 0.6)
    colour = tuple(float(np.clip(c * rng.uniform(0.9, 1.15), 0, 255)) for c in s.colour)
    x0, y0, x1, y1 = _draw_animal(img, s, cx, cy, h, colour, rng)
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, width), min(y1, height)
    ok, jpeg = cv2.imencode(".jpg", np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    return jpeg.tobytes(), [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]


def photo_records(rng: np.random.Generator, image_id: int, width: int, height: int, file_name: str,
                  annotation_id: int, category_id: int, box: list[float], boxed_share: float, observers: int
                  ) -> tuple[dict, dict]:
    """(image, annotation) of one photo as the organisers' mapped files write them: the competition's extra keys,
    and the pixel `bbox` (with area and iscrowd) on a `boxed_share` of the annotations."""
    image = {"id": image_id, "width": width, "height": height, "file_name": file_name, "license": 3,
             "rights_holder": f"observer {rng.integers(observers)}"}
    annotation = {"id": annotation_id, "image_id": image_id, "category_id": category_id}
    if rng.random() < boxed_share:
        annotation.update(bbox=box, area=round(box[2] * box[3], 1), iscrowd=0)
    return image, annotation


def mapped_coco(info: dict, images: list[dict], annotations: list[dict], categories: list[tuple[int, str]]) -> dict:
    """The mapped COCO document: `categories` as (iWildCam id, name), all mammals, one license."""
    return {"info": info, "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "Mammalia"} for i, name in categories],
            "licenses": [{"id": 3, "name": "Attribution-NonCommercial License"}]}


def location_record(rng: np.random.Generator, image_id: int, s: Species | None, undated_share: float) -> dict:
    """One image's record in the iNat competitions' location files (the keys code reading 2018's meets: id, lat,
    lon, date, date_c: the day's share of its year, loc_uncert, user_id, valid; `load` reads id and date); an
    `undated_share` of them without position, date or observer. A species with a season is photographed in it as
    often as its cameras see it then."""
    if rng.random() < undated_share:
        return {"id": image_id, "lat": None, "lon": None, "date": None, "date_c": None, "loc_uncert": None,
                "user_id": None, "valid": False}
    while True:
        day = int(rng.integers(0, 365))
        if s is None or rng.random() < season_weight(s, day) / 1.9:
            break
    when = np.datetime64(f"{rng.integers(2010, 2017)}-01-01") + np.timedelta64(day, "D")
    stamp = f"{when} {rng.integers(6, 19):02d}:{rng.integers(60):02d}:{rng.integers(60):02d}+00:00"
    return {"id": image_id, "lat": round(float(rng.uniform(-30, 40)), 5),
            "lon": round(float(rng.uniform(-110, 150)), 5), "date": stamp, "date_c": round(day / 365, 6),
            "loc_uncert": int(rng.integers(5, 2000)), "user_id": int(rng.integers(1, 50_000)), "valid": True}


def write_location_files(root: Path, files: tuple[str, ...], records: list[dict], file_of: np.ndarray) -> None:
    """Write each record to the file of `files` (under `root`) that `file_of` numbers for it, as json lists."""
    for k, rel in enumerate(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps([r for r, f in zip(records, file_of) if f == k]))


def write_inaturalist(out: str | Path, seed: int, photos: int, train_images: dict[int, int],
                      boxed_share: float = 0.6) -> dict:
    """Write `photos` photos and their mapped metadata under `out` (FOLDER/ and FOLDER/METADATA); a species' share
    of the photos grows as its training images at the cameras (`train_images`, by category id) get fewer. Return
    counts of what was written."""
    out = Path(out) / FOLDER
    rng = np.random.default_rng([seed, 17])
    wild = [s for s in SPECIES if s.detector == "1"]  # iNaturalist's wildlife: no people
    weight = np.array([1.0 / np.sqrt(1.0 + train_images.get(s.id, 0)) for s in wild])
    drawn = rng.choice(len(wild), photos, p=weight / weight.sum())
    images, annotations = [], []
    for k, which in enumerate(drawn):
        s, image_id = wild[which], 100_000 + k
        width, height = SIZES[rng.integers(len(SIZES))]
        jpeg, box = _photo(rng, s, width, height)
        file_name = f"train_val_images/Mammalia/{s.name.replace(' ', '_')}/{image_id}.jpg"
        (out / file_name).parent.mkdir(parents=True, exist_ok=True)
        (out / file_name).write_bytes(jpeg)
        image, annotation = photo_records(rng, image_id, width, height, file_name, 500_000 + k, s.id, box,
                                          boxed_share, 1000)
        images.append(image)
        annotations.append(annotation)
    doc = mapped_coco({"description": "iNaturalist subset mapped to iWildCam categories (embedded sample)",
                       "year": 2017}, images, annotations, [(s.id, s.name) for s in wild])
    (out / METADATA).write_text(json.dumps(doc))
    # the location files cover the whole competition: these photos (about 1 in 7 in val) and others
    dates_rng = np.random.default_rng([seed, 18])
    records = [location_record(dates_rng, image["id"], wild[which], 0.05) for image, which in zip(images, drawn)]
    records += [location_record(dates_rng, 900_000 + k, None, 0.05) for k in range(photos // 3)]
    write_location_files(out.parent, LOCATIONS, records, (dates_rng.random(len(records)) < 0.15).astype(int))
    return {"supplemental_photos": photos, "supplemental_boxes": sum("bbox" in a for a in annotations),
            "supplemental_dated": sum(r["date"] is not None for r in records[:photos])}
