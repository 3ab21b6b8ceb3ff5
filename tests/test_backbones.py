"""The backbones researchers bring: DINOv2's torch-hub checkpoints and open_clip folders (BioCLIP), at their
real architecture sizes, load strictly, embed real-format sample views, run equally in ONNX Runtime, and
a wrong file fails in one line."""
import json
import os
import shutil
from functools import partial

import numpy as np
import pytest
import torch
import yaml

from data import QualityReport
from features.backbones import BackboneError, build_backbone, check_backbones, clip, family_name
from features.backbones.runtime import cosines
from features.embeddings import compute_embeddings
from features.backbones.dinov2 import resample_position_embeddings
from tests.checkpoints import dinov2_hub_state, write_open_clip_folder
from stages.embeddings import check_tracked
from tests.helpers import Payload, cosine, load_tables, project_reading, run_stage, sample_views

CFG = dict(device="cpu", runtime="torch", threads=2, input_size=224, precision="fp32")


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights (PyTorch's bicubic, a = -0.75) of the 4 neighbours at offsets -1, 0,
    1, 2 from a sample point `t` past the first of the middle two."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):   # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def test_position_embeddings_are_resampled_as_upstream_does_at_run_time_by_hand():
    """A 2x2 grid to 1x1 with upstream's offset 0.1: the scale factor is 1.1 / 2, so the output pixel samples
    the input at (0 + 0.5) / 0.55 - 0.5 = 0.4091, not at the centre 0.5 that the size alone would give;
    neighbours outside the grid are clamped to its edge."""
    a, b, c, d = 1.0, 2.0, 5.0, 11.0
    pos = torch.tensor([[[7.0], [a], [b], [c], [d]]])  # (1, 1 + 2*2, 1): CLS, then the grid row by row
    w = cubic_weights(0.5 / 0.55 - 0.5)
    p, q = w[0] + w[1], w[2] + w[3]  # offsets -1 and 0 both read index 0; 1 and 2 both read index 1
    expected = p * p * a + p * q * b + q * p * c + q * q * d
    got = resample_position_embeddings(pos, 1, offset=0.1, antialias=False)
    assert got.shape == (1, 2, 1) and got[0, 0, 0] == 7.0  # the CLS embedding is kept
    assert got[0, 1, 0].item() == pytest.approx(expected, rel=1e-6)
    centred = resample_position_embeddings(pos, 1, offset=0.0, antialias=False)
    assert centred[0, 1, 0].item() == pytest.approx((a + b + c + d) / 4, rel=1e-6)  # symmetric weights
    assert abs(expected - (a + b + c + d) / 4) > 0.5  # the offset matters
    assert resample_position_embeddings(pos, 2, offset=0.1, antialias=False) is pos  # the trained grid: as is


@pytest.fixture(scope="module")
def dinov2_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hub")
    paths = {}
    for name, file in (("dinov2_vits14", "dinov2_vits14_pretrain.pth"),
                       ("dinov2_vits14_reg", "dinov2_vits14_reg4_pretrain.pth")):
        torch.save(dinov2_hub_state(name), folder / file)
        paths[name] = str(folder / file)
    return paths


@pytest.fixture(scope="module")
def bioclip_folder(tmp_path_factory):
    """BioCLIP's layout and size: ViT-B/16 at 224, 512-d embedding, GELU (its config has no quick_gelu)."""
    return write_open_clip_folder(tmp_path_factory.mktemp("hf") / "bioclip")


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_vits14_reg"])
def test_dinov2_hub_checkpoint_embeds_views_equally_in_pytorch_and_onnx_runtime(name, dinov2_files, root, tmp_path):
    cfg = dict(CFG, weights=dinov2_files)
    torch_backbone = build_backbone(name, cfg)
    onnx = build_backbone(name, dict(cfg, runtime="onnxruntime"), tmp_path)
    assert onnx.runtime == "onnxruntime" and (torch_backbone.dim, torch_backbone.input_size) == (384, 224)
    views = sample_views(root, 6)
    ours, reference = onnx.embed(views, 8), torch_backbone.embed(views, 8)
    assert len(views) > 10 and np.isfinite(reference).all() and reference.std(axis=0).mean() > 0.05
    assert cosine(ours, reference).min() >= 0.9999
    network = torch_backbone.module.network
    assert network.grid_pos_embed.shape == (1, 1 + 16 * 16, 384)  # resampled once, at load, to 224 / 14
    assert torch.equal(network.pos_embed, torch.load(dinov2_files[name], weights_only=True)["pos_embed"])
    # other input sizes resample to their grid; the trained size uses the checkpoint's embeddings as they are
    small = build_backbone(name, dict(cfg, input_size=112))
    assert small.input_size == 112 and small.embed(sample_views(root, 2, 112), 4).shape[1] == 384
    assert build_backbone(name, dict(cfg, input_size=518)).module.network.grid_pos_embed.shape[1] == 1 + 37 * 37


@pytest.mark.parametrize("safetensors", [False, True])
def test_open_clip_folder_embeds_with_its_config_in_pytorch_and_onnx_runtime(safetensors, root, tmp_path,
                                                                            bioclip_folder):
    # BioCLIP's real size from a .bin; a smaller tower from a .safetensors (the reader is what differs)
    small = dict(layers=2, width=128, embed_dim=64, safetensors=True)
    folder = bioclip_folder if not safetensors else write_open_clip_folder(tmp_path / "clip", **small)
    cfg = dict(CFG, weights={"bioclip": str(folder)})
    torch_backbone = build_backbone("bioclip", cfg)
    assert (torch_backbone.dim, torch_backbone.input_size) == ((64, 224) if safetensors else (512, 224))
    mean = torch_backbone.module.mean.flatten().tolist()
    assert mean == pytest.approx([0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255])  # CLIP's, not ImageNet's
    onnx = build_backbone("bioclip", dict(cfg, runtime="onnxruntime"), tmp_path / "onnx")
    views = sample_views(root, 4)
    ours, reference = onnx.embed(views, 8), torch_backbone.embed(views, 8)
    assert np.isfinite(reference).all() and cosine(ours, reference).min() >= 0.9999
    # `clip:<folder>` is the same network, named by its folder
    same = build_backbone(f"clip:{folder}", CFG)
    np.testing.assert_allclose(same.embed(views[:3], 8), reference[:3], atol=1e-4)
    assert same.weights_sha == torch_backbone.weights_sha


def test_quick_gelu_follows_the_config(root, tmp_path):
    """OpenAI's own CLIP weights need QuickGELU (`quick_gelu: true`); the same weights without it differ."""
    views = sample_views(root, 2)
    small = dict(layers=2, width=128, patch=32, embed_dim=64)
    gelu = build_backbone(f"clip:{write_open_clip_folder(tmp_path / 'a', **small)}", CFG).embed(views, 4)
    quick = build_backbone(f"clip:{write_open_clip_folder(tmp_path / 'b', quick_gelu=True, **small)}", CFG)
    with_quick = quick.embed(views, 4)
    mlps = [m.mlp for m in quick.module.modules() if hasattr(m, "mlp")]
    assert len(mlps) == small["layers"] and all(isinstance(mlp.gelu, clip.QuickGELU) for mlp in mlps)
    assert np.abs(with_quick - gelu).max() > 1e-4
    for mlp in mlps:  # the activation is the whole difference: swapped back, the vectors are the GELU ones
        mlp.gelu = torch.nn.GELU()
    np.testing.assert_allclose(quick.embed(views, 4), gelu, atol=1e-6)


def one_line(match: str):
    return pytest.raises(BackboneError, match=match)


def test_wrong_files_fail_in_one_line_naming_backbone_file_and_keys(dinov2_files, bioclip_folder, tmp_path):
    vits = dinov2_files["dinov2_vits14"]
    with one_line(rf"backbone dinov2_vitb14: {vits} does not fit: 175 tensors of the wrong shape, e\.g\. "):
        build_backbone("dinov2_vitb14", dict(CFG, weights={"dinov2_vitb14": vits}))
    with one_line(r"backbone dinov2_vits14_reg: .* does not fit: 1 missing keys \(register_tokens\)"):
        build_backbone("dinov2_vits14_reg", dict(CFG, weights={"dinov2_vits14_reg": vits}))
    state = dinov2_hub_state("dinov2_vits14")
    del state["blocks.3.ls1.gamma"], state["blocks.4.ls2.gamma"]
    state["head.weight"] = torch.zeros(1000, 384)
    torch.save(state, tmp_path / "edited.pth")
    with one_line(r"2 missing keys \(blocks.3.ls1.gamma, blocks.4.ls2.gamma\); 1 unexpected keys \(head.weight\)"):
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "edited.pth")}))
    # failed downloads: a web page saved under the checkpoint's name, a file cut to nothing, a file cut short
    (tmp_path / "html.pth").write_bytes(b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>")
    with one_line(r"html.pth is an HTML page, not a checkpoint: the download saved a web page"):
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "html.pth")}))
    (tmp_path / "empty.pth").write_bytes(b"")
    with one_line(r"empty.pth is an empty file \(0 bytes\): the download did not finish$"):
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "empty.pth")}))
    for cut in (3000, 5000, len((tmp_path / "edited.pth").read_bytes()) - 10):
        (tmp_path / "cut.pth").write_bytes((tmp_path / "edited.pth").read_bytes()[:cut])
        with one_line(r"cut.pth is a zip archive \(PyTorch's checkpoint format\) without its central directory, "
                      r"which ends the file: the file is cut short, download it again$"):
            build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "cut.pth")}))
    (tmp_path / "garbled.safetensors").write_bytes(b"\xff" * 64)  # any other reader's error: its first sentence
    with one_line(r"garbled.safetensors is not a readable safetensors file \([^.]+\)$"):
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "garbled.safetensors")}))
    with one_line(r"weights file .*missing.pth not found \(download it: README, Backbones\)"):
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "missing.pth")}))
    with one_line(r"backbone dinov2_vits14 needs its torch-hub checkpoint: set embeddings.weights.dinov2_vits14"):
        build_backbone("dinov2_vits14", dict(CFG, weights={}))
    with one_line(r"embeddings.input_size must be a multiple of 14, not 200"):
        build_backbone("dinov2_vits14", dict(CFG, weights=dinov2_files, input_size=200))
    # a DINOv2 file where a CLIP tower is expected: every visual key is missing
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text((bioclip_folder / "open_clip_config.json").read_text())
    torch.save(dinov2_hub_state("dinov2_vits14"), folder / "open_clip_pytorch_model.bin")
    with one_line(r"does not fit: 152 missing keys \(class_embedding, positional_embedding, proj, \.\.\.\)$"):
        build_backbone(f"clip:{folder}", CFG)
    (folder / "open_clip_pytorch_model.bin").unlink()
    with one_line(r"no weights in .*clip \(expected one of open_clip_model.safetensors, "):
        build_backbone(f"clip:{folder}", CFG)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"]["attentional_pool"] = True
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with one_line(r"vision_cfg.attentional_pool = True is not an OpenAI-style CLIP ViT"):
        build_backbone(f"clip:{folder}", CFG)
    (folder / "open_clip_config.json").unlink()
    with one_line(r"open_clip_config.json not found"):
        build_backbone(f"clip:{folder}", CFG)


