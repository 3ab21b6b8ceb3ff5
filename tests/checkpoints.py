"""Checkpoints in the layouts researchers download, with random weights: DINOv2's torch-hub state dicts and
open_clip's Hugging Face folders. The key names and shapes are written out here from the upstream layouts,
not taken from our modules, so a module that drifts from them fails to load."""
from __future__ import annotations

import json
from pathlib import Path

import torch

DINOV2_SIZES = {"dinov2_vits14": (384, 12), "dinov2_vitb14": (768, 12), "dinov2_vitl14": (1024, 24)}
OPENAI_MEAN, OPENAI_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _random(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Weights small enough that 12-24 random blocks keep finite, varied activations; norms near 1."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        scale = 0.02 if len(shape) > 1 else 0.1
        base = 1.0 if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ln_1.weight", "ln_2.weight",
                                    "ln_pre.weight", "ln_post.weight", "gamma")) else 0.0
        state[key] = base + scale * torch.randn(shape, generator=g)
    return state


def dinov2_hub_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the keys and shapes of `<name>_pretrain.pth` (`_reg`: `<arch>_reg4_pretrain.pth`)."""
    width, depth = DINOV2_SIZES[name.removesuffix("_reg")]
    shapes = {"cls_token": (1, 1, width), "pos_embed": (1, 1 + 37 * 37, width), "mask_token": (1, width),
              "patch_embed.proj.weight": (width, 3, 14, 14), "patch_embed.proj.bias": (width,),
              "norm.weight": (width,), "norm.bias": (width,)}
    if name.endswith("_reg"):
        shapes["register_tokens"] = (1, 4, width)
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                       b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                       b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                       b + "ls1.gamma": (width,), b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                       b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                       b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,),
                       b + "ls2.gamma": (width,)})
    return _random(shapes, seed)


def open_clip_state(layers: int, width: int, patch: int, image_size: int, embed_dim: int, seed: int = 0
                    ) -> dict[str, torch.Tensor]:
    """A whole CLIP state dict as open_clip saves it: the `visual.*` tower at the given size and a text tower
    under its real key names (one block and a short vocabulary: its size does not matter, it is ignored)."""
    grid = image_size // patch
    shapes = {"visual.class_embedding": (width,), "visual.positional_embedding": (grid * grid + 1, width),
              "visual.proj": (width, embed_dim), "visual.conv1.weight": (width, 3, patch, patch),
              "visual.ln_pre.weight": (width,), "visual.ln_pre.bias": (width,),
              "visual.ln_post.weight": (width,), "visual.ln_post.bias": (width,)}
    for i in range(layers):
        b = f"visual.transformer.resblocks.{i}."
        shapes.update({b + "ln_1.weight": (width,), b + "ln_1.bias": (width,),
                       b + "attn.in_proj_weight": (3 * width, width), b + "attn.in_proj_bias": (3 * width,),
                       b + "attn.out_proj.weight": (width, width), b + "attn.out_proj.bias": (width,),
                       b + "ln_2.weight": (width,), b + "ln_2.bias": (width,),
                       b + "mlp.c_fc.weight": (4 * width, width), b + "mlp.c_fc.bias": (4 * width,),
                       b + "mlp.c_proj.weight": (width, 4 * width), b + "mlp.c_proj.bias": (width,)})
    text = 64
    shapes.update({"positional_embedding": (77, text), "text_projection": (text, embed_dim), "logit_scale": (),
                   "token_embedding.weight": (1000, text), "ln_final.weight": (text,), "ln_final.bias": (text,),
                   "transformer.resblocks.0.attn.in_proj_weight": (3 * text, text),
                   "transformer.resblocks.0.mlp.c_fc.weight": (4 * text, text)})
    return _random(shapes, seed)


def write_open_clip_folder(folder: Path, layers: int = 12, width: int = 768, patch: int = 16, image_size: int = 224,
                           embed_dim: int = 512, safetensors: bool = False, seed: int = 0, **model_cfg) -> Path:
    """An open_clip folder as a Hugging Face download lays it out (defaults: BioCLIP's ViT-B/16)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": {"embed_dim": embed_dim, **model_cfg,
                            "vision_cfg": {"image_size": image_size, "layers": layers, "width": width,
                                           "patch_size": patch},
                            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                                         "layers": 12}},
              "preprocess_cfg": {"mean": OPENAI_MEAN, "std": OPENAI_STD}}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    state = open_clip_state(layers, width, patch, image_size, embed_dim, seed)
    if safetensors:
        from safetensors.torch import save_file
        save_file(state, str(folder / "open_clip_model.safetensors"))
    else:
        torch.save(state, folder / "open_clip_pytorch_model.bin")
    return folder
