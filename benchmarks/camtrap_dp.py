"""Reading a Camtrap DP package at iWildCam 2020's shape (data/camtrap_dp.py), against reading its tables alone.

    .venv/bin/python benchmarks/camtrap_dp.py [--scale 1.0]

Writes a package of 217,959 + 62,894 media at 441 + 111 deployments in bursts of 3 (the sample's writer's rules:
one human media-level observation per labelled media, one unclassified event-level observation per test burst;
no image files: each is a counted missing file), then times `load_camtrap_dp` (profile, frictionless validation
of each table, events, labels, the images table) and, as the reference in the same run, `pandas.read_csv` of the
three tables; prints both, their ratio, the validation's share and the peak resident memory.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data.camtrap_dp as camtrap_dp  # noqa: E402
from data.quality import QualityReport  # noqa: E402
from models.camtrap_export import write_package  # noqa: E402

TRAIN, TEST, TRAIN_DEPLOYMENTS, TEST_DEPLOYMENTS, BURST = 217_959, 62_894, 441, 111, 3


def stamp(seconds: np.ndarray) -> np.ndarray:
    return pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%S+00:00").to_numpy()


def write(folder: Path, scale: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    train, test = int(TRAIN * scale), int(TEST * scale)
    n = train + test
    deployment = np.r_[rng.integers(0, TRAIN_DEPLOYMENTS, train),
                       TRAIN_DEPLOYMENTS + rng.integers(0, TEST_DEPLOYMENTS, test)]
    burst = np.arange(n) // BURST
    seconds = 1.4e9 + burst * 3600 + np.arange(n) % BURST
    ids = np.char.add("m", np.arange(n).astype(str))
    deployments = pd.DataFrame({"deploymentID": [f"d{k}" for k in range(TRAIN_DEPLOYMENTS + TEST_DEPLOYMENTS)],
                                "latitude": 0.0, "longitude": 0.0, "deploymentStart": stamp(np.array([1.3e9] * 552)),
                                "deploymentEnd": stamp(np.array([1.9e9] * 552))})
    media = pd.DataFrame({"mediaID": ids, "deploymentID": np.char.add("d", deployment.astype(str)),
                          "timestamp": stamp(seconds), "filePath": np.char.add("media/", np.char.add(ids, ".jpg")),
                          "filePublic": "false", "fileMediatype": "image/jpeg"})
    species = np.char.add("Species ", rng.integers(0, 188, n).astype(str))
    events = np.char.add("e", burst.astype(str))
    labelled = np.arange(n) < train
    on_media = pd.DataFrame({"observationID": np.char.add("o", ids[labelled]), "deploymentID": media["deploymentID"][
        labelled], "mediaID": ids[labelled], "eventID": events[labelled], "eventStart": media["timestamp"][labelled],
        "eventEnd": media["timestamp"][labelled], "observationLevel": "media", "observationType": "animal",
        "scientificName": species[labelled], "count": "1", "classificationMethod": "human"})
    first = ~labelled & (np.arange(n) % BURST == 0)
    on_event = pd.DataFrame({"observationID": np.char.add("o", events[first]), "deploymentID": media["deploymentID"][
        first], "mediaID": "", "eventID": events[first], "eventStart": media["timestamp"][first],
        "eventEnd": stamp(seconds[first] + BURST - 1), "observationLevel": "event", "observationType": "unclassified"})
    write_package(folder, {
        "created": "2026-01-01T00:00:00Z", "contributors": [{"title": "benchmark"}],
        "project": {"title": "benchmark", "samplingDesign": "opportunistic", "captureMethod": ["activityDetection"],
                    "individualAnimals": False, "observationLevel": ["media", "event"]},
        "spatial": {"type": "Point", "coordinates": [0, 0]}, "temporal": {"start": "2014-01-01", "end": "2030-01-01"},
        "taxonomic": [{"scientificName": "Species 0"}]},
        {"deployments": deployments, "media": media, "observations": pd.concat([on_media, on_event])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the real media count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write(folder, args.scale)
        started = time.perf_counter()
        tables = [pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False) for name in camtrap_dp.TABLES]
        reference = time.perf_counter() - started
        validating = 0.0
        validate = camtrap_dp.validate_table

        def timed_validate(root, resource_):
            nonlocal validating
            t = time.perf_counter()
            validate(root, resource_)
            validating += time.perf_counter() - t
        camtrap_dp.validate_table = timed_validate
        started = time.perf_counter()
        images, labels, categories = camtrap_dp.load_camtrap_dp(folder, QualityReport(), (2000, 2030))
        loaded = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{len(tables[1]):,} media, {len(tables[2]):,} observations, {len(tables[0])} deployments -> "
          f"{len(images):,} images, {len(labels):,} labels, {len(categories)} classes")
    print(f"pandas.read_csv of the three tables (reference): {reference:.1f} s")
    print(f"load_camtrap_dp: {loaded:.1f} s = {loaded / reference:.1f}x the reference; frictionless validation "
          f"{validating:.1f} s ({validating / loaded:.0%}); peak RSS {peak:.2f} GB")


if __name__ == "__main__":
    main()
