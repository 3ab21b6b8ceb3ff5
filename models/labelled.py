"""The labelled rows the model stages fit and score: the camera-trap train images and the supplemental photos."""
from __future__ import annotations

import pandas as pd

from infra.artifacts import USABLE_PIXELS, table


def labelled_train() -> tuple[pd.Series, pd.DataFrame]:
    """Labels and image rows (location, seq_id, whether its pixels are `usable`) of the labelled train images.
    Their features are read from the feature table a block at a time (models.reduce.FeatureFile): at full
    scale it is 4.5 GB."""
    images, labels = table("images"), table("labels")["category_id"]
    ids = labels.index.intersection(images.index[images["split"] == "train"])
    rows = images.loc[ids].join(pd.read_parquet(USABLE_PIXELS)["usable"])
    return labels.loc[ids], rows


def labelled_rows() -> tuple[pd.Series, pd.DataFrame]:
    """Labels and rows of the labelled camera-trap train images (labelled_train), then of the supplemental photos
    (data.supplemental): each its own sequence, split `supplemental`, no location (NA). Column `photo` tells them
    apart: models.split keeps those rows out of every validation, early-stopping and scored row."""
    labels, rows = labelled_train()
    rows = rows.assign(photo=False)
    photos = table("supplemental")
    if photos.empty:
        return labels, rows
    usable = pd.read_parquet(USABLE_PIXELS)["usable"].reindex(photos.index, fill_value=False)
    photo_rows = pd.DataFrame({"split": photos["split"], "location": pd.array([pd.NA] * len(photos), "Int64"),
                               "seq_id": photos.index, "usable": usable, "photo": True}, index=photos.index)
    return pd.concat([labels, photos["category_id"]]), pd.concat([rows, photo_rows])
