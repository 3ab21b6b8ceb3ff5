"""DINOv2 ViT-S/14, ViT-B/14, ViT-L/14 and their register variants, laid out so the torch-hub checkpoints a
user downloads (`dinov2_vits14_pretrain.pth`, `dinov2_vits14_reg4_pretrain.pth`, ...) load strictly:
`cls_token`, `pos_embed` (a 37 x 37 grid: the models were trained at 518 px), `register_tokens`,
`mask_token`, `patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
mlp.fc2, ls2.gamma}`, `norm`.

The network runs at `embeddings.input_size` (a multiple of 14). Upstream resamples the position embeddings
to the input's grid on every forward pass; here it is done once, at load, by the same call: bicubic, with
the plain models' small offset in the scale factor (0.1, a historical work-around upstream keeps for
compatibility) and the register models' anti-aliasing without offset. The embedding is the final-norm CLS
token, which is what the upstream model returns (`model(x)`, `x_norm_clstoken`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from features.backbones.runtime import (IMAGENET_MEAN, IMAGENET_STD, BackboneError, Network, load_strict,
                                        pixel_scale, read_state_dict)

PATCH = 14
SETTINGS = ("input_size",)  # the embeddings.* keys `build` reads, handed to it as keywords
TRAINED_GRID = 37  # 518 / 14: the grid of the checkpoints' position embeddings
LN_EPS = 1e-6


class Variant(NamedTuple):
    width: int
    depth: int
    heads: int
    registers: int
    antialias: bool   # how upstream resamples the position embeddings (hub/backbones.py)
    offset: float


_SIZES = {"s": (384, 12, 6), "b": (768, 12, 12), "l": (1024, 24, 16)}
VARIANTS = {f"dinov2_vit{s}14{'_reg' if reg else ''}": Variant(*_SIZES[s], 4 if reg else 0, reg, 0.0 if reg else 0.1)
            for s in _SIZES for reg in (False, True)}


def resample_position_embeddings(pos_embed: torch.Tensor, grid: int, offset: float, antialias: bool) -> torch.Tensor:
    """(1, 1 + M*M, D) position embeddings (CLS first) resampled to a grid x grid patch grid, as upstream's
    `interpolate_pos_encoding` does: bicubic, the scale factor (grid + offset) / M when an offset is given,
    else the output size."""
    cls, patches = pos_embed[:, :1], pos_embed[:, 1:].float()
    m = math.isqrt(patches.shape[1])
    if m * m != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} patch position embeddings are not a square grid")
    if grid == m:
        return pos_embed
    size = dict(scale_factor=((grid + offset) / m,) * 2) if offset else dict(size=(grid, grid))
    resampled = F.interpolate(patches.reshape(1, m, m, -1).permute(0, 3, 1, 2), mode="bicubic",
                              antialias=antialias, **size)
    if resampled.shape[-2:] != (grid, grid):
        raise ValueError(f"resampling {m}x{m} position embeddings gave {tuple(resampled.shape[-2:])}, "
                         f"not {grid}x{grid}")
    return torch.cat([cls, resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos_embed.dtype)], dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, PATCH, PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(-1, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, tokens, width))


class LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(width, eps=LN_EPS), Attention(width, heads), LayerScale(width)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(width, eps=LN_EPS), Mlp(width), LayerScale(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    def __init__(self, variant: Variant) -> None:
        super().__init__()
        width = variant.width
        self.variant = variant
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + TRAINED_GRID ** 2, width))
        self.register_tokens = nn.Parameter(torch.zeros(1, variant.registers, width)) if variant.registers else None
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # used in training only; in the checkpoint
        self.patch_embed = PatchEmbed(width)
        self.blocks = nn.ModuleList(Block(width, variant.heads) for _ in range(variant.depth))
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.set_input_size(TRAINED_GRID * PATCH)

    def set_input_size(self, size: int) -> None:
        """Resample the position embeddings for size x size inputs, once (a buffer outside the state dict)."""
        if size % PATCH:
            raise ValueError(f"DINOv2 input size must be a multiple of {PATCH}, not {size}")
        self.input_size = size
        with torch.no_grad():
            pos = resample_position_embeddings(self.pos_embed, size // PATCH, self.variant.offset,
                                               self.variant.antialias)
        self.register_buffer("grid_pos_embed", pos.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The final-norm CLS token of a normalised RGB batch (N, 3, S, S)."""
        patches = self.patch_embed(x) + self.grid_pos_embed[:, 1:]
        n = patches.shape[0]  # a traced size: the ONNX export keeps the batch dynamic
        tokens = [(self.cls_token + self.grid_pos_embed[:, :1]).expand(n, -1, -1)]
        if self.register_tokens is not None:  # registers carry no position
            tokens.append(self.register_tokens.expand(n, -1, -1))
        x = torch.cat(tokens + [patches], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # layer norm is per token: the CLS token's alone is the same


def build(name: str, weights: str | None, input_size: int) -> Network:
    """DINOv2 `name` with the torch-hub checkpoint at `weights`, run at `input_size` (embeddings.input_size)."""
    if not weights:
        raise BackboneError(f"backbone {name} needs its torch-hub checkpoint: set embeddings.weights.{name} "
                            "(README, Backbones: where to download it)")
    size = input_size
    if size % PATCH:
        raise BackboneError(f"backbone {name}: embeddings.input_size must be a multiple of {PATCH}, not {size}")
    network = DinoVisionTransformer(VARIANTS[name])
    load_strict(network, read_state_dict(weights, name), name, weights)
    network.set_input_size(size)
    return Network(network, VARIANTS[name].width, size, pixel_scale(IMAGENET_MEAN), pixel_scale(IMAGENET_STD),
                   [Path(weights)])
