"""`timm:<arch>` and `torchvision:<arch>`: an architecture built by that library, if it is installed, with a
state dict the user supplies (nothing is downloaded). Optional: neither library is a dependency (both
import torchvision, whose CPU build PyPI does not serve)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from features.backbones.runtime import (IMAGENET_MEAN, IMAGENET_STD, BackboneError, Network, load_strict,
                                        pixel_scale, read_state_dict)

SETTINGS = ()  # the embeddings.* keys `build` reads: none (its network fixes its own input size)
PREFIXES = ("timm:", "torchvision:")


def build(name: str, weights: str | None) -> Network:
    library, arch = name.split(":", 1)
    if not weights:
        raise BackboneError(f"backbone {name} needs a local state dict: set embeddings.weights.{name}")
    state = read_state_dict(weights, name)
    try:
        if library == "timm":
            import timm
            network = timm.create_model(arch, pretrained=False)
            load_strict(network, state, name, weights)
            network.reset_classifier(0)
            pretrained = network.pretrained_cfg
            return Network(network, network.num_features, int(pretrained.get("input_size", (3, 224, 224))[-1]),
                           pixel_scale(pretrained.get("mean", IMAGENET_MEAN)),
                           pixel_scale(pretrained.get("std", IMAGENET_STD)), [Path(weights)])
        import torchvision
        network = torchvision.models.get_model(arch, weights=None)
    except ImportError as e:
        raise BackboneError(f"backbone {name} needs the {library} package installed ({e})") from e
    load_strict(network, state, name, weights)
    linears = [(n, m) for n, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BackboneError(f"backbone {name} has no linear classifier to remove")
    head_name, head = linears[-1]
    parent = network.get_submodule(head_name.rpartition(".")[0]) if "." in head_name else network
    setattr(parent, head_name.rpartition(".")[2], nn.Identity())
    return Network(network, head.in_features, 224, pixel_scale(IMAGENET_MEAN), pixel_scale(IMAGENET_STD),
                   [Path(weights)])
