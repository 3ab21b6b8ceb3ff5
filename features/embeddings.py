"""Frozen CNN/ViT embeddings: the whole frame (scene, vegetation, light) and the detector's top boxes (species).

Each backbone in `embeddings.backbones` is a feature family of its own (`features.backbones.family_name`),
with its own cache, so adding one computes only it.

Per image: the frame's pooled features, the mean over its top-k detector crops (each padded to a square
with a margin around the box, then resized, so the animal keeps its shape), and the mean crop embedding
of its sequence, which carries the animal into frames where the detector missed it. Optionally every view
is also embedded mirrored and the two averaged, so the embedding does not depend on the animal's heading.
The views are cut by features/views.py, decoded ahead of batched inference.
Results are cached per image in chunks, so an interrupted run resumes and new images are all that a
rerun computes. Embeddings can also be imported from a parquet file computed elsewhere (e.g. on a GPU).
"""
from __future__ import annotations

import json
import logging
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from data import QualityReport, image_path
from data.embeddings import load_embeddings
from data.images import JpegPolicy, metadata_size, report_computed
from features.backbones import IMPORTED, Backbone, BackboneError, build_backbone, family_name
from features.backbones.runtime import INT8_RUNTIME, cosines
from features.views import Views, crop_boxes, image_views, prefetched
from infra.atomic import write_json
from infra.code_deps import code_digest
from infra.hashing import digest, file_identity
from infra.shard_cache import KEY, ShardCache

log = logging.getLogger(__name__)

VIEWS = ("frame", "crop", "seq_crop")
INT8_CHECK_VIEWS = 32  # frame views the int8 graph is checked on against the fp32 one, once per graph


def _embed(backbone: Backbone, views: np.ndarray, batch_size: int, flip: bool) -> np.ndarray:
    """Embeddings of (N, S, S, 3) views; with `flip`, the mean of the views' and their mirror images'."""
    if not flip:
        return backbone.embed(views, batch_size)
    return (backbone.embed(views, batch_size) + backbone.embed(views[:, :, ::-1], batch_size)) / 2


def _embed_group(backbone: Backbone, views: list[Views], batch_size: int, flip: bool) -> tuple[list, list]:
    """Frame embedding and mean crop embedding (None where absent) of each image of a group."""
    ok = [v.frame is not None for v in views]
    frames = iter(_embed(backbone, np.stack([v.frame for v in views if v.frame is not None]), batch_size, flip)
                  if any(ok) else ())
    counts = np.array([len(v.crops) for v in views])
    crop_means = [None] * len(views)
    if counts.any():
        crop_emb = _embed(backbone, np.concatenate([v.crops for v in views]), batch_size, flip)
        starts = np.cumsum(counts) - counts
        has = np.flatnonzero(counts)
        sums = np.add.reduceat(crop_emb, starts[has], axis=0)  # crops of one image are contiguous
        for i, total in zip(has, sums):
            crop_means[i] = total / counts[i]
    return [next(frames) if k else None for k in ok], crop_means


def _stack(column: pd.Series, dim: int) -> np.ndarray:
    out = np.full((len(column), dim), np.nan, np.float32)
    present = column.notna().to_numpy()
    if present.any():
        out[present] = np.stack(column[present].to_numpy())
    return out


_LOADED: dict[str, Backbone] = {}  # per process: a Dask worker loads each backbone once


def _embed_chunk(chunk: list[tuple[str, dict]], load_backbone: Callable[[], Backbone], model_id: str, cfg: dict,
                 policy: JpegPolicy, int8: bool) -> pd.DataFrame:
    """Frame and mean crop embeddings of one chunk of images (one cache shard). Runs in this process or
    on a Dask worker (in int8 if the stage's self-check chose it); decoding runs ahead of inference in a
    thread pool."""
    if model_id not in _LOADED:
        _LOADED[model_id] = load_backbone()
        if int8:
            _LOADED[model_id].use_int8(cfg["threads"])
    backbone, batch = _LOADED[model_id], cfg["batch_size"]
    torch.set_num_threads(cfg["threads"])
    decoded = prefetched(lambda it: image_views(it, backbone.input_size, cfg["crop_margin"], policy),
                         (it for _, it in chunk), cfg["decode_workers"], ahead=2 * batch)
    frames, crops, reasons, problems = [], [], [], []
    for _ in range(0, len(chunk), batch):
        views = list(islice(decoded, batch))
        f, c = _embed_group(backbone, views, batch, cfg["flip"])
        frames += f
        crops += c
        reasons += [v.error for v in views]
        problems += [v.problem for v in views]
    return pd.DataFrame({"frame": frames, "crop": crops, "error": reasons, "problem": problems,
                         KEY: [k for k, _ in chunk]},
                        index=pd.Index([it["image_id"] for _, it in chunk], name="image_id"))


