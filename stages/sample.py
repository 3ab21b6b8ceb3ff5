"""DVC stage `sample` (see dvc.yaml)."""
from __future__ import annotations

import logging
import shutil

from sample.generate import generate
from sample.wilds import CAMERAS, IMAGES, write_wilds
from stages.common import SAMPLE_DIR

log = logging.getLogger("stages.sample")


def run(params: dict) -> None:
    """Write the embedded sample in the real formats of data.layout (a real download replaces it via
    data.root): the Kaggle layout, or its WILDS re-packing with the official split shares."""
    cfg = params["sample"]
    if SAMPLE_DIR.exists():
        shutil.rmtree(SAMPLE_DIR)
    tmp, kaggle = (SAMPLE_DIR.with_name(SAMPLE_DIR.name + suffix) for suffix in (".tmp", ".kaggle.tmp"))
    for folder in (tmp, kaggle):
        shutil.rmtree(folder, ignore_errors=True)
    if params["data"]["layout"] == "wilds":
        counts = generate(kaggle, cfg)
        labelled, cameras = counts["train_images"], cfg["train_locations"]
        counts = write_wilds(kaggle, tmp, {s: labelled * n // sum(IMAGES.values()) for s, n in IMAGES.items()},
                             {s: max(1, round(cameras * n / sum(CAMERAS.values()))) for s, n in CAMERAS.items()},
                             seed=cfg["seed"])
        shutil.rmtree(kaggle)
    else:
        counts = generate(tmp, cfg)
    tmp.rename(SAMPLE_DIR)
    log.info("sample: wrote %s", counts)
