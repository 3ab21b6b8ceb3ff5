"""DVC stage `sample` (see dvc.yaml)."""
from __future__ import annotations

import logging
import shutil

from sample.generate import generate
from stages.common import SAMPLE_DIR

log = logging.getLogger("stages.sample")


def run(params: dict) -> None:
    """Write the embedded sample in the real formats (a real download replaces it via data.root)."""
    if SAMPLE_DIR.exists():
        shutil.rmtree(SAMPLE_DIR)
    tmp = SAMPLE_DIR.with_name(SAMPLE_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = generate(tmp, params["sample"])
    tmp.rename(SAMPLE_DIR)
    log.info("sample: wrote %s", counts)
