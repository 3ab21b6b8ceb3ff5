"""Embeddings: the packaged weights really classify ImageNet objects, views are cut right, and the cache
resumes interrupted runs and recomputes only new images."""
import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
from sklearn.decomposition import PCA
import torch
from torch import nn

import features.embeddings as embeddings_module
from data import DataError, QualityReport
from features.embeddings import compute_embeddings, embedding_table, embeddings, spread_order
from features.views import crop_boxes, decode_reduction, image_views, square_crop
from features.backbones import Backbone, BackboneError, build_backbone, efficientnet_lite
from features.backbones.runtime import resolve_device
from models.reduce import EmbeddingPCA, FeatureFile
from tests.helpers import cosine, killed_on_call, load_tables, sample_views, tiny_backbone

LITE_CFG = dict(weights={}, device="cpu", runtime="torch", input_size=224, precision="fp32")
CFG = dict(LITE_CFG, import_file=None, threads=2, decode_workers=2, batch_size=8, crops_top_k=2,
           crop_min_conf=0.3, crop_margin=0.15, chunk_images=16, flip=False)
TABBY, TIGER_CAT, EGYPTIAN_CAT, ESPRESSO, CUP, COFFEE_MUG = 281, 282, 285, 967, 968, 504


@pytest.fixture(scope="module")
def lite() -> Backbone:
    return build_backbone("efficientnet_lite0", LITE_CFG)


def top5(network: nn.Module, size: int, rgb: np.ndarray) -> list[int]:
    view = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy((view.astype(np.float32) - 127) / 128).permute(2, 0, 1)[None]
    with torch.inference_mode():
        logits = network(x)
    return logits[0].topk(5).indices.tolist()


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_packaged_weights_load_strictly_and_recognise_imagenet_objects(name, tmp_path):
    network, size = efficientnet_lite.load_pretrained(name), efficientnet_lite.VARIANTS[name].input_size
    cat = top5(network, size, skimage.data.chelsea())  # Chelsea, a tabby cat
    assert cat[0] in (TABBY, TIGER_CAT, EGYPTIAN_CAT) and {TABBY, TIGER_CAT, EGYPTIAN_CAT} <= set(cat)
    coffee = top5(network, size, skimage.data.coffee())  # an espresso in a cup
    assert coffee[0] == ESPRESSO and {CUP, COFFEE_MUG} & set(coffee)
    backbone = build_backbone(name, LITE_CFG)
    assert backbone.dim == 1280 and backbone.input_size == size and backbone.model_id.startswith(f"{name}@")

    state = torch.load(efficientnet_lite.bundled_weights_path(name), map_location="cpu", weights_only=True)
    state.pop("_blocks.7._bn1.running_var")
    torch.save(state, tmp_path / "lite.pth")
    with pytest.raises(BackboneError, match=rf"backbone {name}: .*lite.pth does not fit: 1 missing keys "
                                            r"\(_blocks.7._bn1.running_var\)"):
        build_backbone(name, dict(LITE_CFG, weights={name: str(tmp_path / "lite.pth")}))


def test_embedding_is_the_same_whatever_the_batch_size(lite):
    rng = np.random.default_rng(0)
    views = np.stack([cv2.resize(skimage.data.chelsea(), (224, 224)), cv2.resize(skimage.data.coffee(), (224, 224))]
                     + [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(5)])
    one, three, all_ = (lite.embed(views, b) for b in (1, 3, 32))
    assert one.shape == (7, 1280) and one.dtype == np.float32
    np.testing.assert_allclose(three, one, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(all_, one, rtol=1e-4, atol=1e-4)
    assert not np.allclose(one[0], one[1], atol=1e-2)  # different images, different vectors


def test_square_crop_pads_a_box_at_the_image_border():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:20, :20] = 255  # an animal in the top-left corner
    crop = square_crop(image, (0.0, 0.0, 0.1, 0.2), margin=0.5, size=40)  # 20 px box, 10 px margin
    assert crop.shape == (40, 40, 3)
    assert (crop[:10] == 127).all() and (crop[:, :10] == 127).all()  # padding outside the frame
    assert (crop[10:30, 10:30] == 255).all()  # the box itself, centred
    assert (crop[30:, 30:] == 0).all()  # the margin inside the frame keeps the image
    wide = square_crop(image, (0.5, 0.25, 0.25, 0.1), margin=0.0, size=32)  # 50 x 10 px: side 50
    assert wide.shape == (32, 32, 3)


def test_decode_reduction_keeps_frame_and_crops_above_input_size():
    assert decode_reduction(1920, 1080, [], 0.15, 224) == 4
    assert decode_reduction(1920, 1080, [(0.1, 0.1, 0.5, 0.5)], 0.15, 224) == 4
    assert decode_reduction(1920, 1080, [(0.1, 0.1, 0.05, 0.05)], 0.15, 224) == 1  # a small, far animal
    assert decode_reduction(640, 360, [], 0.15, 224) == 1