def test_a_pickled_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"cls_token": Payload(str(marker))}, tmp_path / "payload.pth")
    with pytest.raises(BackboneError) as refused:
        build_backbone("dinov2_vits14", dict(CFG, weights={"dinov2_vits14": str(tmp_path / "payload.pth")}))
    assert str(refused.value) == (
        f"backbone dinov2_vits14: {tmp_path / 'payload.pth'} is a pickle holding objects other than tensors (loading "
        "it would run code it names), refused: use the published checkpoint, or save its state dict of tensors "
        "(torch.save(model.state_dict())) or a .safetensors file")
    assert "weights_only=False" not in str(refused.value) and not marker.exists()


def test_backbone_lists_name_distinct_families():
    assert family_name("dinov2_vits14") == "embeddings_dinov2_vits14"
    assert family_name("clip:weights/My CLIP-B16") == "embeddings_clip_my_clip_b16"
    assert family_name("timm:vit_base_patch16_224.augreg") == "embeddings_timm_vit_base_patch16_224_augreg"
    assert check_backbones(["efficientnet_lite0", "dinov2_vits14", "parquet"]) == [
        "efficientnet_lite0", "dinov2_vits14", "parquet"]
    with one_line("would both be the family embeddings_dinov2_vits14"):
        check_backbones(["dinov2_vits14", "dinov2_vits14"])
    with one_line("'clip:a/x-y' and 'clip:b/x_y' would both be the family embeddings_clip_x_y"):
        check_backbones(["clip:a/x-y", "clip:b/x_y"])
    with one_line("unknown backbone 'dinov2_vitg14'"):
        check_backbones(["dinov2_vitg14"])
    with one_line("embeddings.backbones is empty"):
        check_backbones([])