def spread_order(images: pd.DataFrame) -> np.ndarray:
    """Positions of `images` taking one image of each (location, width x height) in turn, in table order within
    each: the int8 self-check's first views span the cameras and frame sizes (a WILDS copy's first rows are
    mostly one project's thumbnails) instead of the first rows of the table."""
    strata = [c for c in ("location", "width", "height") if c in images]
    if not strata:
        return np.arange(len(images))
    turn = images.groupby(strata, sort=False, dropna=False).cumcount().to_numpy()
    return np.argsort(turn, kind="stable")


def int8_self_check(backbone: Backbone, items: list[dict], cfg: dict, policy: JpegPolicy,
                    report: QualityReport) -> None:
    """Whether the int8 graph may stand in for the fp32 one on these weights: the first time it runs, the frame
    views of the first INT8_CHECK_VIEWS readable `items` (in spread_order) are embedded in both precisions, and
    the per-view cosine (min, mean) is kept beside the int8 graph and noted in the report. At or above
    `embeddings.int8_min_cosine` the backbone runs in int8; below, the stage stops in one line, or with
    `embeddings.int8_fallback` runs it in fp32. Real ViTs have activation outliers that random weights lack:
    only the user's own weights can say how int8 treats them."""
    record = backbone.int8.with_name(f"{backbone.int8.stem}.check.json")
    if record.is_file():
        check = json.loads(record.read_text())
    else:
        decoded = (image_views(it, backbone.input_size, cfg["crop_margin"], policy) for it in items)
        frames = [v.frame for v in islice((v for v in decoded if v.frame is not None), INT8_CHECK_VIEWS)]
        if not frames:
            report.note("precision", "fp32: no readable view to check the int8 graph on")
            return
        views = np.stack(frames)
        fp32 = backbone.embed(views, cfg["batch_size"])
        backbone.use_int8(cfg["threads"])
        similarity = cosines(fp32, backbone.embed(views, cfg["batch_size"]))
        backbone.use_fp32(cfg["threads"])
        check = {"views": len(views), "min_cosine": round(float(similarity.min()), 6),
                 "mean_cosine": round(float(similarity.mean()), 6)}
        write_json(check, record)
    threshold = cfg["int8_min_cosine"]
    report.note("int8 self-check", dict(check, threshold=threshold))
    if check["min_cosine"] >= threshold:
        backbone.use_int8(cfg["threads"])
        return
    figure = (f"backbone {backbone.name}: int8 self-check: min cosine to fp32 {check['min_cosine']:.4f} (mean "
              f"{check['mean_cosine']:.4f}) over {check['views']} views of this run, below "
              f"embeddings.int8_min_cosine {threshold}")
    if not cfg["int8_fallback"]:
        raise BackboneError(f"{figure}: run it in fp32 (embeddings.precision), or set embeddings.int8_fallback")
    log.warning("embeddings: %s: running it in fp32 (embeddings.int8_fallback)", figure)
    report.note("precision", "fp32: the int8 self-check fell below embeddings.int8_min_cosine")


