"""Full-scale rehearsal data: iWildCam 2020's shape, written in the shipped formats.

What matters here is the shape the pipeline meets on a real download, not pictures: 217,959 train and
62,894 test images from 441 and 111 cameras, bursts of frames, the real category ids with their relative
frequencies (`iwildcam2020_categories.json`, copied from the competition metadata: 188 classes in train,
15 of them with one or two sequences, seen at one or two cameras), a MegaDetector file with up to 100
boxes per image (most of them low-confidence false positives), one JPEG file per image (small: the
metadata keeps the full-HD size, as in a resized copy of the dataset) and a Landsat tree of every site at
the real number of dates (patches scaled down). Frozen CNN embeddings are written as the parquet file that
`embeddings.backbones: [parquet]` imports: vectors of the backbone's width whose class signal lives in a
low-dimensional subspace, as in real embeddings, so that inference need not run on 280,000 images.

The organisers' iNaturalist subsets are written beside them in their mapped-COCO format (two sources, iNat
2017 with pixel boxes and 2018 without): the real counts are not published, so their size is estimated from
the tarballs (2.2 and 1.5 GB) over the mean JPEG size of each year's competition images (186 GB / 675,170 and
120 GB / 461,939, about 275 and 260 KB at 800 px): about 8,000 and 5,800 photos, more of the rare classes.
Each source names its competition's location files at their real record counts (the photos and every other
image of that competition), 5% of them undated, the others on a day drawn uniformly: the dates cost what real
ones do and carry no class signal.

`scale` and `camera_scale` shrink the shape for the test suite (1/100 of the images on 1/20 of the
cameras still has 100+ classes with the real long tail).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from joblib import Parallel, delayed
from tqdm import tqdm

from sample.generate import ACTIVITY_HOURS, write_kaggle_files, write_landsat
from sample.inaturalist import location_record, mapped_coco, photo_records, write_location_files

CATEGORIES = Path(__file__).with_name("iwildcam2020_categories.json")
SHAPE = {"train_images": 217_959, "test_images": 62_894, "train_locations": 441, "test_locations": 111}
SITES = 552
RESOLUTIONS = ((1920, 1080), (2048, 1536))
MEAN_FALSE_BOXES = 8.0     # low-confidence boxes per image (vegetation, rocks), a long tail up to 100
MAX_BOXES = 100            # MegaDetector's file keeps the top 100 boxes
LANDSAT_DATES = (39, 147, 406)  # fewest, median, most acquisition dates of a site
# (name, estimated photos, share with a COCO box, file_name prefix, metadata file, image folder): an estimate,
# see the module's docstring
INATURALIST = (("inat2017", 8_000, 0.9, "train_val_images", "inaturalist_2017_to_iwildcam_train.json",
                "inaturalist_2017"),
               ("inat2018", 5_800, 0.0, "train_val2018", "inaturalist_2018_to_iwildcam_train.json",
                "inaturalist_2018"))
INAT_SIZES = ((800, 600), (600, 800), (800, 533))  # iNat's photos: 800 px on the longer side
# each source's location files and their records, one per competition image (visipedia/inat_comp's READMEs)
INAT_LOCATIONS = {"inat2017": (("inat2017_locations/train2017_locations.json", 579_184),
                               ("inat2017_locations/val2017_locations.json", 95_986)),
                  "inat2018": (("inat2018_locations/train2018_locations.json", 437_513),
                               ("inat2018_locations/val2018_locations.json", 24_426))}


@dataclass
class Site:
    """What `write_landsat` needs of a camera: its id and the habitat mix around it."""
    id: int
    habitat: np.ndarray


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    raw = rng.bytes(16 * n)
    return [str(uuid.UUID(bytes=raw[16 * i:16 * i + 16], version=4)) for i in range(n)]


def _budgets(rng: np.random.Generator, total: int, n: int) -> np.ndarray:
    """Images per camera: log-normal sizes (a few busy cameras, many quiet ones) summing to `total`."""
    w = rng.lognormal(0.0, 1.0, n)
    share = w / w.sum() * (total - 3 * n)
    base = np.floor(share).astype(int)
    base[np.argsort(share - base)[::-1][:total - 3 * n - base.sum()]] += 1
    return base + 3


def _sinkhorn(m: np.ndarray, rows: np.ndarray, cols: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Scale `m` to the given row and column sums: cameras' sequence counts against classes' frequencies."""
    for _ in range(iterations):
        m *= (rows / np.maximum(m.sum(axis=1), 1e-12))[:, None]
        m *= cols / np.maximum(m.sum(axis=0), 1e-12)
    return m