def test_the_stage_exits_with_one_line_for_a_wrong_file_or_an_untracked_path(pristine_root, tmp_path, monkeypatch):
    work = project_reading(pristine_root, tmp_path)
    run_stage(work, "load")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["embeddings"]["backbones"] = ["dinov2_vitb14"]
    torch.save(dinov2_hub_state("dinov2_vits14"), work / params["embeddings"]["weights"]["dinov2_vitb14"])
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    failed = run_stage(work, "embeddings", check=False)
    assert failed.returncode == 1 and failed.stderr.splitlines()[-1].startswith(
        "embeddings: error: backbone dinov2_vitb14: weights/dinov2_vitb14_pretrain.pth does not fit: 175 tensors "
        "of the wrong shape, e.g. cls_token is (1, 1, 384), expected (1, 1, 768)")
    params["embeddings"]["weights"]["dinov2_vitb14"] = str(tmp_path / "elsewhere.pth")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    failed = run_stage(work, "embeddings", check=False)
    assert failed.returncode == 1 and failed.stderr.splitlines()[-1].startswith(
        f"embeddings: error: weights of dinov2_vitb14 at {tmp_path / 'elsewhere.pth'} are outside weights/ "
        f"({tmp_path / 'elsewhere.pth'}), which dvc.yaml tracks")
    # `..` is collapsed before the check, and the hint names the file it leads to
    params["embeddings"]["weights"]["dinov2_vitb14"] = "weights/../../x.pth"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    failed = run_stage(work, "embeddings", check=False)
    assert failed.returncode == 1 and failed.stderr.splitlines()[-1] == (
        f"embeddings: error: weights of dinov2_vitb14 at weights/../../x.pth are outside weights/ "
        f"({tmp_path.parent / 'x.pth'}), which dvc.yaml tracks: link or copy them there "
        f"(ln -s {tmp_path.parent / 'x.pth'} weights/)")
    params["embeddings"].update(backbones=["parquet"], import_file=str(tmp_path / "computed_elsewhere.parquet"))
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    failed = run_stage(work, "embeddings", check=False)
    assert failed.returncode == 1 and failed.stderr.splitlines()[-1].startswith(
        f"embeddings: error: embeddings.import_file {tmp_path / 'computed_elsewhere.parquet'} is outside weights/")
    # a link inside weights/ to a download elsewhere is tracked, as the README recommends
    os.symlink(tmp_path / "computed_elsewhere.parquet", work / "weights" / "linked.parquet")
    monkeypatch.chdir(work)
    check_tracked(dict(params["embeddings"], import_file="weights/linked.parquet"))


