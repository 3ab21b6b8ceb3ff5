"""Benchmark: JPEG decode, forward pass and end-to-end embedding throughput on full-HD camera-trap frames.

Run by hand: `.venv/bin/python benchmarks/embeddings.py [--images 256] [--threads 2]`. Writes 1920x1080
JPEGs (a natural photo upscaled, with sensor noise, quality 90, like trail-camera output), then in one run
times:
  decode   full-size decode vs DCT-reduced 1/4 (what the stage uses for a 224 px input), and our checked
           decode (read_image: header checks, libjpeg warnings caught) against OpenCV's unchecked
           IMREAD_REDUCED_COLOR_4 of the same files; and the stage's decode + view cutting alone, on its
           `decode_workers` threads, to say whether decoding or inference bounds the stage;
  forward  the network alone on 192 views in batches of 8 and of 32: PyTorch (channels_last) and ONNX
           Runtime (small batches stay in cache: both are faster at 8 on this machine);
  naive    the reference a notebook would write: full decode, resize, NCHW float batches, one thread
           decoding between batches, default memory layout;
  stage    our stage (compute_embeddings) as it was (PyTorch, batch 32), with PyTorch and with ONNX
           Runtime at --batch-size, for the whole frame and for frame + one detector crop; then ONNX
           Runtime with flipped views, and Lite2 (260 px).
Asserts the naive and stage embeddings agree (same network, different decode path: loose tolerance) and
that ONNX Runtime gives PyTorch's features.
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
from features.views import image_views, prefetched  # noqa: E402
from features.backbones import build_backbone  # noqa: E402

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
    network = backbone.module.network.to(memory_format=torch.contiguous_format)
    started, out = time.perf_counter(), []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            views = [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (224, 224), interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_BGR2RGB) for p in paths[start:start + batch_size]]
            x = (torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() - 127.0) / 128.0
            out.append(network(x.contiguous()).numpy())
    rate = len(paths) / (time.perf_counter() - started)
    backbone.module.network.to(memory_format=torch.channels_last)
    return np.concatenate(out), rate


def decode_only(images: pd.DataFrame, root: Path, boxes: list, size: int, workers: int) -> float:
    """Images/s of the stage's decode and view cutting alone, on its thread pool."""
    items = [{"path": str(root / "train" / f), "width": WIDTH, "height": HEIGHT, "boxes": boxes}
             for f in images["file_name"]]
    started = time.perf_counter()
    for _ in prefetched(lambda it: image_views(it, size, 0.15), items, workers, ahead=64):
        pass
    return len(items) / (time.perf_counter() - started)


def forward_only(backbone, batch_size: int, n: int = 192) -> float:
    views = np.random.default_rng(0).integers(0, 256, (n, backbone.input_size, backbone.input_size, 3),
                                              dtype=np.uint8)
    backbone.embed(views[:batch_size], batch_size)  # warm up
    started = time.perf_counter()
    backbone.embed(views, batch_size)
    return n / (time.perf_counter() - started)