def test_crop_boxes_keep_the_top_k_above_min_conf():
    detections = pd.DataFrame({"image_id": ["a", "a", "a", "b", "c"], "conf": [0.5, 0.9, 0.7, 0.2, 0.3],
                               "x": [0.1, 0.2, 0.3, 0.4, 0.5], "y": 0.0, "w": 0.1, "h": 0.1})
    boxes = crop_boxes(detections, top_k=2, min_conf=0.3)
    assert [b[0] for b in boxes["a"]] == pytest.approx([0.2, 0.3])
    assert "b" not in boxes and len(boxes["c"]) == 1


def test_views_of_a_real_sample_image(root):
    images, detections = load_tables(root)
    boxes = crop_boxes(detections, 2, 0.3)
    image_id = boxes.index[0]
    item = {"path": str(root / "train" / images.loc[image_id, "file_name"]), "width": 160, "height": 96,
            "boxes": boxes[image_id]}
    views = image_views(item, 64, 0.15)
    assert views.error is None and views.frame.shape == (64, 64, 3) and views.crops.shape[0] == len(boxes[image_id])
    unsized = image_views(dict(item, width=np.nan, height=np.nan), 64, 0.15)  # the JPEG header gives the size
    np.testing.assert_array_equal(unsized.frame, views.frame)
    np.testing.assert_array_equal(unsized.crops, views.crops)


def test_bad_images_get_nan_and_a_counted_reason(root, tmp_path, lite):
    images, detections = load_tables(root)
    victims = images.index[:2]
    truncated = root / "train" / images.loc[victims[0], "file_name"]
    truncated.write_bytes(truncated.read_bytes()[:300])
    (root / "train" / images.loc[victims[1], "file_name"]).unlink()
    images, detections = load_tables(root)
    images = images.iloc[:20]
    report = QualityReport()
    frame, crop = compute_embeddings(images, detections, root, CFG, lambda: lite, tmp_path / "cache", report)
    assert np.isnan(frame[:2]).all() and not np.isnan(frame[2:]).any()
    assert report.counts["image not readable: truncated JPEG (the image data ends early)"] == 1
    assert report.counts["image not readable: no usable file at load (missing, empty, escaping the folder or an "
                   "unreadable header: see load report)"] == 1
    has_crop = images.index.isin(crop_boxes(detections, 2, 0.3).index)
    assert not np.isnan(crop[2:][has_crop[2:]]).any() and np.isnan(crop[~has_crop]).all()


