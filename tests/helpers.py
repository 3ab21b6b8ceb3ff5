"""Helpers the test modules import: the tiny dataset's shape and files, running stages and `dvc` in a copy of the
project, camera-written JPEGs, small models. Its fixtures and pytest's hooks live in conftest.py, which no module
imports (pytest would load it twice)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# pytest-xdist's workers run pipelines side by side: each worker, in its own fits and in the stages it runs, takes its
# share of the cores. Oversubscribed, OpenMP's spinning threads (LightGBM, torch) stall one another: two concurrent
# `train` stages of the 1/100 rehearsal took 400 s each on 2 threads and 50 s each on 1, on 2 cores (43 s alone).
CORES = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
            // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["OMP_NUM_THREADS"] = str(CORES)  # read when torch and LightGBM load, just below
SHARED_CORES = {"threads": CORES, "n_jobs": CORES, "decode_workers": CORES}  # params.yaml's execution section

import cv2
import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image
from torch import nn

from data import QualityReport, load_detections, load_metadata
from features.backbones import Backbone
from features.backbones.runtime import UInt8Input
from features.views import crop_boxes, image_views
from models import registry
from models.rerank import Reranker

TINY = dict(seed=11, train_locations=4, test_locations=2, images=150, width=160, height=96, landsat_size=24,
            landsat_dates=[3, 5], bbox_format="normalized", bad_clock_locations=0, sites_without_landsat=0,
            supplemental_photos=40)
TRAIN_JSON = "metadata/iwildcam2020_train_annotations.json"
TEST_JSON = "metadata/iwildcam2020_test_information.json"
DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"
REPO = Path(__file__).resolve().parents[1]
CODE = ["pipeline.py", "dvc.yaml", "params.yaml", "data", "features", "infra", "models", "sample", "stages", "weights"]


def read(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text())


def write(root: Path, rel: str, doc: dict) -> None:
    (root / rel).write_text(json.dumps(doc))


def project_params() -> dict:
    """The project's params.yaml, its execution section on this worker's share of the cores (results do not
    depend on it)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["execution"].update(SHARED_CORES)
    return params


def copy_project(dest: Path) -> None:
    """The project's code and params into `dest`, to run stages there without touching the repository (of
    weights/ only its README: what a user downloaded there stays out of the tests)."""
    for name in CODE:
        src = REPO / name
        if name == "weights":
            (dest / name).mkdir()
            shutil.copy(src / "README.md", dest / name)
        elif name == "params.yaml":
            (dest / name).write_text(yaml.safe_dump(project_params()))
        else:
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)


def git_project(work: Path) -> Path:
    """The project in `work` as a committed git repository with DVC, its embedded sample at the tests' tiny size:
    what a README `dvc exp run` command needs."""
    copy_project(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["sample"].update(TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / ".gitignore", work / ".gitignore")  # outputs and caches stay out of git
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "baseline"]):
        run_command(command, work)
    return work


def project_reading(root: Path, dest: Path) -> Path:
    """The project's code and params in `dest`, its `data.root` pointing at the dataset in `root`."""
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"]["root"] = str(root)
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


