"""Camtrap DP 1.0.2 in and out (data/camtrap_dp.py, sample/camtrap_dp.py): TDWG's own example package, the
sample written as a package, each bad package as one line or a counted skip, and the round trip of the export."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.camtrap_dp import ALONE, DESCRIPTOR, load_camtrap_dp, read_descriptor, read_table, validate_package
from data.quality import DataError, QualityReport
from models.camtrap_export import machine_observations, write_package
from sample.camtrap_dp import write_camtrap_dp
from tests.helpers import REPO, git_project, stages_run

EXAMPLE = Path(__file__).parent / "fixtures" / "camtrap_dp_example"  # tdwg/camtrap-dp 1.0.2 example/
YEARS = (2000, 2030)


@pytest.fixture
def example(tmp_path) -> Path:
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy)
    return copy


@pytest.fixture(scope="module")
def pristine_package(pristine_root, tmp_path_factory) -> Path:
    """The tiny Kaggle-layout sample (conftest's) written as a package beside it."""
    package = tmp_path_factory.mktemp("camtrap") / "package"
    write_camtrap_dp(pristine_root, package, seed=1)
    return package


@pytest.fixture
def package(pristine_package, tmp_path) -> Path:
    copy = tmp_path / "package"
    shutil.copytree(pristine_package, copy)
    return copy


def edit_csv(path: Path, edit) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table).to_csv(path, index=False)


def test_tdwg_s_example_package_loads_with_every_rule_counted(example):
    """Media- and event-level observations, several observations on one media, blank, unknown and unclassified
    events, machine observations and media at URLs, as TDWG's example has them."""
    report = QualityReport()
    images, labels, categories = load_camtrap_dp(example, report, YEARS)
    media = pd.read_csv(example / "media.csv", dtype=str)
    observations = pd.read_csv(example / "observations.csv", dtype=str, keep_default_na=False)
    deployments = sorted(pd.read_csv(example / "deployments.csv", dtype=str)["deploymentID"])
    assert len(images) == len(media) == 423 and images["location"].nunique() == len(deployments) == 4
    assert images.loc["07840dcc", "location"] == deployments.index("00a2c20d")
    # the local wall-clock hour of a timestamp written with +02:00
    assert str(images.loc["07840dcc", "datetime"]) == "2020-05-30 04:57:37"
    # an event's media (its window 02:57:37Z-02:57:44Z) share its id as their sequence
    assert (images.loc[media.loc[media["timestamp"].between("2020-05-30T04:57:37", "2020-05-30T04:57:44+02:00"),
                                 "mediaID"], "seq_id"] == "4bb69c45").all()
    assert categories.loc[0, "name"] == "empty"
    assert {"Anas platyrhynchos", "human", "vehicle"} <= set(categories["name"])
    machine = (observations["classificationMethod"] == "machine").sum()
    assert report.counts["machine observation (a classifier's output, not a label)"] == machine > 0
    untyped = observations["observationType"].isin(["unknown", "unclassified"]) & \
        (observations["classificationMethod"] != "machine")
    assert report.counts["observationType unknown or unclassified (not a label)"] == untyped.sum() > 0
    assert report.counts["media with observations of several classes (labelled by the highest total count, a "
                         "blank never over an animal)"] > 0
    urls = media["filePath"].str.contains("://").sum()
    assert report.counts["media filePath is a URL (never fetched: the media has no pixels)"] == urls
    assert not images["file_ok"].any()  # the URLs are never fetched; the 10 local files are not in the fixture
    assert images["split"].eq("train").sum() == len(labels) and images.loc[labels.index, "split"].eq("train").all()
    # a media-level observation wins over its event's: 07840dcc is a female mallard at both levels
    name = categories["name"].to_dict()
    assert name[labels.loc["07840dcc", "category_id"]] == "Anas platyrhynchos"


