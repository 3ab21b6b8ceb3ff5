"""DVC stage `embeddings` (see dvc.yaml): one feature family per backbone in `embeddings.backbones`."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from data import QualityReport
from data.images import JpegPolicy
from data.quality import DataError
from data.supplemental import with_photos
from features.backbones import IMPORTED, check_backbones, family_name, weights_of
from features.embeddings import embeddings
from infra.artifacts import CACHE, EMBEDDINGS, QUALITY, WEIGHTS, table, write_quality
from infra.atomic import atomic_path
from infra.compute import compute_backend

ROW_GROUP = 32_768  # rows converted to Arrow at a time: pandas would convert the whole 4.3 GB table at once


def check_tracked(cfg: dict) -> None:
    """Weights (and an imported embeddings file) must lie under weights/, the folder dvc.yaml lists as a
    dependency, so that a new file at the same path reruns the stage; a file elsewhere would be read but
    not tracked. The path is judged with `..` collapsed (`weights/../x.pth` is not under weights/), but links
    are not followed: a link inside weights/ to the download elsewhere is tracked (DVC hashes its target)."""
    tracked = WEIGHTS.absolute()
    for name in cfg["backbones"]:
        path = weights_of(name, cfg)
        where = Path(os.path.normpath(Path(path).absolute())) if path else None
        if where and not where.is_relative_to(tracked):
            what = f"embeddings.import_file {path} is" if name == IMPORTED else f"weights of {name} at {path} are"
            raise DataError(f"{what} outside {WEIGHTS}/ ({where}), which dvc.yaml tracks: "
                            f"link or copy them there (ln -s {where} {WEIGHTS}/)")


def settings(params: dict) -> dict:
    """The embeddings section with the execution settings inference runs with (threads, decode workers,
    batch size): each Dask worker runs inference on its own threads, not the machine's."""
    execution = params["execution"]
    threads = execution["threads_per_worker"] if execution["backend"] == "dask" else execution["threads"]
    return dict(params["embeddings"], threads=threads, decode_workers=execution["decode_workers"],
                batch_size=execution["batch_size"])


def run(params: dict) -> None:
    execution, cfg = params["execution"], settings(params)
    names = check_backbones(list(cfg["backbones"]))
    check_tracked(cfg)
    families = [family_name(n) for n in names]
    # the supplemental photos are embedded beside the camera images (join keeps the camera images' rows)
    images, detections = with_photos(table("images"), table("detections"), table("supplemental"))
    policy = JpegPolicy.from_params(params["jpeg"])
    with compute_backend(execution):
        for name, family in zip(names, families):
            report = QualityReport()
            vectors = embeddings(images, detections, params["data"]["root"], name, cfg, CACHE / "embeddings", report,
                                 policy)
            schema = pa.Schema.from_pandas(vectors.iloc[:0])
            with atomic_path(EMBEDDINGS / f"{family}.parquet") as tmp, pq.ParquetWriter(tmp, schema) as writer:
                for lo in range(0, len(vectors), ROW_GROUP):
                    writer.write_table(pa.Table.from_pandas(vectors.iloc[lo:lo + ROW_GROUP], schema=schema))
            del vectors  # at full scale one family is 4.3 GB: never hold two
            write_quality(f"embeddings/{family}", report)
    # the folders hold exactly the listed backbones' families: join reads every file there
    for folder, suffix in ((EMBEDDINGS, ".parquet"), (QUALITY / "embeddings", ".json")):
        for stale in set(folder.glob(f"*{suffix}")) - {folder / f"{f}{suffix}" for f in families}:
            stale.unlink()