EMBED = dict(CFG, runtime="onnxruntime", input_size=112, import_file=None, decode_workers=1, batch_size=8,
             crops_top_k=1, crop_min_conf=0.3, crop_margin=0.15, chunk_images=8, flip=False, int8_min_cosine=0.99,
             int8_fallback=False)


def int8_run(root, dinov2_file, cache, report, images, **settings):
    """compute_embeddings of `images` with DINOv2-S from `dinov2_file` (at 112 px), in int8 unless `settings` say
    otherwise."""
    cfg = {**EMBED, "weights": {"dinov2_vits14": str(dinov2_file)}, "precision": "int8", **settings}
    _, detections = load_tables(root)
    return compute_embeddings(images, detections, root, cfg,
                              partial(build_backbone, "dinov2_vits14", cfg, cache / "onnx"), cache / "family", report)


def test_int8_runs_after_its_self_check_and_is_cached_apart_from_fp32(pristine_root, dinov2_files, tmp_path):
    images = load_tables(pristine_root)[0].iloc[:40]
    report = QualityReport()
    frame, _ = int8_run(pristine_root, dinov2_files["dinov2_vits14"], tmp_path, report, images)
    check = report.notes["int8 self-check"]
    assert report.notes["runtime"] == "onnxruntime-int8" and check["views"] == 32 and check["threshold"] == 0.99
    assert 0.99 <= check["min_cosine"] <= check["mean_cosine"] < 1
    fp32_report = QualityReport()
    fp32, _ = int8_run(pristine_root, dinov2_files["dinov2_vits14"], tmp_path, fp32_report, images, precision="fp32")
    assert fp32_report.read["images computed"] == 40 and "int8 self-check" not in fp32_report.notes  # its own key
    similarity = cosines(frame, fp32)
    assert similarity.min() >= check["min_cosine"] - 0.01 and not np.array_equal(frame, fp32)
    # a rerun reads its cache and the recorded check; the batch size changes nothing (one view per call)
    again = QualityReport()
    same, _ = int8_run(pristine_root, dinov2_files["dinov2_vits14"], tmp_path, again, images)
    assert again.read["images computed"] == 0 and again.notes["int8 self-check"] == check
    shutil.rmtree(tmp_path / "family")
    batched, _ = int8_run(pristine_root, dinov2_files["dinov2_vits14"], tmp_path, QualityReport(), images,
                          batch_size=3)
    np.testing.assert_array_equal(batched, same)