def test_the_sample_package_validates_and_reads_back_as_the_kaggle_sample_s_labels(package):
    validate_package(package)
    report = QualityReport()
    images, labels, categories = load_camtrap_dp(package, report, YEARS)
    assert images["file_ok"].all() and images["width"].notna().all()
    assert (images.loc[labels.index, "split"] == "train").all() and (images["split"] == "test").sum() > 0
    descriptor = json.loads((package / DESCRIPTOR).read_text())
    assert "invented" in descriptor["description"]
    # every test media lies in an event (the unclassified event-level observations), none alone
    assert not images["seq_id"].str.startswith(ALONE).any()


@pytest.mark.parametrize("edit, message", [
    (lambda p: _descriptor(p, lambda d: d["resources"].pop(1)), r"datapackage.json: no resource named 'media'"),
    (lambda p: _descriptor(p, lambda d: d.pop("created")), r"datapackage.json: \(top level\): 'created' is a "
                                                           r"required property \(Camtrap DP 1.0.2 profile\)"),
    (lambda p: (p / DESCRIPTOR).write_text("{"), r"datapackage.json: not JSON"),
    (lambda p: edit_csv(p / "media.csv", lambda t: t.rename(columns={"timestamp": "time"})),
     r"media.csv: field timestamp: incorrect-label: Label \"time\""),
    (lambda p: edit_csv(p / "media.csv", lambda t: t.assign(timestamp=t["timestamp"].str.slice(0, 19))),
     r"media.csv: row 2, field timestamp: type-error"),
    (lambda p: (p / "observations.csv").unlink(), r"observations.csv: file not found"),
])
def test_a_package_that_breaks_the_standard_stops_in_one_line_naming_the_file_row_and_field(package, edit, message):
    edit(package)
    with pytest.raises(DataError, match=message) as caught:
        load_camtrap_dp(package, QualityReport(), YEARS)
    assert "\n" not in str(caught.value)


def _descriptor(package: Path, edit) -> None:
    descriptor = json.loads((package / DESCRIPTOR).read_text())
    edit(descriptor)
    (package / DESCRIPTOR).write_text(json.dumps(descriptor))


def test_rows_that_can_be_dropped_are_counted_skips(package):
    """A media of a deployment the table lacks, an observation of a media the table lacks, an animal without a
    scientificName, a media file absent: counted, the rest loads."""
    media = pd.read_csv(package / "media.csv", dtype=str, keep_default_na=False)
    observations = pd.read_csv(package / "observations.csv", dtype=str, keep_default_na=False)
    stray, gone = media["mediaID"].iloc[0], media["mediaID"].iloc[1]
    animal = observations.index[observations["observationType"] == "animal"][5]
    edit_csv(package / "media.csv", lambda t: t.assign(deploymentID=t["deploymentID"].mask(t["mediaID"] == stray,
                                                                                           "nowhere")))
    edit_csv(package / "observations.csv", lambda t: t.assign(
        mediaID=t["mediaID"].mask(t["mediaID"] == gone, "absent-media"),
        scientificName=t["scientificName"].mask(t.index == animal, "")))
    (package / media.loc[media["mediaID"].iloc[2] == media["mediaID"], "filePath"].iloc[0]).unlink()
    report = QualityReport()
    images, labels, _ = load_camtrap_dp(package, report, YEARS)
    assert report.counts["media's deploymentID not in the deployments table (media skipped)"] == 1
    assert stray not in images.index
    # the edited one, and the skipped media's own
    assert report.counts["observation's mediaID not in the media table (observation skipped)"] == 2
    assert report.counts["animal observation without scientificName (not a label)"] == 1
    assert report.counts["image file missing (image not read)"] == 1 and not images.loc[media["mediaID"].iloc[2],
                                                                                          "file_ok"]
    assert gone not in labels.index and len(images) == len(media) - 1