def compute_embeddings(images: pd.DataFrame, detections: pd.DataFrame, root: str | Path, cfg: dict,
                       load_backbone: Callable[[], Backbone], cache_dir: str | Path, report: QualityReport,
                       policy: JpegPolicy = JpegPolicy()) -> tuple[np.ndarray, np.ndarray]:
    """(frame, crop) embedding arrays aligned with `images` (NaN where unreadable or no crop).

    Chunks run through joblib: in this process by default, on a Dask cluster inside
    `joblib.parallel_config(backend="dask")`; each finished chunk is stored here as a cache shard.
    """
    backbone = load_backbone()
    _LOADED[backbone.model_id] = backbone
    boxes = crop_boxes(detections, cfg["crops_top_k"], cfg["crop_min_conf"])
    readable = images[images["file_ok"]]
    # a camera image lies in its split's folder, a supplemental photo in its source's (data.supplemental)
    folders = readable["folder"] if "folder" in readable else readable["split"]
    items = [{"image_id": i, "path": str(image_path(root, d, f)), "width": metadata_size(w),
              "height": metadata_size(h), "boxes": boxes.get(i, [])}
             for i, d, f, w, h in zip(readable.index, folders, readable["file_name"], readable["width"],
                                      readable["height"])]
    if backbone.int8 is not None:
        int8_self_check(backbone, [items[k] for k in spread_order(readable)], cfg, policy, report)
    report.note("backbone", backbone.model_id)
    report.note("runtime", backbone.runtime)
    if backbone.runtime_reason:
        report.note("runtime_reason", backbone.runtime_reason)
    # the runtime says the precision too: an int8 family is cached apart from the fp32 one
    view_params = (backbone.model_id, backbone.runtime, backbone.input_size, cfg["crops_top_k"],
                   cfg["crop_min_conf"], cfg["crop_margin"], cfg["flip"], policy, code_digest(__file__))
    keys = [digest(view_params, file_identity(it["path"]), it["boxes"], it["width"], it["height"]) for it in items]
    log.info("embeddings: %d images on %s with %s", len(items), backbone.device, backbone.model_id)
    computed, n_fresh, n_cached = ShardCache(cache_dir).fill(
        list(zip(keys, items)), partial(_embed_chunk, load_backbone=load_backbone, model_id=backbone.model_id, cfg=cfg,
                                        policy=policy, int8=backbone.runtime == INT8_RUNTIME),
        chunk_size=cfg["chunk_images"], n_jobs=1, desc="embeddings", unit="img",
        columns=["frame", "crop", "error", "problem"])
    computed = report_computed(report, images, computed, n_fresh, n_cached)
    return _stack(computed["frame"], backbone.dim), _stack(computed["crop"], backbone.dim)


def imported_embeddings(images: pd.DataFrame, path: str | Path, report: QualityReport
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(frame, crop) arrays from a validated parquet file; images it lacks are counted and left NaN."""
    ids, frame, crop = load_embeddings(path, images.index)
    missing = images.index.difference(ids)
    report.skip_many("image absent from the imported embeddings file", list(missing))
    report.count_read("images imported", len(ids))
    positions = ids.get_indexer(images.index)
    found = positions >= 0

    def aligned(block: np.ndarray) -> np.ndarray:
        out = np.full((len(images), block.shape[1]), np.nan, np.float32)
        out[found] = block[positions[found]]
        return out
    frame = aligned(frame)
    return frame, aligned(crop) if crop is not None else np.full_like(frame, np.nan)


def embedding_table(images: pd.DataFrame, frame: np.ndarray, crop: np.ndarray, columns_at_once: int = 128
                    ) -> pd.DataFrame:
    """Frame, crop and sequence-mean crop embeddings as columns `<view>_emb_<k>`, indexed by image id. Built
    in one preallocated array (the sequence means a few columns at a time): at 280k images the table is
    4.3 GB, and each extra copy as much again."""
    n, d = frame.shape
    seq = images["seq_id"].fillna(pd.Series(images.index, index=images.index))
    codes, uniques = pd.factorize(seq)
    has_crop = ~np.isnan(crop).any(axis=1)
    members = sparse.csr_matrix((np.ones(int(has_crop.sum()), np.float32), (codes[has_crop], np.flatnonzero(has_crop))),
                                shape=(len(uniques), n))
    counts = np.asarray(members.sum(axis=1)).ravel()
    out = np.empty((n, 3 * d), np.float32)
    out[:, :d], out[:, d:2 * d] = frame, crop
    for lo in range(0, d, columns_at_once):
        part = np.nan_to_num(crop[:, lo:lo + columns_at_once])
        means = members @ part
        means[counts > 0] /= counts[counts > 0, None]
        means[counts == 0] = np.nan  # a sequence without any crop
        out[:, 2 * d + lo:2 * d + lo + part.shape[1]] = means[codes]
    columns = [f"{view}_emb_{k}" for view in VIEWS for k in range(d)]
    return pd.DataFrame(out, index=images.index, columns=columns, copy=False)


def embeddings(images: pd.DataFrame, detections: pd.DataFrame, root: str | Path, backbone_name: str, cfg: dict,
               cache_dir: str | Path, report: QualityReport, policy: JpegPolicy = JpegPolicy()) -> pd.DataFrame:
    """One backbone's family for every image: computed (cached per image in `cache_dir/<family>`, ONNX
    exports in `cache_dir/onnx`), or imported from `cfg["import_file"]` for the backbone `parquet`."""
    if backbone_name == IMPORTED:
        frame, crop = imported_embeddings(images, cfg["import_file"], report)
    else:
        frame, crop = compute_embeddings(images, detections, root, cfg,
                                         partial(build_backbone, backbone_name, cfg, Path(cache_dir) / "onnx"),
                                         Path(cache_dir) / family_name(backbone_name), report, policy)
    return embedding_table(images, frame, crop)