def _camera_jpegs(folder: Path, names: list[str], width: int, height: int, habitat: np.ndarray, night: np.ndarray,
                  colours: np.ndarray, boxes: np.ndarray, seed: int) -> None:
    """One small JPEG per image: the camera's scene, the animal as a blob of its class colour, night frames
    grey, sensor noise."""
    rng = np.random.default_rng(seed)
    palette = np.array([[40, 95, 45], [90, 170, 185], [120, 120, 80]], np.float32)
    scene = np.clip(habitat @ palette + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.float32)
    for name, is_night, colour, box in zip(names, night, colours, boxes):
        img = scene + rng.normal(0, 4, (height, width, 1)).astype(np.float32)
        if not np.isnan(box[0]):
            x, y, w, h = box * [width, height, width, height]
            cv2.ellipse(img, (int(x + w / 2), int(y + h / 2)), (max(int(w / 2), 1), max(int(h / 2), 1)), 0, 0, 360,
                        colour.tolist(), -1)
        if is_night:
            img = np.repeat(img.mean(axis=2, keepdims=True) * 0.7, 3, axis=2)
        ok, jpeg = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 80])
        (folder / name).write_bytes(jpeg.tobytes())


def _site_landsat(root: Path, site: Site, dates: int, size: int, seed: int) -> int:
    return write_landsat(root, site, np.random.default_rng([seed, site.id, 1]),
                         {"landsat_size": size, "landsat_dates": [dates, dates]})


@dataclass
class Cameras:
    """Per camera: its Landsat site id, split, habitat mix, distance to the animals, burst length, resolution
    index, first day and days of operation, and whether its clock was never set."""
    loc_ids: np.ndarray
    split: np.ndarray
    habitat: np.ndarray
    distance: np.ndarray
    burst: np.ndarray
    resolution: np.ndarray
    start: np.ndarray
    days: np.ndarray
    bad_clock: np.ndarray


@dataclass
class Classes:
    """Per class: habitat preference, activity pattern, body size, colour and group size."""
    habitat: np.ndarray
    activity: np.ndarray
    body: np.ndarray
    colour: np.ndarray
    group: np.ndarray


@dataclass
class Frames:
    """Per image: camera, class, sequence index, frame number and frames in its sequence; and sequence count."""
    cam: np.ndarray
    cls: np.ndarray
    seq: np.ndarray
    frame_num: np.ndarray
    seq_frames: np.ndarray
    n_seq: int


def _cameras(rng: np.random.Generator, n_train: int, n_test: int) -> Cameras:
    n_cams = n_train + n_test
    loc_ids = np.sort(rng.choice(SITES, n_cams, replace=False))
    split = np.array(["train"] * n_train + ["test"] * n_test)
    rng.shuffle(split)
    return Cameras(loc_ids, split, rng.dirichlet(np.full(3, 0.6), n_cams), rng.uniform(0.6, 1.5, n_cams),
                   rng.choice([1, 3, 5], n_cams, p=[0.3, 0.45, 0.25]),
                   rng.choice(len(RESOLUTIONS), n_cams, p=[0.6, 0.4]), rng.integers(0, 5 * 365, n_cams),
                   rng.integers(60, 500, n_cams), rng.random(n_cams) < 0.02)