def stage(images: pd.DataFrame, boxes: pd.DataFrame, root: Path, cfg: dict, backbone, name: str
          ) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    frame, _ = compute_embeddings(images, boxes, root, cfg, lambda: backbone, root / f"cache_{name}",
                                  QualityReport())
    return frame, len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(weights={}, input_size=224, device="cpu", threads=args.threads,
               decode_workers=2, batch_size=args.batch_size, crops_top_k=1, crop_min_conf=0.3, crop_margin=0.15,
               chunk_images=256, flip=False, runtime="torch", precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch_lite0 = build_backbone("efficientnet_lite0", cfg)
        onnx_lite0 = build_backbone("efficientnet_lite0", dict(cfg, runtime="onnxruntime"), root / "onnx")
        onnx_lite2 = build_backbone("efficientnet_lite2", dict(cfg, runtime="onnxruntime"), root / "onnx")
        images = build(root, args.images, args.seed)
        paths = [root / "train" / f for f in images["file_name"]]
        time_decode(paths[:8], 1)  # warm up the page cache and the decoders
        full, reduced, opencv = time_decode(paths, 1), time_decode(paths, 4), time_opencv_reduced(paths)
        box = (0.3, 0.3, 0.25, 0.35)
        decode_frame = decode_only(images, root, [], 224, cfg["decode_workers"])
        decode_crop = decode_only(images, root, [box], 224, cfg["decode_workers"])
        forward = {(name, batch): forward_only(b, batch) for batch in (8, 32) for name, b in
                   (("torch", torch_lite0), ("onnxruntime", onnx_lite0), ("onnxruntime lite2", onnx_lite2))}
        naive_emb, naive_rate = naive(paths, torch_lite0, args.batch_size)
        no_boxes = pd.DataFrame({"image_id": pd.Series([], dtype=str), "conf": [], "x": [], "y": [], "w": [], "h": []})
        one_box = pd.DataFrame({"image_id": images.index, "conf": 0.9, "x": box[0], "y": box[1], "w": box[2],
                                "h": box[3]})
        rates, frames = {}, {}
        for runtime, backbone, batch in (("torch", torch_lite0, 32), ("torch", torch_lite0, args.batch_size),
                                         ("onnxruntime", onnx_lite0, args.batch_size)):
            run_cfg, key = dict(cfg, runtime=runtime, batch_size=batch), f"{runtime} b{batch}"
            frames[key], rates[(key, "frame")] = stage(images, no_boxes, root, run_cfg, backbone, key)
            _, rates[(key, "crop")] = stage(images, one_box, root, run_cfg, backbone, key + "_crop")
        onnx_cfg = dict(cfg, runtime="onnxruntime")
        _, flip_rate = stage(images, one_box, root, dict(onnx_cfg, flip=True), onnx_lite0, "flip")
        _, lite2_rate = stage(images, one_box, root, onnx_cfg, onnx_lite2,
                              "lite2")

    def cos(a, b):
        return ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()
    ours, before = f"onnxruntime b{args.batch_size}", "torch b32"
    assert cos(frames[before], naive_emb) > 0.95 and cos(frames[ours], frames[before]) > 0.9999
    print(f"{args.images} JPEGs {WIDTH}x{HEIGHT}, {args.threads} inference threads, stage batch {args.batch_size}, "
          f"{cfg['decode_workers']} decode threads")
    print(f"decode   full {full:7.1f} img/s   reduced 1/4 {reduced:7.1f} img/s   ratio {reduced / full:5.1f}x")
    print(f"decode   OpenCV reduced 1/4 (unchecked) {opencv:7.1f} img/s   checked/unchecked {reduced / opencv:5.2f}x")
    print(f"decode   stage views on its threads: frame {decode_frame:7.1f} img/s   frame + crop "
          f"{decode_crop:7.1f} img/s")
    for (name, batch), rate in forward.items():
        print(f"forward  {name:<18} batch {batch:2d} {rate:7.1f} views/s")
    print(f"naive    whole frame                 {naive_rate:7.1f} img/s")
    for (key, view), rate in rates.items():
        what = "whole frame" if view == "frame" else "frame + 1 crop"
        print(f"stage    {key:<15} {what:<15} {rate:7.1f} img/s   ratio {rate / naive_rate:5.1f}x vs naive")
    same = f"torch b{args.batch_size}"
    for view in ("frame", "crop"):
        rate = rates[(ours, view)]
        print(f"stage    {view:<5} {ours} vs the stage before (torch b32) {rate / rates[(before, view)]:4.2f}x, "
              f"vs {same} {rate / rates[(same, view)]:4.2f}x")
    print(f"stage    {ours} flip   frame + 1 crop  {flip_rate:7.1f} img/s   "
          f"cost {rates[(ours, 'crop')] / flip_rate:4.2f}x the unflipped time")
    print(f"stage    {ours} lite2  frame + 1 crop  {lite2_rate:7.1f} img/s (260 px)")
    inference = forward[("onnxruntime", 8)] / 2
    bound = "decoding" if decode_crop < inference else "inference"
    print(f"bound    frame + crop needs 2 forward passes per image: inference alone allows "
          f"{inference:6.1f} img/s, decoding {decode_crop:6.1f} img/s -> {bound} bounds the stage")
    print(f"agreement: naive vs stage cosine min {cos(frames[before], naive_emb):.4f}, "
          f"onnxruntime vs torch {cos(frames[ours], frames[before]):.7f}")


if __name__ == "__main__":
    main()