def test_the_export_validates_and_its_machine_observations_never_become_labels(package, tmp_path):
    """Round trip: the package with a machine observation per test media and per event, written, validated
    (profile, schemas, foreign keys) and read again: the same labels, the machine rows counted as not labels."""
    report = QualityReport()
    images, labels, categories = load_camtrap_dp(package, report, YEARS)
    descriptor = read_descriptor(package)
    tables = {r["name"]: read_table(package, r) for r in descriptor["resources"]}
    test = images[images["split"] == "test"]
    media = tables["media"].set_index("mediaID", drop=False).loc[test.index]
    rng = np.random.default_rng(0)
    names = categories["name"].to_numpy()[rng.integers(0, len(categories), len(test))]
    boxes = pd.DataFrame({"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}, index=test.index)
    machine = machine_observations(media, test["seq_id"], names, rng.uniform(0.2, 1, len(test)), boxes, "model (test)")
    assert (machine["observationLevel"] == "media").sum() == len(test)
    assert (machine["observationLevel"] == "event").sum() == test["seq_id"].nunique()
    assert ((machine["observationType"] != "animal") == (machine["scientificName"] == "")).all()
    assert machine.loc[machine["observationType"] != "animal", "bboxX"].isna().all()
    out = tmp_path / "out"
    shutil.copytree(package / "media", out / "media")
    write_package(out, descriptor, dict(tables, observations=pd.concat([tables["observations"], machine])))
    validate_package(out)
    again = QualityReport()
    _, relabelled, recategorised = load_camtrap_dp(out, again, YEARS)
    assert again.counts["machine observation (a classifier's output, not a label)"] == len(machine)
    pd.testing.assert_series_equal(recategorised["name"].loc[relabelled["category_id"]].reset_index(drop=True),
                                   categories["name"].loc[labels["category_id"]].reset_index(drop=True))


@pytest.fixture(scope="module")
def camtrap_run(tmp_path_factory):
    """`make repro-camtrap-dp`'s command, in a git repository of the project, on the sample's package at the
    tests' tiny size (3 trials: how long tuning searches, not what runs)."""
    work = git_project(tmp_path_factory.mktemp("camtrap_repo"))
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile[makefile.index("repro-camtrap-dp:"):].split("\n\n")[0]
    settings = [arg.strip("'") for arg in recipe.replace("\\\n", " ").split() if arg.startswith(("data.", "'data."))]
    ran = stages_run(work, ["dvc", "exp", "run", *[a for s in settings for a in ("-S", s)],
                            "-S", "train.tune.n_trials=3"])
    return work, ran, settings


def test_the_one_command_trains_evaluates_and_writes_back_a_valid_package(camtrap_run):
    work, ran, settings = camtrap_run
    assert settings == ["data.layout=camtrap_dp", "data.root=sample_data/camtrap_dp", "data.metadata=datapackage.json",
                        "data.supplemental=[]"]
    assert {"load", "train", "evaluate", "predict"} <= ran
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert metrics["scheme"] == "location" and 0 <= metrics["ece"] <= 1 and metrics["calibration"] in ("none",
                                                                                                       "temperature")
    load = json.loads((work / "reports/quality/load.json").read_text())
    assert "no iWildCam Landsat tree" in load["notes"]["landsat off"]
    out = work / "reports/camtrap_dp"
    shutil.copytree(work / "sample_data/camtrap_dp/media", out / "media")  # the package names its media files
    validate_package(out)
    observations = pd.read_csv(out / "observations.csv", dtype=str, keep_default_na=False)
    machine = observations[observations["classificationMethod"] == "machine"]
    predictions = pd.read_csv(work / "reports/predictions.csv", dtype={"Id": str})
    assert sorted(machine.loc[machine["observationLevel"] == "media", "mediaID"]) == sorted(predictions["Id"])
    served = machine.set_index("mediaID")["classificationProbability"].astype(float)
    assert np.allclose(served.loc[predictions["Id"]].to_numpy(), predictions["probability"], atol=1e-4)
    assert predictions["review"].equals(predictions["probability"] < 0.5)
