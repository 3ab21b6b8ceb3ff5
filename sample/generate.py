"""Embedded sample: a small iWildCam-2020-like dataset written in exactly the shipped file formats.

The class signal is spread on purpose: a species depends on the camera's habitat (which also sets the
site's Landsat signature), on time of day and season, on body size (box size, scaled by the camera's
distance to the trail) and on appearance (colour, pattern, shape in the pixels). No single feature
family sees all of it. Nothing here is imported by the pipeline's loaders: the pipeline reads these
files only through `data/`.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

HABITATS = ("forest", "grassland", "wetland")
ACTIVITY_HOURS = {  # (mean hour, spread) mixtures of when a species is in front of cameras
    "diurnal": [(11.0, 3.0)],
    "nocturnal": [(0.5, 3.0)],
    "crepuscular": [(6.0, 1.2), (18.5, 1.2)],
    "cathemeral": [(12.0, 12.0)],
}


@dataclass(frozen=True)
class Species:
    id: int
    name: str
    abundance: float
    size: float          # body height as a share of frame height for a camera at distance 1
    aspect: float        # body width / height
    activity: str
    habitat: tuple       # preference for forest, grassland, wetland
    colour: tuple        # BGR by day
    pattern: str         # plain | spots | stripes | patch
    group: int           # largest group seen in one frame
    detector: str = "1"  # MegaDetector category ("1" animal, "2" person)
    season_peak: float | None = None  # day of year of most sightings


SPECIES = (
    Species(2, "tayassu pecari", 1.0, 0.20, 1.7, "diurnal", (1.0, 0.2, 0.5), (55, 55, 60), "plain", 4),
    Species(3, "dasyprocta punctata", 1.4, 0.10, 1.6, "diurnal", (1.0, 0.3, 0.2), (40, 90, 170), "plain", 1),
    Species(6, "mazama americana", 0.7, 0.26, 1.3, "crepuscular", (0.8, 0.8, 0.2), (30, 60, 150), "patch", 1),
    Species(8, "tapirus terrestris", 0.5, 0.34, 1.9, "nocturnal", (0.6, 0.1, 1.0), (45, 50, 65), "plain", 1,
            season_peak=60.0),
    Species(24, "cuniculus paca", 0.8, 0.12, 1.7, "nocturnal", (0.9, 0.1, 0.7), (50, 80, 120), "spots", 1),
    Species(71, "leopardus pardalis", 0.5, 0.16, 2.0, "nocturnal", (0.9, 0.4, 0.2), (60, 150, 200), "spots", 1),
    Species(112, "bos taurus", 0.7, 0.40, 1.6, "diurnal", (0.05, 1.0, 0.4), (235, 235, 235), "patch", 3),
    Species(374, "hydrochoerus hydrochaeris", 0.8, 0.22, 1.5, "cathemeral", (0.1, 0.5, 1.0), (70, 110, 150),
            "plain", 3, season_peak=240.0),
    Species(14, "homo sapiens", 0.3, 0.55, 0.45, "diurnal", (0.5, 0.6, 0.3), (160, 90, 40), "stripes", 2,
            detector="2"),
)
EMPTY = (0, "empty")
EXTRA_CATEGORIES = ((572, "unknown"),)  # listed like the real file, never annotated here
RIGHTS_HOLDERS = ("Justin Brown", "Erin Boydston", "Jeff Wilson", "Ana Carolina Srbek-Araujo")

# Landsat surface reflectance x 10000 per band (ultrablue..swir2) and brightness temperature x 10 (K).
HABITAT_SPECTRA = np.array([
    [220, 280, 520, 330, 3300, 1500, 650, 2960, 2950],     # forest
    [420, 520, 820, 950, 2500, 2700, 1800, 3040, 3030],    # grassland
    [520, 620, 760, 560, 700, 350, 200, 2930, 2925],       # wetland (open water and marsh)
], dtype=np.float64)
CLOUD_SPECTRUM = np.array([4800, 4900, 5000, 5100, 5400, 3900, 2700, 2650, 2640], dtype=np.float64)
QA_FILL, QA_CLEAR, QA_WATER, QA_SHADOW, QA_CLOUD = 1, 2, 4, 8, 32
QA_CONF_LOW, QA_CONF_MED, QA_CONF_HIGH, QA_CIRRUS_LOW = 1 << 6, 2 << 6, 3 << 6, 1 << 8
DEPLOYMENT_START = datetime(2013, 1, 1)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _smooth_field(rng: np.random.Generator, height: int, width: int, cells: int = 6) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random cells upsampled smoothly."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _hour(rng: np.random.Generator, activity: str) -> float:
    modes = ACTIVITY_HOURS[activity]
    mean, spread = modes[rng.integers(len(modes))]
    return float((rng.normal(mean, spread)) % 24.0)


@dataclass
class Location:
    id: int
    split: str
    habitat: np.ndarray   # shares of forest, grassland, wetland around the camera
    distance: float       # camera distance to the trail: scales animal size
    trail_y: float        # where animals walk, as a share of frame height
    empty_share: float    # false triggers: wind, sun, vegetation
    burst: int            # camera's frames per trigger
    start: datetime
    days: int
    bad_clock: bool


def _locations(rng: np.random.Generator, cfg: dict) -> list[Location]:
    n_train, n_test = cfg["train_locations"], cfg["test_locations"]
    ids = np.sort(rng.choice(552, size=n_train + n_test, replace=False))
    splits = np.array(["train"] * n_train + ["test"] * n_test)
    rng.shuffle(splits)
    bad_clock = set(rng.choice(np.flatnonzero(splits == "train"), size=cfg["bad_clock_locations"], replace=False))
    out = []
    for k, (loc, split) in enumerate(zip(ids, splits)):
        habitat = rng.dirichlet(np.full(3, 0.6))
        out.append(Location(
            id=int(loc), split=str(split), habitat=habitat,
            distance=float(rng.uniform(0.6, 1.5)), trail_y=float(rng.uniform(0.6, 0.82)),
            empty_share=float(rng.uniform(0.2, 0.55)), burst=int(rng.choice([1, 3, 5, 10], p=[.15, .45, .25, .15])),
            start=DEPLOYMENT_START + timedelta(days=int(rng.integers(0, 3 * 365))),
            days=int(rng.integers(120, 420)), bad_clock=k in bad_clock,
        ))
    return out


def season_weight(s: Species, day_of_year: float) -> float:
    """How much more or less often a species is seen on that day of the year (0.1 to 1.9; 1 without a season)."""
    if s.season_peak is None:
        return 1.0
    return 1.0 + 0.9 * np.cos(2 * np.pi * (day_of_year - s.season_peak) / 365.25)


def _species_weights(loc: Location, day_of_year: float) -> np.ndarray:
    w = np.array([s.abundance * float(np.dot(s.habitat, loc.habitat)) ** 2 * season_weight(s, day_of_year)
                  for s in SPECIES])
    return w / w.sum()


def _background(rng: np.random.Generator, loc: Location, width: int, height: int) -> np.ndarray:
    """A fixed scene per camera: ground and vegetation coloured by the habitat mix, with texture."""
    palette = np.array([[40, 95, 45], [90, 170, 185], [120, 120, 80]], dtype=np.float32)  # BGR
    base = loc.habitat @ palette
    img = np.empty((height, width, 3), np.float32)
    sky = np.array([200, 190, 170], np.float32) if loc.habitat[0] < 0.5 else base * 0.7
    horizon = int(height * (loc.trail_y - 0.3))
    img[:] = base
    img[:horizon] = sky
    img += _smooth_field(rng, height, width, 12)[..., None] * 18
    img += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    for _ in range(int(12 * loc.habitat[0])):  # tree trunks
        x = int(rng.integers(0, width))
        cv2.line(img, (x, 0), (x + int(rng.integers(-20, 20)), int(height * loc.trail_y)),
                 (30, 45, 50), int(rng.integers(4, 18)))
    if loc.habitat[2] > 0.3:  # water
        y0 = int(height * min(loc.trail_y + 0.08, 0.95))
        img[y0:] = img[y0:] * 0.4 + np.array([140, 110, 70], np.float32) * 0.6
    return np.clip(img, 0, 255)


def _draw_animal(img: np.ndarray, s: Species, cx: float, cy: float, h: float, colour: tuple,
                 rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Draw one individual; return its pixel box (x0, y0, x1, y1) before clipping to the frame."""
    w = h * s.aspect
    body = (int(cx), int(cy)), (int(w / 2), int(h * 0.35))
    cv2.ellipse(img, body[0], body[1], 0, 0, 360, colour, -1)
    head_x = cx + w * 0.45 * (1 if rng.random() < 0.5 else -1)
    cv2.circle(img, (int(head_x), int(cy - h * 0.2)), max(int(h * 0.18), 1), colour, -1)
    for lx in (-0.3, -0.15, 0.15, 0.3):
        x = int(cx + lx * w)
        cv2.line(img, (x, int(cy)), (x, int(cy + h * 0.5)), colour, max(int(h * 0.06), 1))
    dark = tuple(int(c * 0.45) for c in colour)
    light = tuple(int(min(255, c * 1.6 + 60)) for c in colour)
    if s.pattern == "spots":
        for _ in range(12):
            px, py = rng.normal(0, 0.22) * w, rng.normal(0, 0.1) * h
            cv2.circle(img, (int(cx + px), int(cy + py)), max(int(h * 0.04), 1), dark if s.id == 71 else light, -1)
    elif s.pattern == "stripes":
        for k in range(-2, 3):
            cv2.line(img, (int(cx - w / 2), int(cy + k * h * 0.08)), (int(cx + w / 2), int(cy + k * h * 0.08)),
                     dark, max(int(h * 0.03), 1))
    elif s.pattern == "patch":
        cv2.ellipse(img, (int(cx - w * 0.15), int(cy + h * 0.05)), (int(w * 0.2), int(h * 0.15)), 0, 0, 360,
                    (20, 20, 20) if s.id == 112 else light, -1)
    return cx - w / 2 - h * 0.18, cy - h * 0.38, cx + w / 2 + h * 0.18, cy + h * 0.5