def test_interrupted_run_resumes_and_new_images_compute_only_themselves(root, tmp_path, monkeypatch):
    images, detections = load_tables(root)
    backbone, cache = tiny_backbone, tmp_path / "cache"
    clean_frame, clean_crop = compute_embeddings(images, detections, root, CFG, backbone, tmp_path / "clean",
                                                 QualityReport())
    real = embeddings_module._embed_group
    monkeypatch.setattr(embeddings_module, "_embed_group", killed_on_call(6, real))  # after five groups
    with pytest.raises(KeyboardInterrupt):
        compute_embeddings(images, detections, root, CFG, backbone, cache, QualityReport())
    shards = sorted(cache.glob("shard-*.parquet"))
    assert len(shards) == 2 and not list(cache.glob(".*tmp"))  # two finished chunks of 16, nothing partial
    monkeypatch.setattr(embeddings_module, "_embed_group", real)

    report = QualityReport()
    frame, crop = compute_embeddings(images, detections, root, CFG, backbone, cache, report)
    assert report.read["images from cache"] == 32 and report.read["images computed"] == len(images) - 32
    np.testing.assert_allclose(frame, clean_frame, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(crop, clean_crop, rtol=1e-5, atol=1e-6)

    report = QualityReport()
    compute_embeddings(images.iloc[:-2], detections, root, CFG, backbone, tmp_path / "grow", report)
    report = QualityReport()
    compute_embeddings(images, detections, root, CFG, backbone, tmp_path / "grow", report)
    assert report.read["images computed"] == 2 and report.read["images from cache"] == len(images) - 2


def test_changed_image_or_view_params_recompute(root, tmp_path):
    images, detections = load_tables(root)
    images, backbone = images.iloc[:10], tiny_backbone
    compute_embeddings(images, detections, root, CFG, backbone, tmp_path / "cache", QualityReport())
    path = root / "train" / images["file_name"].iloc[0]
    path.write_bytes(path.read_bytes() + b"\x00")  # same picture, new file identity
    report = QualityReport()
    compute_embeddings(images, detections, root, dict(CFG), backbone, tmp_path / "cache", report)
    assert report.read["images computed"] == 1
    report = QualityReport()
    compute_embeddings(images, detections, root, dict(CFG, crop_margin=0.3), backbone, tmp_path / "cache", report)
    assert report.read["images computed"] == len(images)


def test_sequence_crop_embedding_is_the_mean_over_the_sequence():
    images = pd.DataFrame({"seq_id": ["s", "s", "s", "t"]}, index=["a", "b", "c", "d"])
    frame = np.arange(8, dtype=np.float32).reshape(4, 2)
    crop = np.array([[1, 2], [np.nan, np.nan], [3, 6], [np.nan, np.nan]], np.float32)
    table = embedding_table(images, frame, crop)
    assert list(table.columns) == ["frame_emb_0", "frame_emb_1", "crop_emb_0", "crop_emb_1",
                                   "seq_crop_emb_0", "seq_crop_emb_1"]
    assert table.loc["b", ["seq_crop_emb_0", "seq_crop_emb_1"]].tolist() == [2, 4]
    assert table.loc["d"].iloc[4:].isna().all()


def test_imported_embeddings_are_validated(root, tmp_path):
    images, detections = load_tables(root)
    exported = embedding_table(images, *compute_embeddings(images, detections, root, CFG, tiny_backbone,
                                                           tmp_path / "cache", QualityReport()))
    path = tmp_path / "pulled.parquet"
    exported.iloc[:-3].to_parquet(path)
    report = QualityReport()
    imported = embeddings(images, detections, root, "parquet", dict(CFG, import_file=str(path)),
                          tmp_path / "unused", report)
    pd.testing.assert_frame_equal(imported.iloc[:-3], exported.iloc[:-3])
    assert imported.iloc[-3:].isna().all().all()
    assert report.counts["image absent from the imported embeddings file"] == 3

    cfg = dict(CFG, import_file=str(path))
    exported.rename(index={exported.index[0]: "no-such-image"}).to_parquet(path)
    with pytest.raises(DataError, match="1 image ids not in the metadata"):
        embeddings(images, detections, root, "parquet", cfg, tmp_path, QualityReport())
    pd.concat([exported, exported.iloc[:1]]).to_parquet(path)
    with pytest.raises(DataError, match="duplicate image ids"):
        embeddings(images, detections, root, "parquet", cfg, tmp_path, QualityReport())
    exported.drop(columns=["crop_emb_3"]).to_parquet(path)
    with pytest.raises(DataError, match="3 crop_emb columns but 4 frame_emb"):
        embeddings(images, detections, root, "parquet", cfg, tmp_path, QualityReport())
    exported.drop(columns=["frame_emb_1"]).to_parquet(path)
    with pytest.raises(DataError, match="not numbered 0..d-1"):
        embeddings(images, detections, root, "parquet", cfg, tmp_path, QualityReport())


def test_backbone_and_device_choices_fail_clearly(tmp_path):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BackboneError, match="cpu, cuda or auto"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackboneError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(BackboneError, match="needs a local state dict: set embeddings.weights.timm:resnet18"):
        build_backbone("timm:resnet18", LITE_CFG)
    weights = tmp_path / "resnet18.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(BackboneError, match="needs the timm package"):
            build_backbone("timm:resnet18", dict(LITE_CFG, weights={"timm:resnet18": str(weights)}))
    with pytest.raises(BackboneError, match="unknown backbone 'resnet' in embeddings.backbones"):
        build_backbone("resnet", LITE_CFG)


def test_pca_is_fitted_per_block_on_the_training_rows_where_the_view_exists_and_reloads_without_pickle(tmp_path):
    rng = np.random.default_rng(1)
    columns = [f"embeddings__frame_emb_{k}" for k in range(6)] + [f"embeddings__crop_emb_{k}" for k in range(6)]
    features = pd.DataFrame(rng.normal(size=(40, 12)).astype(np.float32), columns=columns,
                            index=pd.Index([f"img{i}" for i in range(40)], name="image_id"))
    features.insert(0, "detector_stats__n", np.arange(40.0))
    features.iloc[:5, 7:13] = np.nan  # no crop in these images
    features.to_parquet(tmp_path / "table.parquet")
    table, train = FeatureFile(tmp_path / "table.parquet"), features.index[::-1][:30]  # another row order
    pca, reduced = EmbeddingPCA.fit_transform_file(table, train, n_components=3, seed=0)
    assert list(reduced.columns) == (["detector_stats__n"] + [f"embeddings__frame_pc_{j}" for j in range(3)]
                                     + [f"embeddings__crop_pc_{j}" for j in range(3)])
    everything = pca.transform_file(table, features.index)
    pd.testing.assert_frame_equal(everything.loc[train], reduced)
    for view in ("frame", "crop"):  # scikit-learn's PCA on the training rows that have the view
        block = features.filter(like=f"__{view}_emb_")
        fitted = block.loc[train].dropna()
        expected = PCA(3, svd_solver="covariance_eigh", random_state=0).fit(fitted).transform(block.fillna(0))
        expected[block.isna().any(axis=1).to_numpy()] = np.nan
        np.testing.assert_allclose(everything.filter(like=f"__{view}_pc_"), expected, atol=1e-4)
    assert everything.iloc[:5, 4:].isna().all().all() and everything.iloc[5:].notna().all().all()
    pca.save(tmp_path / "pca.npz")
    pd.testing.assert_frame_equal(EmbeddingPCA.load(tmp_path / "pca.npz").transform_file(table, features.index),
                                  everything)
    with pytest.raises(KeyError, match="1 image ids not in the feature table"):
        table.positions(pd.Index(["img0", "elsewhere"]))
    plain = tmp_path / "plain.parquet"  # no embedding columns: nothing to fit, nothing changed
    features[["detector_stats__n"]].to_parquet(plain)
    assert EmbeddingPCA.fit_transform_file(FeatureFile(plain), train, 3, 0)[1].shape == (30, 1)


def test_onnx_runtime_gives_the_features_of_pytorch(root, tmp_path, lite):
    views = sample_views(root)
    onnx = build_backbone("efficientnet_lite0", dict(LITE_CFG, runtime="onnxruntime", threads=2), tmp_path / "onnx")
    assert onnx.runtime == "onnxruntime" and lite.runtime == "torch" and onnx.model_id == lite.model_id
    ours, reference = onnx.embed(views, 8), lite.embed(views, 8)
    assert len(views) > 20 and cosine(ours, reference).min() >= 0.9999
    np.testing.assert_allclose(ours, reference, atol=1e-3)
    np.testing.assert_array_equal(onnx.embed(views[:5], 2), ours[:5])  # batch size does not matter


def test_exported_network_is_reused_and_a_failed_export_leaves_pytorch(tmp_path, monkeypatch):
    cfg = dict(LITE_CFG, runtime="onnxruntime", threads=1)
    build_backbone("efficientnet_lite0", cfg, tmp_path)
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1 and exported[0].name.startswith("efficientnet_lite0-")
    stamp = exported[0].stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise RuntimeError("the exporter does not support this network")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = build_backbone("efficientnet_lite0", cfg, tmp_path)  # from the file: the exporter is not called
    assert again.runtime == "onnxruntime" and exported[0].stat().st_mtime_ns == stamp
    fallback = build_backbone("efficientnet_lite0", cfg, tmp_path / "elsewhere")
    assert fallback.runtime == "torch" and not list((tmp_path / "elsewhere").glob("*.onnx"))
    assert fallback.runtime_reason == "does not export to ONNX: the exporter does not support this network"


def test_flipped_views_make_the_embedding_mirror_invariant(root, lite):
    views = sample_views(root, 4)
    mirrored = views[:, :, ::-1]
    both = embeddings_module._embed(lite, views, 8, flip=True)
    np.testing.assert_allclose(embeddings_module._embed(lite, mirrored, 8, flip=True), both, rtol=1e-4, atol=1e-4)
    plain = embeddings_module._embed(lite, views, 8, flip=False)
    np.testing.assert_allclose(both, (plain + lite.embed(np.ascontiguousarray(mirrored), 8)) / 2, atol=1e-5)
    assert not np.allclose(plain, both, atol=1e-3)


def test_flip_and_runtime_are_part_of_the_cache_key(root, tmp_path):
    images, detections = load_tables(root)
    images = images.iloc[:10]
    backbone = tiny_backbone
    compute_embeddings(images, detections, root, CFG, backbone, tmp_path / "cache", QualityReport())
    report = QualityReport()
    compute_embeddings(images, detections, root, dict(CFG, flip=True), backbone, tmp_path / "cache", report)
    assert report.read["images computed"] == 10


def test_the_int8_self_check_draws_its_views_across_cameras_and_frame_sizes():
    """A WILDS copy's first rows are one project's 100x75 thumbnails: the check's first views take one image of
    each camera and size in turn, in table order within each."""
    images = pd.DataFrame({"location": [4] * 40 + [7] * 5 + [9] * 5 + [4] * 2,
                           "width": [100] * 40 + [1920] * 10 + [2048] * 2,
                           "height": pd.array([75] * 40 + [1080] * 10 + [pd.NA] * 2, "Int64")},
                          index=[f"img{k}" for k in range(52)])
    order = spread_order(images)
    assert sorted(order) == list(range(52))
    assert list(order[:4]) == [0, 40, 45, 50]  # the first of each (location, width, height), then the second
    assert list(order[4:8]) == [1, 41, 46, 51] and list(order[-3:]) == [37, 38, 39]
    assert set(images.iloc[order[:32]]["location"]) == {4, 7, 9}
