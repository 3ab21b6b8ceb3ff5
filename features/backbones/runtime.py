"""What every backbone shares: strict loading of a downloaded checkpoint, the uint8 input step, the device,
and ONNX Runtime.

On the CPU a network runs in ONNX Runtime (`embeddings.runtime: onnxruntime`; README, Backbones, has the
measured speed against PyTorch): it is exported once from the PyTorch module at its fixed input size, with
the uint8 NHWC -> normalised NCHW step inside the graph, and kept on disk under a name that hashes the
weights and the export settings; `embeddings.precision: int8` runs that graph quantized by ONNX Runtime's
own tool (dynamic quantization, per-channel int8 weights), once its self-check on the run's own views
passes (features.embeddings). PyTorch runs it on CUDA, with `runtime: torch`, and for a network that does
not export (the reason is logged and noted in the quality report).
"""
from __future__ import annotations

import logging
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.quality import DataError
from infra.atomic import atomic_path
from infra.code_deps import code_digest
from infra.hashing import digest, source_digest

log = logging.getLogger(__name__)
ONNX_OPSET = 17
RUNTIMES = ("onnxruntime", "torch")
PRECISIONS = ("fp32", "int8")
INT8_RUNTIME = "onnxruntime-int8"  # the runtime a backbone running its int8 graph reports (and is cached under)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
KEYS_SHOWN = 3  # key names an error message shows of each kind


class BackboneError(DataError):
    """A backbone that cannot be built as configured (a weights file that does not fit, a missing library)."""


@dataclass
class Network:
    """A backbone's PyTorch module (normalised float NCHW in, (N, dim) features out) and how to feed it."""
    module: nn.Module
    dim: int
    input_size: int
    mean: tuple[float, float, float]  # on the 0-255 pixel scale
    std: tuple[float, float, float]
    weights: list[Path]               # the files whose contents are the weights (they identify the backbone)


def pixel_scale(values: tuple) -> tuple:
    """Mean or std given on the [0, 1] scale, on the 0-255 scale of uint8 pixels."""
    return tuple(float(v) * 255 for v in values)


def resolve_device(device: str) -> torch.device:
    """`cpu`, `cuda` or `auto` (cuda when available, else cpu)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackboneError("embeddings.device is cuda but torch sees no CUDA device (use cpu or auto)")
    if device not in ("cpu", "cuda"):
        raise BackboneError(f"embeddings.device must be cpu, cuda or auto, not {device!r}")
    return torch.device(device)


def _not_a_checkpoint(path: Path) -> str | None:
    """What a file that cannot be a checkpoint is, from its first bytes: a download cut to nothing, or the web
    page a browser or a blocked request saved under the checkpoint's name. None if it may be one."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file (0 bytes): the download did not finish"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<!--")):
        return "an HTML page, not a checkpoint: the download saved a web page (a login, error or redirect page)"
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):  # torch.save's zip, its index at the end
        return ("a zip archive (PyTorch's checkpoint format) without its central directory, which ends the file: the "
                "file is cut short, download it again")
    return None


def first_sentence(error: Exception, limit: int = 200) -> str:
    """A reader's error in a few words: its first sentence, cut at a word within `limit` characters (marked ...)."""
    text = " ".join(str(error).split()) or type(error).__name__
    sentence = text.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " ..."


