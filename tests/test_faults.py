"""A stage killed by SIGTERM mid-way: the previous output survives intact, nothing half-written is left,
and the rerun resumes from the finished chunks to the same result as an uninterrupted run."""
import hashlib
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import TINY, copy_project, run_stage

OUTPUT = Path("artifacts/features/embeddings/embeddings_efficientnet_lite0.parquet")
CACHE = Path("artifacts/cache/embeddings/embeddings_efficientnet_lite0")


def set_param(work: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((work / "params.yaml").read_text())
    params[section][key] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def work(tmp_path) -> Path:
    copy_project(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["sample"].update(TINY, images=64, supplemental_photos=16)  # about 10 chunks of 8 to interrupt
    params["embeddings"]["chunk_images"] = 8
    params["execution"]["batch_size"] = 8
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "sample")
    run_stage(tmp_path, "load")
    return tmp_path


def shards(work: Path) -> set[Path]:
    return set((work / CACHE).glob("shard-*.parquet"))


def test_sigterm_mid_embeddings_keeps_old_output_and_rerun_resumes(work):
    run_stage(work, "embeddings")
    before = hashlib.md5((work / OUTPUT).read_bytes()).hexdigest()
    old_shards = shards(work)

    set_param(work, "embeddings", "crop_margin", 0.3)  # new cache keys: everything is recomputed
    proc = subprocess.Popen([sys.executable, "pipeline.py", "embeddings"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(shards(work) - old_shards) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    finished = len(shards(work) - old_shards)
    readable = pd.read_parquet(work / "artifacts/tables/images.parquet")["file_ok"].sum()
    assert 2 <= finished < readable / 8  # stopped mid-way
    assert hashlib.md5((work / OUTPUT).read_bytes()).hexdigest() == before  # old output intact
    leftovers = [p for d in (work / CACHE, (work / OUTPUT).parent) for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []

    resumed = run_stage(work, "embeddings")
    cached = int(re.search(r"embeddings: (\d+) cached, \d+ to compute", resumed.stderr)[1])
    assert cached == finished * 8
    result = pd.read_parquet(work / OUTPUT)

    shutil.rmtree(work / CACHE)
    run_stage(work, "embeddings")
    np.testing.assert_allclose(result.to_numpy(), pd.read_parquet(work / OUTPUT).to_numpy(), rtol=1e-5, atol=1e-5)
