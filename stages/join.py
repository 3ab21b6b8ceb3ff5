"""DVC stage `join` (see dvc.yaml)."""
from __future__ import annotations

import logging

import pandas as pd

from data.io import write_parquet
from stages.common import FEATURES, FAMILIES, FEATURE_TABLE, table

log = logging.getLogger("stages.join")


def run(params: dict) -> None:
    """One feature table keyed by image id; family switches choose the columns, prefixed by family."""
    images = table("images")
    chosen = [f for f in FAMILIES if params["features"][f]]
    if not chosen:
        raise SystemExit("features: every family is switched off; switch at least one on")
    parts = [pd.read_parquet(FEATURES / f"{f}.parquet").add_prefix(f"{f}__") for f in chosen]
    joined = pd.concat(parts, axis=1, join="outer").reindex(images.index)
    log.info("join: %d images x %d features from %s", *joined.shape, chosen)
    write_parquet(joined, FEATURE_TABLE)
