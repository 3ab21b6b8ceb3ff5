"""The image tower of an OpenAI-style CLIP ViT (BioCLIP, BioCLIP-2, OpenAI's and LAION's CLIP), read from the
folder a Hugging Face download of an open_clip model lays out:

    open_clip_config.json        model_cfg: embed_dim, quick_gelu, vision_cfg {image_size, layers, width,
                                 patch_size, head_width, mlp_ratio}; preprocess_cfg: mean, std
    open_clip_pytorch_model.bin  (or open_clip_model.safetensors) the whole CLIP state dict

Only the `visual.*` tower is kept (`conv1`, `class_embedding`, `positional_embedding`, `ln_pre`,
`transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_post`,
`proj`), loaded strictly; the text tower is ignored. The embedding is the image embedding after `proj`,
what open_clip's `encode_image` returns (before its optional normalisation). The network runs at the
config's image size, the grid its position embeddings were trained on.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from features.backbones.runtime import BackboneError, Network, load_strict, pixel_scale, read_state_dict

CONFIG = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "open_clip_pytorch_model.pth")  # the names open_clip looks for, in its order
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
LN_EPS = 1e-5
VISION_KEYS = {"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio", "patch_dropout"}
# vision_cfg options that change the network: accepted only at the value that leaves it a plain CLIP ViT
PLAIN = {"ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
         "final_ln_after_pool": False, "pool_type": "tok", "output_tokens": False, "timm_model_name": None,
         "act_kwargs": None, "norm_kwargs": None, "block_type": None, "qk_norm": False, "scaled_cosine_attn": False,
         "scale_heads": False, "scale_attn_inner": False, "scale_attn": False, "scale_fc": False}
SETTINGS = ()  # the embeddings.* keys `build` reads: none (its network fixes its own input size)
NAMED = ("bioclip", "bioclip2")  # names whose folder comes from embeddings.weights; `clip:<folder>` names it


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation (config `quick_gelu: true`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(3 * width, width)))  # as nn.MHA
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(-1, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        return self.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, tokens, width))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(width, eps=LN_EPS), Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, mlp_width)), ("gelu", activation()),
                                              ("c_proj", nn.Linear(mlp_width, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width, activation)
                                       for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, mlp_width: int,
                 output_dim: int, activation: type[nn.Module]) -> None:
        super().__init__()
        grid = image_size // patch_size
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=LN_EPS)
        self.transformer = Transformer(width, layers, heads, mlp_width, activation)
        self.ln_post = nn.LayerNorm(width, eps=LN_EPS)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The image embedding (N, output_dim) of a normalised RGB batch (N, 3, S, S)."""
        patches = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.reshape(1, 1, -1).expand(patches.shape[0], -1, -1)  # traced: dynamic batch
        x = self.ln_pre(torch.cat([cls, patches], dim=1) + self.positional_embedding)
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj  # layer norm is per token: the CLS token's alone is the same


def _config(folder: Path, name: str) -> tuple[dict, dict, dict]:
    """(model_cfg, vision_cfg, preprocess_cfg) of the folder's open_clip_config.json, checked."""
    path = folder / CONFIG
    try:
        doc = json.loads(path.read_text())
        model_cfg = doc["model_cfg"]
        vision = dict(model_cfg["vision_cfg"])
    except FileNotFoundError as e:
        raise BackboneError(f"backbone {name}: {path} not found (an open_clip folder has {CONFIG} and "
                            f"{WEIGHT_FILES[2]} or {WEIGHT_FILES[0]})") from e
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BackboneError(f"backbone {name}: {path} is not an open_clip config "
                            f"(needs model_cfg.vision_cfg; {type(e).__name__}: {e})") from e
    for key, plain in PLAIN.items():
        if vision.get(key, plain) != plain:
            raise BackboneError(f"backbone {name}: {path}: vision_cfg.{key} = {vision[key]!r} is not an "
                                "OpenAI-style CLIP ViT (not supported)")
    unknown = sorted(set(vision) - VISION_KEYS - set(PLAIN))
    missing = sorted({"image_size", "layers", "width", "patch_size"} - set(vision))
    if unknown or missing or not isinstance(vision.get("layers"), int):
        raise BackboneError(f"backbone {name}: {path}: vision_cfg has unsupported keys {unknown}, lacks {missing}, "
                            f"or layers is not one number")
    for key in ("image_size", "patch_size"):  # open_clip also takes [height, width]
        if isinstance(vision[key], (list, tuple)):
            if len(set(vision[key])) != 1:
                raise BackboneError(f"backbone {name}: {path}: vision_cfg.{key} {vision[key]} is not square")
            vision[key] = vision[key][0]
    return model_cfg, vision, doc.get("preprocess_cfg", {})


def build(name: str, weights: str | None) -> Network:
    """The CLIP image tower of `name` from its open_clip folder `weights`."""
    if not weights:
        raise BackboneError(f"backbone {name} needs its open_clip folder: set embeddings.weights.{name} "
                            "(README, Backbones: where to download it)")
    folder = Path(weights)
    model_cfg, vision, preprocess = _config(folder, name)
    weights_file = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    if weights_file is None:
        raise BackboneError(f"backbone {name}: no weights in {folder} (expected one of {', '.join(WEIGHT_FILES)})")
    width, image_size = vision["width"], vision["image_size"]
    network = VisionTransformer(image_size, vision["patch_size"], width, vision["layers"],
                                width // vision.get("head_width", 64), int(width * vision.get("mlp_ratio", 4.0)),
                                model_cfg["embed_dim"], QuickGELU if model_cfg.get("quick_gelu") else nn.GELU)
    state = read_state_dict(weights_file, name)
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    load_strict(network, visual, name, weights_file)
    return Network(network, model_cfg["embed_dim"], image_size, pixel_scale(preprocess.get("mean", OPENAI_MEAN)),
                   pixel_scale(preprocess.get("std", OPENAI_STD)), [folder / CONFIG, weights_file])