def read_state_dict(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a .pth/.pt/.bin (loaded with weights_only: no pickled code runs) or .safetensors file.
    A file that is not one is named with what it is instead (empty, a web page, a pickle of more than
    tensors), never with a reader's traceback."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"backbone {name}: weights file {path} not found (download it: README, Backbones)")
    what = _not_a_checkpoint(path)
    if what:
        raise BackboneError(f"backbone {name}: {path} is {what}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler met an object other than tensors and containers: loading it would
        # run code the file names, which is refused whatever the file claims to be
        raise BackboneError(f"backbone {name}: {path} is a pickle holding objects other than tensors (loading "
                            f"it would run code it names), refused: use the published checkpoint, or save its "
                            f"state dict of tensors (torch.save(model.state_dict())) or a .safetensors file") from e
    except Exception as e:  # noqa: BLE001 - any other reader failure is this file's defect, said in one line
        raise BackboneError(f"backbone {name}: {path} is not a readable "
                            f"{'safetensors file' if path.suffix == '.safetensors' else 'PyTorch checkpoint'} "
                            f"({first_sentence(e)})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"backbone {name}: {path} holds no state dict of tensors")
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], name: str, path: str | Path) -> None:
    """Every parameter of `module` from `state`, or BackboneError in one line naming the backbone, the file,
    the missing and unexpected keys (how many, a few names) or the first misshapen one: never a network
    partly left at its random initialisation."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"{len(keys)} {kind} keys ({', '.join(keys[:KEYS_SHOWN])}{', ...' if len(keys) > KEYS_SHOWN else ''})"
                 for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise BackboneError(f"backbone {name}: {path} does not fit: {'; '.join(parts)}")
    misshapen = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items() if state[k].shape != v.shape]
    if misshapen:
        key, got, want = misshapen[0]
        raise BackboneError(f"backbone {name}: {path} does not fit: {len(misshapen)} tensors of the wrong shape, "
                            f"e.g. {key} is {got}, expected {want}")
    module.load_state_dict(state, strict=True)


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
    module: UInt8Input                  # the torch network behind its uint8 input step
    dim: int
    input_size: int
    device: torch.device
    runtime: str = "torch"
    session: object | None = None       # an onnxruntime.InferenceSession when runtime is onnxruntime
    runtime_reason: str | None = None   # why it runs in PyTorch although ONNX Runtime was asked for
    graph: Path | None = None           # the exported fp32 graph the session runs
    int8: Path | None = None            # its int8 graph, when embeddings.precision asks for one

    def use_int8(self, threads: int) -> None:
        """Run the int8 graph from now on."""
        self.session, self.runtime = ort_session(self.int8, threads), INT8_RUNTIME

    def use_fp32(self, threads: int) -> None:
        """Run the exported fp32 graph from now on."""
        self.session, self.runtime = ort_session(self.graph, threads), "onnxruntime"

    @property
    def model_id(self) -> str:
        return f"{self.name}@{self.weights_sha}"

    def embed(self, views: np.ndarray, batch_size: int) -> np.ndarray:
        """Features (N, dim) float32 of RGB uint8 views (N, S, S, 3), in batches of `batch_size`. The int8
        graph quantizes activations with one scale per call, taken over the whole batch, so it runs one view
        per call: a view's features never depend on the views batched with it (nor on the batch size)."""
        if self.runtime == INT8_RUNTIME:
            batch_size = 1
        out = np.empty((len(views), self.dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(views), batch_size):
                batch = np.ascontiguousarray(views[start:start + batch_size])
                if self.session is not None:
                    out[start:start + len(batch)] = self.session.run(None, {"views": batch})[0]
                else:
                    out[start:start + len(batch)] = self.module(
                        torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
        return out


def frozen(network: Network, name: str, device: torch.device) -> Backbone:
    """The network in eval mode, without gradients, channels_last, behind its uint8 input step, on `device`."""
    module = network.module.eval().requires_grad_(False).to(memory_format=torch.channels_last)
    wrapped = UInt8Input(module, network.mean, network.std).eval().to(device)
    return Backbone(name, source_digest(*network.weights), wrapped, network.dim, network.input_size, device)


def onnx_graph(backbone: Backbone, folder: Path, code: str) -> Path:
    """The backbone's ONNX graph in `folder`, exported on first use and reused after; `code` is the file whose
    imports built the network (part of the graph's name)."""
    settings = digest(backbone.input_size, ONNX_OPSET, torch.__version__, code_digest(code))[:12]
    path = Path(folder) / f"{backbone.name.replace(':', '_').replace('/', '_')}-{backbone.weights_sha}-{settings}.onnx"
    if not path.is_file():
        log.info("embeddings: exporting %s to ONNX (%s)", backbone.model_id, path)
        example = torch.zeros((1, backbone.input_size, backbone.input_size, 3), dtype=torch.uint8)
        with atomic_path(path) as tmp, warnings.catch_warnings():
            # shapes read in forward (padding, token counts) are constants at the fixed input size
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(backbone.module.cpu(), (example,), str(tmp), input_names=["views"],
                              output_names=["features"], dynamic_axes={"views": {0: "n"}, "features": {0: "n"}},
                              opset_version=ONNX_OPSET, dynamo=False)
        backbone.module.to(backbone.device)
    return path


def int8_graph(graph: Path) -> Path:
    """The graph with its weights quantized to int8 (ONNX Runtime's dynamic quantization: per-channel int8
    weights, activations quantized per batch at run time), beside it, quantized on first use."""
    path = graph.with_name(f"{graph.stem}-int8{graph.suffix}")
    if not path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        log.info("embeddings: quantizing %s to int8 (%s)", graph.name, path)
        logging.disable(logging.WARNING)  # the quantizer's advice on static pre-processing, logged at the root
        try:
            with atomic_path(path) as tmp:
                quantize_dynamic(str(graph), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
    return path


def ort_session(graph: Path, threads: int):
    """An ONNX Runtime session of a graph on `threads` CPU threads."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # idle inference threads sleep instead of spinning, leaving the cores to the decode threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` to the same row of `b`."""
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
