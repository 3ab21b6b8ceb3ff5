"""Fixtures: a tiny dataset written by the sample generator in the real formats, copied per test to mutate."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data import QualityReport, load_detections, load_metadata
from sample.generate import generate

TINY = dict(seed=11, train_locations=4, test_locations=2, images=150, width=160, height=96, landsat_size=24,
            landsat_dates=[3, 5], bbox_format="normalized", bad_clock_locations=0, sites_without_landsat=0)
TRAIN_JSON = "metadata/iwildcam2020_train_annotations.json"
TEST_JSON = "metadata/iwildcam2020_test_information.json"
DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"
REPO = Path(__file__).resolve().parents[1]
CODE = ["pipeline.py", "dvc.yaml", "params.yaml", "data", "features", "models", "sample", "stages"]


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
    """The project's code and params into `dest`, to run stages there without touching the repository."""
    for name in CODE:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)


def load_tables(root: Path) -> tuple:
    """Images and detections of a dataset, as the load stage reads them."""
    report = QualityReport()
    images, _, _ = load_metadata(root, report, (2000, 2030))
    detections, _ = load_detections(root, images, report)
    return images, detections


def killed_on_call(n: int, real):
    """`real`, except that its n-th call raises KeyboardInterrupt, as a kill in mid-run would."""
    calls = []

    def wrapper(*args):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("killed mid-run")
        return real(*args)
    return wrapper


class Payload:
    """Unpickling this would create a file: proof that code ran."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))
