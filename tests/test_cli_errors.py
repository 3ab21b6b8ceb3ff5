"""Errors meant for a person: a stage stops with one line naming the file and the record (exit status 1),
the traceback only on request; a dataset no model can learn from is refused at the first stage that can
tell, with a sentence saying what is missing."""
import json

import pytest
import yaml

from tests.helpers import DETECTOR_JSON, REPO, TRAIN_JSON, project_reading, read, run_stage, write


@pytest.fixture
def work(root, tmp_path):
    (tmp_path / "project").mkdir()
    return project_reading(root, tmp_path / "project")


def stage(work, name, **env):
    return run_stage(work, name, check=False, **env)


def test_input_error_is_one_line_naming_file_and_record(work, root):
    doc = read(root, DETECTOR_JSON)
    doc["images"][2]["detections"] = [{"category": "1", "conf": "high", "bbox": [0.1, 0.1, 0.2, 0.2]}]
    write(root, DETECTOR_JSON, doc)
    done = stage(work, "load")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("load: error: ") and "iwildcam2020_megadetector_results.json" in last
    assert doc["images"][2]["id"] in last and "conf" in last
    shown = stage(work, "load", CAMTRAP_TRACEBACK="1")
    assert shown.returncode == 1 and "Traceback" in shown.stderr and "DataError" in shown.stderr


def test_missing_metadata_file_is_one_line(work, root):
    (root / TRAIN_JSON).unlink()
    done = stage(work, "load")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"load: error: {root / TRAIN_JSON}: file not found"


def test_no_labelled_train_image_is_refused_at_load_with_what_is_missing(work, root):
    doc = read(root, TRAIN_JSON)
    for annotation in doc["annotations"]:
        annotation["category_id"] = 4242  # a category the file does not list
    write(root, TRAIN_JSON, doc)
    done = stage(work, "load")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no train image has a usable label" in done.stderr and "a model needs labelled train images" in done.stderr
    quality = json.loads((work / "reports/quality/load.json").read_text())  # the reasons, for the person
    assert quality["skipped"]["annotation with unknown category id"] == len(doc["annotations"])
    assert not (work / "artifacts/tables/labels.parquet").exists()


@pytest.mark.parametrize("name", ["labelled", "common", "evaluation"])
def test_a_name_that_is_not_a_dvc_stage_is_one_line_listing_the_stages(work, name):
    done = stage(work, name)
    stages = list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"pipeline.py: {name!r} is not a stage of dvc.yaml; the stages are {', '.join(stages)}"]


def test_stages_holds_one_module_per_dvc_stage_and_nothing_else():
    modules = {p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
    assert modules == set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