def _classes(rng: np.random.Generator, n_classes: int) -> Classes:
    return Classes(rng.dirichlet(np.full(3, 0.5), n_classes), rng.choice(list(ACTIVITY_HOURS), n_classes),
                   rng.lognormal(np.log(0.15), 0.5, n_classes), rng.integers(20, 235, (n_classes, 3)),
                   rng.choice([1, 1, 1, 2, 4], n_classes))


def _class_mix(rng: np.random.Generator, cams: Cameras, classes: Classes, counts: np.ndarray, empty: int,
               n_images: dict[str, int], camera_scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """(each camera's class mix over sequences, its image budget, the sequences it must open with). Which
    training cameras saw a class: one or two for the rarest, up to all for empty; the training mix matches
    the real class frequencies; every class is in train at least once, at its busiest camera."""
    n_classes, n_cams = len(counts), len(cams.split)
    affinity = (cams.habitat @ classes.habitat.T) ** 3 + 1e-6  # (cameras, classes)
    train_cams, test_cams = np.flatnonzero(cams.split == "train"), np.flatnonzero(cams.split == "test")
    n_train, n_test = len(train_cams), len(test_cams)
    present = np.zeros((n_cams, n_classes), bool)
    n_seen = np.clip(np.round(0.9 * np.sqrt(counts) * camera_scale), 1, n_train).astype(int)
    n_seen[counts <= 2] = np.minimum(counts[counts <= 2], n_seen[counts <= 2]).astype(int)
    for c in range(n_classes):
        p = affinity[train_cams, c] / affinity[train_cams, c].sum()
        present[rng.choice(train_cams, n_seen[c], replace=False, p=p), c] = True
        present[test_cams, c] = rng.random(n_test) < n_seen[c] / n_train
    present[:, empty] = True
    budgets = np.zeros(n_cams, int)
    budgets[train_cams] = _budgets(rng, n_images["train"], n_train)
    budgets[test_cams] = _budgets(rng, n_images["test"], n_test)
    mix = np.where(present, affinity, 0.0)
    seqs_per_cam = budgets / np.where(cams.burst > 1, cams.burst * 0.9, 1)
    mix[train_cams] = _sinkhorn(mix[train_cams], seqs_per_cam[train_cams],
                                counts / counts.sum() * seqs_per_cam[train_cams].sum())
    mix /= mix.sum(axis=1, keepdims=True)
    busiest = np.where(present[train_cams], budgets[train_cams, None], -1).argmax(axis=0)
    first_seqs = {cam: np.flatnonzero(busiest == i) for i, cam in enumerate(train_cams)}
    return mix, budgets, first_seqs


def _frames(rng: np.random.Generator, cams: Cameras, mix: np.ndarray, budgets: np.ndarray, first_seqs: dict
            ) -> Frames:
    """Sequences and frames, camera by camera, until each camera's image count is reached exactly."""
    per_camera, n_seq = [], 0
    for cam in range(len(budgets)):
        burst = cams.burst[cam]
        k = int(budgets[cam] / max(burst * 0.5, 1)) + 5
        cls = np.concatenate([first_seqs.get(cam, []), rng.choice(mix.shape[1], k, p=mix[cam])]).astype(int)
        k = len(cls)
        size = np.where(rng.random(k) < 0.15, rng.integers(1, burst + 1, k), burst)
        ends = np.cumsum(size)
        last = int(np.searchsorted(ends, budgets[cam]))
        size, cls = size[:last + 1].copy(), cls[:last + 1]
        size[-1] -= ends[last] - budgets[cam]
        seq = np.repeat(np.arange(len(size)), size)
        frame_num = np.arange(len(seq)) - np.repeat(np.cumsum(size) - size, size)
        per_camera.append((np.full(len(seq), cam), np.repeat(cls, size), seq + n_seq, frame_num,
                           np.repeat(size, size)))
        n_seq += len(size)
    return Frames(*(np.concatenate([f[i] for f in per_camera]) for i in range(5)), n_seq=n_seq)


def _timestamps(rng: np.random.Generator, cams: Cameras, classes: Classes, frames: Frames
                ) -> tuple[list[str], np.ndarray]:
    """(each image's `datetime` as shipped, whether it is at night): the sequence's day at the camera, an hour
    from the class's activity, one second per frame; a camera whose clock was never set is 40 years early."""
    seq_cam, seq_cls = np.zeros(frames.n_seq, int), np.zeros(frames.n_seq, int)
    seq_cam[frames.seq], seq_cls[frames.seq] = frames.cam, frames.cls
    hours = np.empty(frames.n_seq)
    for name, modes in ACTIVITY_HOURS.items():
        idx = np.flatnonzero(classes.activity[seq_cls] == name)
        mode = rng.integers(len(modes), size=len(idx))
        means, spreads = np.array([m for m, _ in modes])[mode], np.array([s for _, s in modes])[mode]
        hours[idx] = rng.normal(means, spreads) % 24
    day = cams.start[seq_cam] + rng.uniform(0, 1, frames.n_seq) * cams.days[seq_cam]
    seconds = np.round((day.astype(int) * 24 + hours) * 3600).astype(np.int64)[frames.seq] + frames.frame_num
    epoch = datetime(2013, 1, 1)
    stamps = [epoch + timedelta(seconds=int(s)) for s in seconds]
    datetimes = [f"{(t - timedelta(days=40 * 365) if bad else t):%Y-%m-%d %H:%M:%S}.000"
                 for t, bad in zip(stamps, cams.bad_clock[frames.cam])]
    return datetimes, np.array([t.hour < 6 or t.hour >= 19 for t in stamps])


def _detections(rng: np.random.Generator, cams: Cameras, classes: Classes, frames: Frames, night: np.ndarray,
                image_ids: list[str], empty: int, person: set[int]) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(MegaDetector's per-image entries, each image's top animal box or NaN, boxes per image): the animals
    (mostly confident), then false positives (mostly not), at most MAX_BOXES, in descending confidence."""
    n = len(frames.cls)
    seq_cls = np.zeros(frames.n_seq, int)
    seq_cls[frames.seq] = frames.cls
    seq_group = np.where(seq_cls == empty, 0, rng.integers(1, classes.group[seq_cls] + 1))
    animals = seq_group[frames.seq] * (rng.random(n) < 0.92)
    false = np.minimum(rng.negative_binomial(1, 1 / (1 + MEAN_FALSE_BOXES), n), MAX_BOXES - animals)
    per_image = animals + false
    owner = np.repeat(np.arange(n), per_image)
    is_animal = np.arange(len(owner)) - np.repeat(np.cumsum(per_image) - per_image, per_image) < animals[owner]
    m = len(owner)
    h = np.where(is_animal, classes.body[frames.cls[owner]] / cams.distance[frames.cam[owner]]
                 * rng.uniform(0.8, 1.2, m), rng.uniform(0.03, 0.3, m))
    w = np.clip(h * rng.uniform(0.8, 2.0, m) * 9 / 16, 0.01, 0.98)
    h = np.clip(h, 0.01, 0.98)
    x, y = rng.uniform(0, 1, m) * (1 - w), np.clip(rng.normal(0.55, 0.15, m), 0, 1) * (1 - h)
    conf = np.where(is_animal, 0.97 - np.abs(rng.normal(0, 0.1, m)) - 0.12 * night[owner],
                    rng.beta(1.2, 9.0, m))
    conf = np.where(is_animal & (rng.random(m) < 0.05), rng.uniform(0.02, 0.2, m), conf)
    conf = np.round(np.clip(conf, 0.005, 0.999), 3)
    category = np.where(is_animal & np.isin(frames.cls[owner], list(person)), "2", "1")
    order = np.lexsort((-conf, owner))
    owner, conf, category = owner[order], conf[order], category[order]
    bbox = np.round(np.column_stack([x, y, w, h])[order], 4)
    top_box = np.full((n, 4), np.nan)
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if m else np.array([], int)
    top_animal = first[is_animal[order][first]]
    top_box[owner[top_animal]] = bbox[top_animal]
    starts = np.r_[0, np.cumsum(per_image)]
    entries = []
    for i in range(n):
        dets = [{"category": str(category[j]), "conf": float(conf[j]), "bbox": bbox[j].tolist()}
                for j in range(starts[i], starts[i + 1])]
        entries.append({"id": image_ids[i], "max_detection_conf": dets[0]["conf"] if dets else 0.0,
                        "detections": dets})
    return entries, top_box, per_image


def _write_metadata(out: Path, cams: Cameras, frames: Frames, image_ids: list[str], seq_uuid: list[str],
                    datetimes: list[str], class_ids: np.ndarray, categories: list[dict],
                    detector_images: list[dict]) -> None:
    """The COCO Camera Traps metadata, the detector file and the submission template, in the shipped names."""
    size = np.array(RESOLUTIONS)[cams.resolution]
    images = {"train": [], "test": []}
    annotations = []
    rights = ("Justin Brown", "Erin Boydston", "Jeff Wilson")
    for i, cam in enumerate(frames.cam):
        images[cams.split[cam]].append({
            "seq_num_frames": int(frames.seq_frames[i]), "location": int(cams.loc_ids[cam]),
            "datetime": datetimes[i], "id": image_ids[i], "frame_num": int(frames.frame_num[i]),
            "seq_id": seq_uuid[frames.seq[i]], "width": int(size[cam, 0]), "height": int(size[cam, 1]),
            "file_name": f"{image_ids[i]}.jpg", "rights_holder": rights[cam % len(rights)]})
        if cams.split[cam] == "train":
            annotations.append({"id": image_ids[i] + "-a", "image_id": image_ids[i],
                                "category_id": int(class_ids[frames.cls[i]])})
    info = {"version": "rehearsal", "description": "iWildCam 2020 shape rehearsal", "year": 2020}
    write_kaggle_files(out, info, images["train"], images["test"], categories, annotations, detector_images)


def _write_jpegs(out: Path, cams: Cameras, classes: Classes, frames: Frames, image_ids: list[str],
                 night: np.ndarray, top_box: np.ndarray, jpeg_divisor: int, seed: int, n_jobs: int) -> None:
    """One JPEG per image, camera by camera, at 1/jpeg_divisor of the metadata's size."""
    for s in ("train", "test"):
        (out / s).mkdir(parents=True, exist_ok=True)
    size = np.array(RESOLUTIONS)[cams.resolution]
    n_cams = len(cams.split)
    by_cam = np.split(np.argsort(frames.cam, kind="stable"),
                      np.cumsum(np.bincount(frames.cam, minlength=n_cams))[:-1])
    Parallel(n_jobs=n_jobs)(
        delayed(_camera_jpegs)(out / cams.split[cam], [f"{image_ids[i]}.jpg" for i in idx],
                               int(size[cam, 0]) // jpeg_divisor, int(size[cam, 1]) // jpeg_divisor,
                               cams.habitat[cam], night[idx], classes.colour[frames.cls[idx]], top_box[idx],
                               seed * 1000 + cam)
        for cam, idx in enumerate(tqdm(by_cam, desc="rehearsal: JPEGs", unit="camera")))


def _write_landsat(out: Path, rng: np.random.Generator, cams: Cameras, every_site: bool, size: int, seed: int,
                   n_jobs: int) -> tuple[int, int]:
    """(sites, site-dates written): every site at the real number of dates (fewest 39, median 147, most 406),
    or only the cameras' sites."""
    lo, median, hi = LANDSAT_DATES
    site_habitat = rng.dirichlet(np.full(3, 0.6), SITES)
    site_habitat[cams.loc_ids] = cams.habitat
    site_dates = np.clip(np.round(rng.lognormal(np.log(median), 0.45, SITES)), lo, hi).astype(int)
    sites = range(SITES) if every_site else cams.loc_ids
    dates = Parallel(n_jobs=n_jobs)(
        delayed(_site_landsat)(out, Site(int(s), site_habitat[s]), int(site_dates[s]), size, seed)
        for s in tqdm(sites, desc="rehearsal: Landsat sites", unit="site"))
    return len(sites), int(sum(dates))


@dataclass
class Photos:
    """The supplemental photos: per photo its image id (`<source>:<id>`) and class index, and the
    data.supplemental entries of their sources."""
    ids: list[str]
    cls: np.ndarray
    sources: list[dict]


def _write_inaturalist(out: Path, seed: int, scale: float, counts: np.ndarray, classes: Classes,
                       categories: list[dict], excluded: set[int], jpeg_divisor: int) -> tuple[Photos, dict]:
    """The iNaturalist sources (INATURALIST, times `scale`) in the organisers' mapped format: int ids, iNat's
    file names, a pixel bbox on each year's share, extra keys; a class's share of the photos grows as its
    camera-trap count falls (as the organisers picked the classes that might be in the test set); no empty or
    human class. Their own generator (`seed`): the camera-trap data are the same with or without them."""
    rng, dates_rng = np.random.default_rng([seed, 23]), np.random.default_rng([seed, 24])
    eligible = np.array([c for c in range(len(counts)) if c not in excluded])
    weight = 1.0 / np.sqrt(1.0 + counts[eligible])
    ids, cls, sources, written = [], [], [], {}
    for name, full, boxed, prefix, metadata, folder in INATURALIST:
        taken: set[int] = set()
        n = max(1, round(full * scale))
        drawn = eligible[rng.choice(len(eligible), n, p=weight / weight.sum())]
        images, annotations = [], []
        for k, c in enumerate(drawn):
            image_id = int(rng.integers(1, 3_000_000))
            while image_id in taken:
                image_id = int(rng.integers(1, 3_000_000))
            taken.add(image_id)
            width, height = INAT_SIZES[rng.integers(len(INAT_SIZES))]
            file_name = f"{prefix}/Mammalia/{categories[c]['name'].replace(' ', '_')}/{image_id}.jpg"
            box = _inat_jpeg(out / folder / file_name, rng, classes.colour[c], width, height, jpeg_divisor)
            image, annotation = photo_records(rng, image_id, width, height, file_name, len(annotations) + 1,
                                              categories[c]["id"], box, boxed, 100_000)
            images.append(image)
            annotations.append(annotation)
            ids.append(f"{name}:{image_id}")
            cls.append(c)
        doc = mapped_coco({"description": f"{name} mapped to iWildCam categories (rehearsal)"}, images, annotations,
                          [(categories[c]["id"], categories[c]["name"]) for c in eligible])
        (out / metadata).write_text(json.dumps(doc))
        files, records, dated = _write_locations(out, dates_rng, scale, name, [im["id"] for im in images])
        sources.append({"name": name, "metadata": metadata, "images": folder, "locations": files})
        written[name] = {"photos": n, "boxes": sum("bbox" in a for a in annotations), "location_records": records,
                         "dated": dated}
    return Photos(ids, np.array(cls, int), sources), written


def _write_locations(out: Path, rng: np.random.Generator, scale: float, name: str, photo_ids: list[int]
                     ) -> tuple[list[str], int, int]:
    """Source `name`'s location files (INAT_LOCATIONS, records times `scale`): its photos and other images of the
    competition (ids above any photo's), spread over the files as their sizes; return the files, the records and
    how many photos are dated."""
    files, sizes = zip(*INAT_LOCATIONS[name])
    total = max(len(photo_ids), round(sum(sizes) * scale))
    ids = photo_ids + list(range(3_000_000, 3_000_000 + total - len(photo_ids)))
    records = [location_record(rng, image_id, None, 0.05) for image_id in ids]
    write_location_files(out, files, records, rng.choice(len(files), total, p=np.array(sizes) / sum(sizes)))
    return list(files), total, sum(r["date"] is not None for r in records[:len(photo_ids)])


def _inat_jpeg(path: Path, rng: np.random.Generator, colour: np.ndarray, width: int, height: int,
               divisor: int) -> list[float]:
    """A daylight photo at 1/`divisor` of its metadata size, the animal (an ellipse of its class's colour)
    filling much of it; returns its box in the metadata's pixels [x, y, w, h]."""
    w, h = max(width // divisor, 8), max(height // divisor, 8)
    img = np.empty((h, w, 3), np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.55))
    img[:horizon], img[horizon:] = (230, 200, 160), (70, 140, 90)
    bw, bh = w * rng.uniform(0.5, 0.8), h * rng.uniform(0.45, 0.7)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.45, 0.6)
    cv2.ellipse(img, (int(cx), int(cy)), (int(bw / 2), int(bh / 2)), 0, 0, 360, [int(v) for v in colour], -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    x0, y0 = max(cx - bw / 2, 0) * divisor, max(cy - bh / 2, 0) * divisor
    x1, y1 = min(cx + bw / 2, w) * divisor, min(cy + bh / 2, h) * divisor
    return [round(x0, 1), round(y0, 1), round(x1 - x0, 1), round(y1 - y0, 1)]


def generate_rehearsal(out: str | Path, seed: int = 2020, scale: float = 1.0, camera_scale: float = 1.0,
                       jpeg_divisor: int = 12, landsat_size: int = 48, embedding_dim: int = 1280,
                       n_jobs: int = 2) -> dict:
    """Write the rehearsal dataset under `out` (Kaggle layout, the iNaturalist sources, and `embeddings.parquet`
    to import); return counts of what was written, and the sources' data.supplemental entries."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    meta = json.loads(CATEGORIES.read_text())["categories"]
    cats = [c for c in meta if c["count"] > 0]
    class_ids = np.array([c["id"] for c in cats])
    counts = np.array([c["count"] for c in cats], float)
    empty = int(np.flatnonzero(class_ids == 0)[0])
    person = {i for i, c in enumerate(cats) if c["name"] in ("human", "homo sapiens")}
    n_train = max(12, round(SHAPE["train_locations"] * camera_scale))
    n_test = max(3, round(SHAPE["test_locations"] * camera_scale))
    n_images = {"train": round(SHAPE["train_images"] * scale), "test": round(SHAPE["test_images"] * scale)}

    cams = _cameras(rng, n_train, n_test)
    classes = _classes(rng, len(cats))
    frames = _frames(rng, cams, *_class_mix(rng, cams, classes, counts, empty, n_images, camera_scale))
    image_ids, seq_uuid = _uuids(rng, len(frames.cls)), _uuids(rng, frames.n_seq)
    datetimes, night = _timestamps(rng, cams, classes, frames)
    detector_images, top_box, per_image = _detections(rng, cams, classes, frames, night, image_ids, empty, person)
    _write_metadata(out, cams, frames, image_ids, seq_uuid, datetimes, class_ids,
                    [{"id": c["id"], "name": c["name"]} for c in meta], detector_images)
    del detector_images
    _write_jpegs(out, cams, classes, frames, image_ids, night, top_box, jpeg_divisor, seed, n_jobs)
    sites, dates = _write_landsat(out, rng, cams, camera_scale >= 1, landsat_size, seed, n_jobs)
    camera_counts = np.bincount(frames.cls[cams.split[frames.cam] == "train"], minlength=len(cats))
    photos, photo_counts = _write_inaturalist(out, seed, scale, camera_counts, classes, cats, {empty, *person},
                                              jpeg_divisor)
    written = _write_embeddings(out / "embeddings.parquet", rng, image_ids, frames.cls, frames.cam, empty, top_box,
                                embedding_dim, photos, seed)
    train_rows = cams.split[frames.cam] == "train"
    return {"train_images": n_images["train"], "test_images": n_images["test"], "train_locations": n_train,
            "test_locations": n_test, "sequences": frames.n_seq,
            "train_classes": int((np.bincount(frames.cls[train_rows], minlength=len(cats)) > 0).sum()),
            "detector_boxes": int(per_image.sum()), "max_boxes_per_image": int(per_image.max()),
            "landsat_sites": sites, "landsat_site_dates": dates, "landsat_files": 3 * dates,
            "embedding_rows": written, "supplemental_photos": photo_counts, "supplemental": photos.sources}


def _write_embeddings(path: Path, rng: np.random.Generator, image_ids: list[str], cls_of: np.ndarray,
                      cam_of: np.ndarray, empty: int, top_box: np.ndarray, dim: int, photos: Photos, seed: int,
                      latent: int = 64, chunk: int = 20_000) -> int:
    """Frame vectors: the camera's scene plus a little of the animal; crop vectors (images with a confident
    animal box only): the animal's class plus noise. Class and scene live in `latent`-dimensional
    subspaces of the `dim`-wide space, as real CNN features concentrate in a few directions. Then the
    supplemental photos (their own generator): the animal's class, a little weaker, fills frame and crop, both
    shifted by a daylight "scene" of their own, unlike any camera's."""
    n_classes, n_cams = int(max(cls_of.max(), photos.cls.max(initial=0))) + 1, int(cam_of.max()) + 1
    to_class = rng.standard_normal((latent, dim), np.float32) / np.sqrt(latent)
    to_scene = rng.standard_normal((latent, dim), np.float32) / np.sqrt(latent)
    class_vec = rng.standard_normal((n_classes, latent), np.float32) @ to_class
    scene_vec = rng.standard_normal((n_cams, latent), np.float32) @ to_scene
    has_crop = ~np.isnan(top_box[:, 0]) & (cls_of != empty)
    names = [f"frame_emb_{k}" for k in range(dim)] + [f"crop_emb_{k}" for k in range(dim)]
    schema = pa.schema([("image_id", pa.string())] + [(c, pa.float32()) for c in names])
    with pq.ParquetWriter(path, schema) as writer:
        for lo in tqdm(range(0, len(image_ids), chunk), desc="rehearsal: embeddings", unit="chunk"):
            sl = slice(lo, lo + chunk)
            c, cam, k = cls_of[sl], cam_of[sl], len(cls_of[sl])
            animal = (c != empty)[:, None]
            frame = scene_vec[cam] + 0.35 * animal * class_vec[c] + rng.standard_normal((k, dim), np.float32) * 0.6
            crop = class_vec[c] + 0.3 * scene_vec[cam] + rng.standard_normal((k, dim), np.float32) * 1.5
            crop[~has_crop[sl]] = np.nan
            writer.write_table(_embedding_rows(image_ids[sl], frame, crop, schema))
        photo_rng = np.random.default_rng([seed, 29])
        daylight = photo_rng.standard_normal(latent, np.float32) @ to_scene
        for lo in range(0, len(photos.ids), chunk):
            c = photos.cls[lo:lo + chunk]
            noise = photo_rng.standard_normal((2, len(c), dim), np.float32)
            writer.write_table(_embedding_rows(photos.ids[lo:lo + chunk],
                                               daylight + 0.8 * class_vec[c] + noise[0] * 0.6,
                                               0.8 * class_vec[c] + 0.5 * daylight + noise[1] * 1.5, schema))
    return len(image_ids) + len(photos.ids)


def _embedding_rows(ids: list[str], frame: np.ndarray, crop: np.ndarray, schema: pa.Schema) -> pa.Table:
    columns = np.ascontiguousarray(np.hstack([frame, crop]).astype(np.float32).T)
    return pa.Table.from_arrays([pa.array(ids)] + [pa.array(column) for column in columns], schema=schema)
