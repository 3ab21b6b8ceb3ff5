"""The labelled rows the model stages fit and score: the camera-trap train images and the supplemental photos."""
from __future__ import annotations

import pandas as pd

from data.quality import DataError
from models.split import SUPPLEMENTAL
from stages.common import USABLE_PIXELS, labelled_train, table


def labelled_rows() -> tuple[pd.Series, pd.DataFrame]:
    """Labels and rows of the labelled camera-trap train images (stages.common.labelled_train), then of the
    supplemental photos (data.supplemental): each its own sequence, split `supplemental`, at location
    SUPPLEMENTAL, which models.split keeps out of every validation, early-stopping and scored row."""
    labels, rows = labelled_train()
    negative = rows["location"] < 0
    if negative.any():  # iWildCam's location ids (and WILDS's remapped ones) count from 0
        raise DataError(f"labelled train image {rows.index[negative][0]!r} has location "
                        f"{rows['location'][negative].iloc[0]}: location ids are >= 0")
    photos = table("supplemental")
    if photos.empty:
        return labels, rows
    usable = pd.read_parquet(USABLE_PIXELS)["usable"].reindex(photos.index, fill_value=False)
    photo_rows = pd.DataFrame({"split": photos["split"], "location": SUPPLEMENTAL, "seq_id": photos.index,
                               "usable": usable}, index=photos.index)
    return pd.concat([labels, photos["category_id"]]), pd.concat([rows, photo_rows])
