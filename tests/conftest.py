"""pytest's fixtures and hooks for the test modules: a tiny dataset written by the sample generator in the real
formats (copied per test to mutate), and the modules' order. Helpers to import are in tests/helpers.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY  # first: it gives OMP_NUM_THREADS this worker's cores before torch or LightGBM load
from sample.generate import generate  # noqa: I001

# The modules that take longest, longest first (pytest --durations on 2 cores). `make test` hands whole modules
# to two processes in this order (pytest-xdist, --dist loadfile --no-loadscope-reorder): the long ones start
# first and the short ones fill in, so the two finish close together.
LONGEST_FIRST = ("test_pipeline.py", "test_rehearsal.py", "test_wilds.py", "test_backbones.py", "test_thin_wilds.py",
                 "test_camtrap_dp.py", "test_bad_inputs.py", "test_dask.py", "test_code_deps.py", "test_faults.py",
                 "test_embeddings.py", "test_models.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module's tests keep their order


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