def run_stage(work: Path, name: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`python pipeline.py <name>` in `work`, its output captured; `env` adds environment variables."""
    return subprocess.run([sys.executable, "pipeline.py", name], cwd=work, check=check, capture_output=True,
                          text=True, env=dict(os.environ, **env))


def load_tables(root: Path) -> tuple:
    """Images and detections of a dataset, as the load stage reads them."""
    report = QualityReport()
    images, _, _ = load_metadata(root, report, (2000, 2030))
    detections, _ = load_detections(root, images, report)
    return images, detections


def killed_on_call(n: int, real):
    """`real`, except that its n-th call raises KeyboardInterrupt, as a kill in mid-run would."""
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed mid-run")
        return real(*args, **kwargs)
    return wrapper


class Payload:
    """Unpickling this would create a file: proof that code ran."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def camera_jpeg(bgr: np.ndarray, *, trailer: bytes = b"", orientation: int | None = None, progressive: bool = False,
                restart_rows: int = 0) -> bytes:
    """A JPEG as camera-trap firmware writes it: an EXIF block with maker and model (and an orientation tag
    if given), optionally progressive or with restart markers, and `trailer` bytes after the end-of-image
    marker (maker text, padding), which cameras append and every decoder ignores."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    if restart_rows:
        params += [cv2.IMWRITE_JPEG_RST_INTERVAL, restart_rows]
    body = cv2.imencode(".jpg", bgr, params)[1].tobytes()
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "RECONYX", "HC600 HYPERFIRE"
    if orientation is not None:
        exif[0x0112] = orientation
    with_exif = io.BytesIO()
    Image.open(io.BytesIO(body)).save(with_exif, "JPEG", exif=exif.tobytes(), quality="keep")
    return with_exif.getvalue() + trailer


def corrupt_body(data: bytes) -> bytes:
    """The same file with bytes in the middle of its entropy-coded data overwritten, markers left intact
    (as a flaky SD card leaves it): it still has every marker and ends in FF D9."""
    damaged = bytearray(data)
    middle = len(damaged) // 2
    for k in range(middle, middle + 64, 3):
        damaged[k] = 0x5A if damaged[k] != 0x5A else 0x3C
    return bytes(damaged)


def with_header_size(data: bytes, width: int, height: int) -> bytes:
    """The same file with the frame header (SOF0/SOF2) claiming another size: a flipped bit does that."""
    damaged = bytearray(data)
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    damaged[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(damaged)


GIT_IDENTITY = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
                for what, value in (("NAME", "test"), ("EMAIL", "test@localhost"))}


def run_command(cmd, cwd, **env: str):
    """`cmd` in `cwd` with this interpreter's tools first on PATH and a git identity; its output captured; `env`
    adds environment variables."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **GIT_IDENTITY,
               **env)
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


def stages_run(work, command=("dvc", "repro")) -> set[str]:
    """Run `dvc repro` (or `command`) and return the names of the stages it ran, but `inventory`, which runs
    every time."""
    out = run_command(list(command), work).stdout
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")} - {"inventory"}


def tiny_params() -> dict:
    """The project's params on a tiny sample with a short tuning budget: what the module's run starts from."""
    params = project_params()
    params["sample"].update(TINY, train_locations=6, images=300, bad_clock_locations=1)
    params["train"].update(max_rounds=40, cv_folds=2)
    params["train"]["tune"]["n_trials"] = 3
    return params


SPACE = {"learning_rate": {"low": 0.05, "high": 0.3, "log": True}, "num_leaves": {"low": 3, "high": 15, "int": True},
         "max_bin": {"choices": [31, 63]}}
TUNE = {"n_trials": 2, "timeout_s": 60, "pruning": True, "storage": None, "max_rows": None,
        "choice": "fewest_rounds_within_one_se"}
TRAIN = dict(class_weight="balanced", cv_folds=3, max_rounds=30, early_stopping_rounds=5, candidates=2, seed=0,
             fixed={"verbose": -1}, supplemental_weight=1.0)


def reranker(booster_params: dict | None = None, **settings) -> Reranker:
    """The re-ranker with the test's train settings (overridden by `settings`) on one thread."""
    return registry.build("reranker", dict(TRAIN, **settings), booster_params, threads=1)


def toy(n=240, seed=0):
    """Three classes separable by two features, 12 locations."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = pd.DataFrame({"a": y + rng.normal(0, 0.6, n), "b": (y == 2) + rng.normal(0, 0.6, n),
                      "noise": rng.normal(0, 1, n)})
    return x, y, rng.integers(0, 12, n)


def sample_views(root, n: int = 12, size: int = 224) -> np.ndarray:
    """Frame and crop views of real-format sample JPEGs, as the stage cuts them."""
    images, detections = load_tables(root)
    boxes = crop_boxes(detections, 2, 0.3)
    views = []
    for image_id in boxes.index[:n]:
        split, name = images.loc[image_id, ["split", "file_name"]]
        v = image_views({"path": str(root / split / name), "width": np.nan, "height": np.nan,
                         "boxes": boxes[image_id]}, size, 0.15)
        views += [v.frame[None], v.crops]
    return np.concatenate(views)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def tiny_backbone() -> Backbone:
    """A small random CNN standing in for the real one where only the bookkeeping is under test."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    return Backbone("tiny", "0", UInt8Input(network, (127.0,) * 3, (128.0,) * 3), 4, 32, torch.device("cpu"))