def test_the_int8_self_check_refuses_weights_with_activation_outliers(pristine_root, tmp_path):
    """Trained ViTs carry a few huge LayerNorm gains; dynamic quantization scales each activation tensor by its
    largest value, so the outlier channel leaves the others a handful of levels. Injected here into every
    block, the int8 graph falls far below fp32: the stage stops in one line, or runs the backbone in fp32."""
    state = dinov2_hub_state("dinov2_vits14")
    for key in (k for k in state if k.endswith(("norm1.weight", "norm2.weight"))):
        state[key][7] = 300.0
    torch.save(state, tmp_path / "outliers.pth")
    images = load_tables(pristine_root)[0].iloc[:16]
    with pytest.raises(BackboneError, match=r"^backbone dinov2_vits14: int8 self-check: min cosine to fp32 0\.\d{4} "
                                            r"\(mean 0\.\d{4}\) over 16 views of this run, below "
                                            r"embeddings.int8_min_cosine 0.99: run it in fp32"):
        int8_run(pristine_root, tmp_path / "outliers.pth", tmp_path, QualityReport(), images)
    report = QualityReport()
    int8_run(pristine_root, tmp_path / "outliers.pth", tmp_path, report, images, int8_fallback=True)
    assert report.notes["runtime"] == "onnxruntime" and report.notes["int8 self-check"]["min_cosine"] < 0.95
    assert report.notes["precision"] == "fp32: the int8 self-check fell below embeddings.int8_min_cosine"
    with one_line("embeddings.precision int8 .* runs ONNX Runtime's int8 graph on the CPU: set embeddings.runtime "
                  "onnxruntime"):
        build_backbone("dinov2_vits14", dict(EMBED, weights={"dinov2_vits14": str(tmp_path / "outliers.pth")},
                                             precision={"dinov2_vits14": "int8"}, runtime="torch"))
