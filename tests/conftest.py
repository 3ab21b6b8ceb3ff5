"""Fixtures: a tiny dataset written by the sample generator in the real formats, copied per test to mutate."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from data import QualityReport, load_detections, load_metadata
from sample.generate import generate

TINY = dict(seed=11, train_locations=4, test_locations=2, images=150, width=160, height=96, landsat_size=24,
            landsat_dates=[3, 5], bbox_format="normalized", bad_clock_locations=0, sites_without_landsat=0)
TRAIN_JSON = "metadata/iwildcam2020_train_annotations.json"
TEST_JSON = "metadata/iwildcam2020_test_information.json"
DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"
REPO = Path(__file__).resolve().parents[1]
CODE = ["pipeline.py", "dvc.yaml", "params.yaml", "data", "features", "infra", "models", "sample", "stages", "weights"]


@pytest.fixture(scope="session")
def pristine_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(root, TINY)
    return root


@pytest.fixture
def root(pristine_root, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    copy = tmp_path / "data"
    shutil.copytree(pristine_root, copy)
    return copy


def read(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text())


def write(root: Path, rel: str, doc: dict) -> None:
    (root / rel).write_text(json.dumps(doc))


def copy_project(dest: Path) -> None:
    """The project's code and params into `dest`, to run stages there without touching the repository (of
    weights/ only its README: what a user downloaded there stays out of the tests)."""
    for name in CODE:
        src = REPO / name
        if name == "weights":
            (dest / name).mkdir()
            shutil.copy(src / "README.md", dest / name)
        else:
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)


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
