"""DVC stage `sample` (see dvc.yaml)."""
from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

from data.coco import TRAIN_JSON
from infra.artifacts import SAMPLE_DIR
from sample.camtrap_dp import write_camtrap_dp
from sample.generate import generate
from sample.inaturalist import write_inaturalist
from sample.wilds import CAMERAS, IMAGES, write_wilds

log = logging.getLogger("stages.sample")
WILDS_SAMPLE = "iwildcam_v2.0"  # the folder name WILDS's download unpacks to
CAMTRAP_DP_SAMPLE = "camtrap_dp"


def run(params: dict) -> None:
    """Write the embedded sample in the real formats of both layouts: the Kaggle layout in sample_data/ with a
    supplemental source in the organisers' iNaturalist format (sample_data/inaturalist_sample), and
    its WILDS re-packing (official split shares, hard links to the same JPEGs) in sample_data/iwildcam_v2.0,
    which `data.root` points at with `data.layout: wilds`, and as a Camtrap DP package in sample_data/camtrap_dp
    (`data.layout: camtrap_dp`). Nothing here reads data.*: choosing the real data (or another layout) never
    reruns this stage."""
    cfg = params["sample"]
    tmp = SAMPLE_DIR.with_name(SAMPLE_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = generate(tmp, cfg)
    per_class = Counter(a["category_id"] for a in json.loads((tmp / TRAIN_JSON).read_text())["annotations"])
    counts.update(write_inaturalist(tmp, cfg["seed"], cfg["supplemental_photos"], per_class))
    labelled, cameras = counts["train_images"], cfg["train_locations"]
    wilds = write_wilds(tmp, tmp / WILDS_SAMPLE, {s: labelled * n // sum(IMAGES.values()) for s, n in IMAGES.items()},
                        {s: max(1, round(cameras * n / sum(CAMERAS.values()))) for s, n in CAMERAS.items()},
                        seed=cfg["seed"])
    package = write_camtrap_dp(tmp, tmp / CAMTRAP_DP_SAMPLE, cfg["seed"])
    if SAMPLE_DIR.exists():
        shutil.rmtree(SAMPLE_DIR)
    tmp.rename(SAMPLE_DIR)
    log.info("sample: wrote %s; the WILDS layout in %s: %s; the Camtrap DP package in %s: %s", counts,
             SAMPLE_DIR / WILDS_SAMPLE, wilds, SAMPLE_DIR / CAMTRAP_DP_SAMPLE, package)