def _frame_box(box: tuple, width: int, height: int) -> list[float] | None:
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height)
    return None if x1 - x0 < 2 or y1 - y0 < 2 else [x0, y0, x1 - x0, y1 - y0]


def _render_sequence(rng, loc, species, when, n_frames, background, cfg):
    """Render the frames of one trigger; return [(jpeg bytes, detections in pixels)]."""
    width, height = cfg["width"], cfg["height"]
    hour = when.hour + when.minute / 60
    night = hour < 6.0 or hour >= 18.5
    frames = []
    n_animals = 0 if species is None else int(rng.integers(1, species.group + 1))
    walkers = [(rng.uniform(-0.1, 1.1) * width,
                loc.trail_y * height + rng.normal(0, 0.04) * height,
                rng.normal(0, 0.04) * width,
                species.size / loc.distance * rng.uniform(0.8, 1.2) * height if species else 0.0)
               for _ in range(n_animals)]
    fp_rate = 0.4 + loc.empty_share
    for f in range(n_frames):
        img = background.copy()
        light = 0.75 + 0.35 * np.sin(np.pi * (hour - 6) / 12) if not night else 1.0
        img *= light
        boxes = []
        for cx, cy, dx, h in walkers:
            if rng.random() < 0.08:  # left the frame for this shot, label stays (as in real bursts)
                continue
            box = _draw_animal(img, species, cx + f * dx, cy, h, species.colour, rng)
            px = _frame_box(box, width, height)
            if px is None:
                continue
            small = h / height < 0.12
            conf = 0.97 - abs(rng.normal(0, 0.08)) - (0.25 if small else 0) - (0.12 if night else 0)
            if rng.random() < 0.05:
                conf = rng.uniform(0.02, 0.2)  # missed by the detector
            x0, y0, w, h = np.array(px) + rng.normal(0, 0.03, 4) * [px[2], px[3], px[2], px[3]]
            x0, y0 = np.clip(x0, 0, width - 2), np.clip(y0, 0, height - 2)
            jittered = [x0, y0, np.clip(w, 2, width - x0), np.clip(h, 2, height - y0)]
            boxes.append((species.detector, float(np.clip(conf, 0.02, 0.999)), np.array(jittered)))
        for _ in range(rng.poisson(fp_rate)):  # false positives on vegetation, rocks, shadows
            conf = rng.uniform(0.45, 0.85) if rng.random() < 0.04 else rng.beta(1.2, 9.0)
            w, h = rng.uniform(0.03, 0.3) * width, rng.uniform(0.03, 0.3) * height
            boxes.append(("1", float(conf), np.array([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h])))
        if night:
            grey = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
            yy, xx = np.mgrid[0:height, 0:width]
            flash = 1.1 - 0.8 * (((xx - width / 2) / width) ** 2 + ((yy - height / 2) / height) ** 2)
            img = np.repeat((grey * 0.8 * flash)[..., None], 3, axis=2)
        img += rng.normal(0, 4, img.shape[:2] + (1,))
        ok, jpeg = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        frames.append((jpeg.tobytes(), boxes))
    return frames


