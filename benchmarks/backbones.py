"""Benchmark: what each backbone costs on this machine, beside what it is published to be worth.

Run by hand: `.venv/bin/python benchmarks/backbones.py [--backbones a,b] [--threads 2] [--views 48]
[--megadetector FILE] [--device cuda]`. For each backbone, the network at its real architecture size with
random weights (speed does not depend on their values), in ONNX Runtime and in PyTorch at batch 8 on
`--threads` threads: views per second, GFLOPs per view (counted by PyTorch's FlopCounterMode: matrix
products, convolutions and attention, two per multiply-add), and hours for iWildCam 2020's 280,853 frames
with their crops. The crops are counted from `--megadetector` (a real MegaDetector file: boxes at or above
params' `crop_min_conf`, at most `crops_top_k` per image); without it the table gives the frames alone and
the upper bound of `crops_top_k` crops on every frame. EfficientNet-Lite0 is the reference: each row also
gives its views/s as a ratio to Lite0's in the same run. Asserts that ONNX Runtime gives PyTorch's features
(cosine >= 0.9999) for every backbone, including those too large for the test suite. Beside fp32, the int8
graph as `embeddings.precision: int8` runs it (ONNX Runtime's dynamic quantization, one view per call): its
views/s, ratio to fp32 in the same run, cosine to the fp32 features (min, mean: random weights lack the
activation outliers of trained ViTs, so this says nothing of real weights, which the stage's self-check
measures) and hours. `--device cuda` adds PyTorch on the GPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import features.backbones  # noqa: E402
from features.backbones import clip, dinov2, efficientnet_lite  # noqa: E402
from features.backbones.runtime import (IMAGENET_MEAN, IMAGENET_STD, Network, cosines, frozen,  # noqa: E402
                                        int8_graph, onnx_graph, pixel_scale, resolve_device)

FRAMES = 280_853  # iWildCam 2020: 217,959 train + 62,894 test images
BATCH = 8
# (image size, patch, width, layers, embedding): BioCLIP is a ViT-B/16, BioCLIP-2 a ViT-L/14
CLIP_SIZES = {"bioclip": (224, 16, 768, 12, 512), "bioclip2": (224, 14, 1024, 24, 768)}


def network(name: str, input_size: int) -> Network:
    """`name` at its real size with random weights, as the registry would build it from a checkpoint."""
    if name in efficientnet_lite.VARIANTS:
        module = efficientnet_lite.Pooled(efficientnet_lite.EfficientNetLite(efficientnet_lite.VARIANTS[name]))
        return Network(module, efficientnet_lite.FEATURES, efficientnet_lite.VARIANTS[name].input_size,
                       (efficientnet_lite.PIXEL_MEAN,) * 3, (efficientnet_lite.PIXEL_STD,) * 3, [])
    if name in dinov2.VARIANTS:
        module = dinov2.DinoVisionTransformer(dinov2.VARIANTS[name])
        nn.init.normal_(module.pos_embed, std=0.02)
        module.set_input_size(input_size)
        return Network(module, dinov2.VARIANTS[name].width, input_size, pixel_scale(IMAGENET_MEAN),
                       pixel_scale(IMAGENET_STD), [])
    size, patch, width, layers, dim = CLIP_SIZES[name]
    module = clip.VisionTransformer(size, patch, width, layers, width // 64, 4 * width, dim, nn.GELU)
    for p in (module.class_embedding, module.positional_embedding, module.proj):
        nn.init.normal_(p, std=0.02)
    return Network(module, dim, size, pixel_scale(clip.OPENAI_MEAN), pixel_scale(clip.OPENAI_STD), [])


def views_per_s(embed, views: np.ndarray) -> float:
    embed(views[:BATCH])  # warm up
    started = time.perf_counter()
    embed(views)
    return len(views) / (time.perf_counter() - started)


def gflops(backbone) -> float:
    x = torch.zeros((1, backbone.input_size, backbone.input_size, 3), dtype=torch.uint8)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        backbone.module.cpu()(x)
    return counter.get_total_flops() / 1e9


def crop_views(path: Path | None, top_k: int, min_conf: float) -> int | None:
    """Crop views of a MegaDetector file (competition or batch-output form): per image, boxes at or above
    `min_conf`, at most `top_k`."""
    if path is None:
        return None
    doc = json.loads(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf"))
    return sum(min(top_k, sum(d.get("conf", 0) >= min_conf for d in (entry.get("detections") or [])))
               for entry in doc["images"])


def main() -> None:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["embeddings"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="efficientnet_lite0,efficientnet_lite2,dinov2_vits14,dinov2_vits14_reg,"
                        "dinov2_vitb14,dinov2_vitl14,bioclip,bioclip2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--views", type=int, default=48, help="views timed per backbone and runtime")
    parser.add_argument("--input-size", type=int, default=params["input_size"], help="DINOv2's input size")
    parser.add_argument("--megadetector", type=Path, help="count the crop views of this MegaDetector file")
    parser.add_argument("--device", default="cpu", help="cuda: also time PyTorch on the GPU")
    parser.add_argument("--out", type=Path, help="also write the rows as json here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    top_k = params["crops_top_k"]
    crops = crop_views(args.megadetector, top_k, params["crop_min_conf"])
    rows, lite0 = [], None
    names = ["efficientnet_lite0"] + [n for n in args.backbones.split(",") if n != "efficientnet_lite0"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # Lite0 first: the reference of the ratios
            backbone = frozen(network(name, args.input_size), name, torch.device("cpu"))
            views = np.random.default_rng(0).integers(0, 256, (args.views, backbone.input_size,
                                                               backbone.input_size, 3), dtype=np.uint8)
            row = {"backbone": name, "dim": backbone.dim, "input": backbone.input_size, "gflops": gflops(backbone),
                   "torch": views_per_s(lambda v: backbone.embed(v, BATCH), views)}
            reference = backbone.embed(views, BATCH)
            backbone.graph = onnx_graph(backbone, Path(tmp), features.backbones.__file__)
            backbone.use_fp32(args.threads)
            row["onnxruntime"] = views_per_s(lambda v: backbone.embed(v, BATCH), views)
            exported = backbone.embed(views, BATCH)  # the same features, or the speed means nothing
            row["min_cosine"] = float(cosines(exported, reference).min())
            assert row["min_cosine"] >= 0.9999, f"{name}: ONNX Runtime differs from PyTorch ({row['min_cosine']})"
            backbone.int8 = int8_graph(backbone.graph)
            backbone.use_int8(args.threads)  # as the stage runs it: one view per call
            row["int8"] = views_per_s(lambda v: backbone.embed(v, BATCH), views)
            similarity = cosines(backbone.embed(views, BATCH), exported)
            row["int8_vs_fp32"] = row["int8"] / row["onnxruntime"]
            row["int8_min_cosine"], row["int8_mean_cosine"] = float(similarity.min()), float(similarity.mean())
            row["int8_hours_frames"] = FRAMES / row["int8"] / 3600
            row["int8_hours_all_crops"] = FRAMES * (1 + top_k) / row["int8"] / 3600
            if args.device == "cuda":
                backbone.session, backbone.runtime, backbone.device = None, "torch", resolve_device("cuda")
                backbone.module.to(backbone.device)
                row["cuda"] = views_per_s(lambda v: backbone.embed(v, 64), np.concatenate([views] * 8))
            best = row["onnxruntime"]
            lite0 = lite0 or best
            row["vs_lite0"] = best / lite0
            row["hours_frames"] = FRAMES / best / 3600
            row["hours_all_crops"] = FRAMES * (1 + top_k) / best / 3600
            if crops is not None:
                row["hours_frames_and_crops"] = (FRAMES + crops) / best / 3600
            rows.append(row)
            print(f"{name:20s} {backbone.input_size:4d}px dim {backbone.dim:5d}  {row['gflops']:6.1f} GFLOPs/view  "
                  f"ONNX Runtime {row['onnxruntime']:6.1f} views/s ({row['vs_lite0']:.2f}x Lite0, cosine to PyTorch "
                  f"{row['min_cosine']:.6f})  "
                  f"PyTorch {row['torch']:6.1f}  frames {row['hours_frames']:6.1f} h  + {top_k} crops each "
                  f"{row['hours_all_crops']:6.1f} h  |  int8 {row['int8']:6.1f} views/s ({row['int8_vs_fp32']:.2f}x "
                  f"fp32, cosine to fp32 min {row['int8_min_cosine']:.5f} mean {row['int8_mean_cosine']:.5f}) frames "
                  f"{row['int8_hours_frames']:6.1f} h + crops {row['int8_hours_all_crops']:6.1f} h"
                  + (f"  cuda {row['cuda']:.0f} views/s" if "cuda" in row else "")
                  + (f"  frames + {crops:,} crops {row['hours_frames_and_crops']:.1f} h" if crops is not None else ""),
                  flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
