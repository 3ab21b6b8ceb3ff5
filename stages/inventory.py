"""DVC stage `inventory` (see dvc.yaml)."""
from __future__ import annotations

import logging
import os

from data.io import file_inventory
from data.supplemental import sources
from infra.artifacts import DATA_FOLDERS, FILES_TABLE
from infra.atomic import write_parquet

log = logging.getLogger("stages.inventory")


def run(params: dict) -> None:
    """The data files' paths, sizes and modification times, as one table that the stages reading pixels or
    Landsat patches depend on: DVC would otherwise hash every file of those folders on every `dvc repro`
    (a real download has ~280,000 JPEGs and ~250,000 npy files). Runs on every repro (always_changed); its
    table's bytes change only when a file is added, removed, resized or rewritten. The supplemental sources'
    metadata, detector and location files and image folders are listed with them; under data.layout camtrap_dp the
    package's folder and data.media_root."""
    extra = tuple(p for s in sources(params["data"]["supplemental"])
                  for p in (s.metadata, s.images, s.detector_file, *s.locations) if p is not None)
    cfg = params["data"]
    root, media_root = cfg["root"], cfg["media_root"]
    # a Camtrap DP package names its own files: its whole folder, and the media folder where that is elsewhere
    folders = (".",) if cfg["layout"] == "camtrap_dp" else DATA_FOLDERS
    if cfg["layout"] == "camtrap_dp" and media_root:
        folders += (os.path.relpath(media_root, root),)
    files = file_inventory(root, folders + extra)
    write_parquet(files, FILES_TABLE)
    top = files["path"].str.split("/", n=1).str[0]
    log.info("inventory: %d files, %.1f GB: %s", len(files), files["size"].sum() / 1e9,
             ", ".join(f"{n} in {f}/" for f, n in top.value_counts().sort_index().items()))