def _detector_entry(image_id: str, boxes: list, width: int, height: int, normalised: bool,
                    rng: np.random.Generator) -> dict:
    """One MegaDetector batch-output image entry, boxes sorted by confidence like the real file."""
    dets = []
    for cat, conf, (x, y, w, h) in boxes:
        if normalised:
            x, y, w, h = x / width, y / height, w / width, h / height
        dets.append({"category": cat, "conf": round(conf, 3), "bbox": [round(float(v), 4) for v in (x, y, w, h)]})
    dets.sort(key=lambda d: -d["conf"])
    if not dets and rng.random() < 0.5:
        return {"id": image_id, "max_detection_conf": 0.0, "detections": []}
    return {"id": image_id, "max_detection_conf": dets[0]["conf"] if dets else 0.0, "detections": dets}


def write_landsat(root: Path, loc: Location, rng: np.random.Generator, cfg: dict) -> int:
    """Write one site's patch per acquisition date: multispectral, pixelqa and radsatqa npy files."""
    size = cfg["landsat_size"]
    site = root / "iwildcam_rs_npy" / f"iwc_{loc.id:03d}"
    site.mkdir(parents=True, exist_ok=True)
    logits = np.log(loc.habitat + 1e-3)[None, None, :] + 1.2 * np.stack(
        [_smooth_field(rng, size, size, 8) for _ in HABITATS], axis=-1)
    cover = np.argmax(logits, axis=-1)
    texture = 1.0 + 0.05 * rng.standard_normal((size, size, 1))
    lo, hi = cfg["landsat_dates"]
    first, last = datetime(2013, 4, 11), datetime(2019, 12, 31)
    offsets = np.sort(rng.choice((last - first).days, size=int(rng.integers(lo, hi + 1)), replace=False))
    for off in offsets:
        date = first + timedelta(days=int(off))
        season = np.cos(2 * np.pi * (date.timetuple().tm_yday - 30) / 365.25)  # wet season peak late January
        spectra = HABITAT_SPECTRA.copy()
        spectra[1, 4] += 700 * season  # grassland greens up in the wet season
        spectra[1, 3] -= 250 * season
        spectra[2, 4] += 900 * (1 - season) / 2  # marsh vegetation when the water recedes
        bands = spectra[cover] * texture
        cloud_share = rng.beta(0.7, 1.3)
        clouds = _smooth_field(rng, size, size, 5)
        cloud = clouds > np.quantile(clouds, 1 - cloud_share)
        edge = cv2.dilate(cloud.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~cloud
        shadow = np.roll(cloud, (9, 7), axis=(0, 1)) & ~cloud & ~edge
        bands[cloud] = CLOUD_SPECTRUM * (1 + 0.05 * rng.standard_normal((int(cloud.sum()), 1)))
        bands[shadow, :7] *= 0.35
        qa = np.where(cover == 2, QA_WATER, QA_CLEAR) | QA_CONF_LOW | QA_CIRRUS_LOW
        qa = np.where(edge, QA_CLEAR | QA_CONF_MED | QA_CIRRUS_LOW, qa)
        qa = np.where(shadow, QA_SHADOW | QA_CONF_LOW | QA_CIRRUS_LOW, qa)
        qa = np.where(cloud, QA_CLOUD | QA_CONF_HIGH | QA_CIRRUS_LOW, qa)
        if rng.random() < 0.15:  # scene edge: no data
            yy, xx = np.mgrid[0:size, 0:size]
            fill = xx + yy < rng.uniform(0.2, 1.0) * size
            bands[fill] = -9999
            qa = np.where(fill, QA_FILL, qa)
        stem = site / f"iwc_{loc.id:03d}_{date:%Y-%m-%d}"
        np.save(f"{stem}_multispectral.npy", np.clip(bands, -9999, 20000).astype(np.int16))
        np.save(f"{stem}_pixelqa.npy", qa.astype(np.uint16))
        np.save(f"{stem}_radsatqa.npy", np.zeros((size, size), np.uint8))
    return len(offsets)


def generate(out: str | Path, cfg: dict) -> dict:
    """Write the sample under `out` in the Kaggle layout; return counts of what was written."""
    out = Path(out)
    rng = np.random.default_rng(cfg["seed"])
    locations = _locations(rng, cfg)
    width, height = cfg["width"], cfg["height"]
    mean_burst = np.mean([loc.burst for loc in locations])
    sequences_per_location = max(1, int(round(cfg["images"] / mean_burst / len(locations))))
    meta = {split: {"images": [], "annotations": []} for split in ("train", "test")}
    detector_images = []
    for split in meta:
        (out / split).mkdir(parents=True, exist_ok=True)

    for loc in tqdm(locations, desc="sample: cameras", unit="camera"):
        loc_rng = np.random.default_rng([cfg["seed"], loc.id])
        background = _background(loc_rng, loc, width, height)
        for _ in range(int(loc_rng.poisson(sequences_per_location))):
            when = loc.start + timedelta(days=float(loc_rng.uniform(0, loc.days)))
            doy = when.timetuple().tm_yday
            if loc_rng.random() < loc.empty_share:
                species, activity = None, "diurnal" if loc_rng.random() < 0.7 else "cathemeral"
            else:
                species = SPECIES[loc_rng.choice(len(SPECIES), p=_species_weights(loc, doy))]
                activity = species.activity
            when = when.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
                hours=_hour(loc_rng, activity))
            n_frames = loc.burst if loc_rng.random() > 0.15 else int(loc_rng.integers(1, loc.burst + 1))
            seq_id = _uuid(loc_rng)
            frames = _render_sequence(loc_rng, loc, species, when, n_frames, background, cfg)
            for f, (jpeg, boxes) in enumerate(frames):
                image_id = _uuid(loc_rng)
                shot = when + timedelta(seconds=f)
                if loc.bad_clock:
                    shot = shot.replace(year=1970 + shot.year % 10)  # camera clock never set
                (out / loc.split / f"{image_id}.jpg").write_bytes(jpeg)
                meta[loc.split]["images"].append({
                    "seq_num_frames": n_frames, "location": loc.id, "datetime": f"{shot:%Y-%m-%d %H:%M:%S}.000",
                    "id": image_id, "frame_num": f, "seq_id": seq_id, "width": width, "height": height,
                    "file_name": f"{image_id}.jpg", "rights_holder": RIGHTS_HOLDERS[loc.id % len(RIGHTS_HOLDERS)],
                })
                if loc.split == "train":
                    meta["train"]["annotations"].append({
                        "id": _uuid(loc_rng), "image_id": image_id,
                        "category_id": EMPTY[0] if species is None else species.id})
                detector_images.append(_detector_entry(image_id, boxes, width, height,
                                                       cfg["bbox_format"] == "normalized", loc_rng))

    categories = [{"id": EMPTY[0], "name": EMPTY[1]}] + [{"id": s.id, "name": s.name} for s in SPECIES] + [
        {"id": i, "name": n} for i, n in EXTRA_CATEGORIES]
    categories.sort(key=lambda c: c["id"])
    info = {"version": "embedded-sample", "description": "iWildCam 2020 format sample", "year": 2020}
    write_kaggle_files(out, info, meta["train"]["images"], meta["test"]["images"], categories,
                       meta["train"]["annotations"], detector_images)

    without = {loc.id for loc in rng.choice(locations, size=cfg["sites_without_landsat"], replace=False)}
    dates = sum(write_landsat(out, loc, np.random.default_rng([cfg["seed"], loc.id, 1]), cfg)
                for loc in tqdm(locations, desc="sample: Landsat sites", unit="site") if loc.id not in without)
    return {"train_images": len(meta["train"]["images"]), "test_images": len(meta["test"]["images"]),
            "locations": len(locations), "landsat_site_dates": dates}


def write_kaggle_files(out: Path, info: dict, train_images: list[dict], test_images: list[dict],
                       categories: list[dict], annotations: list[dict], detector_images: list[dict]) -> None:
    """The competition's three metadata files and `sample_submission.csv` under `out`, as Kaggle ships them."""
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    files = {"iwildcam2020_train_annotations.json": {"info": info, "images": train_images, "categories": categories,
                                                     "annotations": annotations},
             "iwildcam2020_test_information.json": {"info": info, "images": test_images, "categories": categories},
             "iwildcam2020_megadetector_results.json": {
                 "info": {"detector": "megadetector_v3 (simulated)", "format_version": "1.0"},
                 "detection_categories": {"1": "animal", "2": "person"}, "images": detector_images}}
    for name, content in files.items():
        (out / "metadata" / name).write_text(json.dumps(content, indent=1))
    (out / "sample_submission.csv").write_text("Id,Category\n" + "".join(f"{im['id']},0\n" for im in test_images))
