"""Benchmark: JPEG decode and end-to-end embedding throughput on full-HD camera-trap-sized frames.

Run by hand: `.venv/bin/python benchmarks/embeddings.py [--images 256] [--threads 2]`. Writes 1920x1080
JPEGs (a natural photo upscaled, with sensor noise, quality 90, like trail-camera output), then in one run
times:
  decode   full-size decode vs DCT-reduced 1/4 (what the stage uses for a 224 px input), and our checked
           decode (read_image: header checks, libjpeg warnings caught) against OpenCV's unchecked
           IMREAD_REDUCED_COLOR_4 of the same files;
  naive    the reference a notebook would write: full decode, resize, NCHW float batches, one thread
           decoding between batches, default memory layout;
  stage    our stage's path (compute_embeddings): reduced decode in a thread pool running ahead of
           batched channels_last inference; whole-frame view only, then with one detector crop per image.
Asserts the naive and stage embeddings agree (same network, different decode path: loose tolerance).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import skimage.data
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data import QualityReport, read_image  # noqa: E402
from features.embeddings import compute_embeddings  # noqa: E402
from models.backbones import build_backbone  # noqa: E402

WIDTH, HEIGHT = 1920, 1080


def build(folder: Path, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    photos = [cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
              for name in ("chelsea", "coffee", "rocket")]
    (folder / "train").mkdir(parents=True)
    for i in range(n):
        big = cv2.resize(photos[i % len(photos)], (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
        noisy = np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "train" / f"{i:05d}.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ids = [f"{i:05d}" for i in range(n)]
    return pd.DataFrame({"split": "train", "file_name": [f"{i}.jpg" for i in ids], "width": WIDTH, "height": HEIGHT,
                         "seq_id": ids, "file_ok": True}, index=pd.Index(ids, name="image_id"))


def time_decode(paths: list[Path], reduction: int) -> float:
    started = time.perf_counter()
    for p in paths:
        read_image(p, reduction)
    return len(paths) / (time.perf_counter() - started)


def time_opencv_reduced(paths: list[Path]) -> float:
    """OpenCV's reduced decode, which prints libjpeg's warnings instead of reporting them."""
    started = time.perf_counter()
    for p in paths:
        cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    return len(paths) / (time.perf_counter() - started)


def naive(paths: list[Path], backbone, batch_size: int) -> tuple[np.ndarray, float]:
    """Full decode, resize, NCHW contiguous batches, decoding and inference taking turns."""
    network = backbone.network.to(memory_format=torch.contiguous_format)
    started, out = time.perf_counter(), []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            views = [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (224, 224), interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_BGR2RGB) for p in paths[start:start + batch_size]]
            x = (torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() - 127.0) / 128.0
            out.append(network(x.contiguous()).numpy())
    rate = len(paths) / (time.perf_counter() - started)
    backbone.network.to(memory_format=torch.channels_last)
    return np.concatenate(out), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(backbone="efficientnet_lite0", weights_file=None, device="cpu", threads=args.threads,
               decode_workers=2, batch_size=args.batch_size, crops_top_k=1, crop_min_conf=0.3, crop_margin=0.15,
               chunk_images=256)
    backbone = build_backbone(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = build(root, args.images, args.seed)
        paths = [root / "train" / f for f in images["file_name"]]
        time_decode(paths[:8], 1)  # warm up the page cache and OpenCV
        full, reduced, opencv = time_decode(paths, 1), time_decode(paths, 4), time_opencv_reduced(paths)
        naive_emb, naive_rate = naive(paths, backbone, args.batch_size)
        no_boxes = pd.DataFrame({"image_id": pd.Series([], dtype=str), "conf": [], "x": [], "y": [], "w": [], "h": []})
        started = time.perf_counter()
        frame, _ = compute_embeddings(images, no_boxes, root, cfg, lambda: backbone, root / "cache_frame",
                                      QualityReport())
        frame_rate = len(images) / (time.perf_counter() - started)
        one_box = pd.DataFrame({"image_id": images.index, "conf": 0.9, "x": 0.3, "y": 0.3, "w": 0.25, "h": 0.35})
        started = time.perf_counter()
        compute_embeddings(images, one_box, root, cfg, lambda: backbone, root / "cache_crop", QualityReport())
        crop_rate = len(images) / (time.perf_counter() - started)
    cosine = (frame * naive_emb).sum(1) / np.linalg.norm(frame, axis=1) / np.linalg.norm(naive_emb, axis=1)
    assert cosine.min() > 0.95, cosine.min()
    print(f"{args.images} JPEGs {WIDTH}x{HEIGHT}, torch threads {args.threads}, batch {args.batch_size}")
    print(f"decode  full {full:7.1f} img/s   reduced 1/4 {reduced:7.1f} img/s   ratio {reduced / full:5.1f}x")
    print(f"decode  OpenCV reduced 1/4 (unchecked) {opencv:7.1f} img/s   checked/unchecked {reduced / opencv:5.2f}x")
    print(f"naive   whole frame          {naive_rate:7.1f} img/s")
    print(f"stage   whole frame          {frame_rate:7.1f} img/s   ratio {frame_rate / naive_rate:5.1f}x vs naive")
    print(f"stage   frame + 1 crop       {crop_rate:7.1f} img/s")
    print(f"embeddings agree with the naive path: cosine min {cosine.min():.4f}")


if __name__ == "__main__":
    main()
