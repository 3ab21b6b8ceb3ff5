"""Fixtures: a tiny dataset written by the sample generator in the real formats, copied per test to mutate."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sample.generate import generate

TINY = dict(seed=11, train_locations=4, test_locations=2, images=150, width=160, height=96, landsat_size=24,
            landsat_dates=[3, 5], bbox_format="normalized", bad_clock_locations=0, sites_without_landsat=0)
TRAIN_JSON = "metadata/iwildcam2020_train_annotations.json"
TEST_JSON = "metadata/iwildcam2020_test_information.json"
DETECTOR_JSON = "metadata/iwildcam2020_megadetector_results.json"


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
