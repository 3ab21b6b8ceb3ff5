"""Keys that decide reuse come from the imports: every DVC stage lists exactly the project modules it runs,
and an edit to any module a cached family imports, however indirectly, recomputes that family."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.code_deps import code_files
from tests.helpers import REPO, copy_project, project_reading, run_stage

STAGE_MODULES = sorted(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])  # stages/<stage>.py each


def test_code_files_follow_imports_through_package_reexports():
    files = code_files(REPO / "stages/image_stats.py")
    # `from data import read_image` is data/images.py, not the whole data package
    assert "data/images.py" in files and "data/quality.py" in files and "features/image_stats.py" in files
    assert "data/landsat.py" not in files and "data/__init__.py" not in files
    embeddings = code_files(REPO / "stages/embeddings.py")  # every network of the registry, via its __init__
    assert {f"features/backbones/{m}.py" for m in ("efficientnet_lite", "dinov2", "clip", "runtime")} <= set(embeddings)


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_dvc_stage_lists_exactly_the_code_it_imports(stage):
    declared = {d for d in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
                if d.endswith(".py")}
    imported = set(code_files(REPO / "pipeline.py", REPO / f"stages/{stage}.py"))
    assert declared == imported, f"dvc.yaml {stage}: missing {imported - declared}, extra {declared - imported}"


def test_code_digest_changes_with_a_module_imported_two_levels_down(tmp_path):
    copy_project(tmp_path)

    def digest() -> str:
        return subprocess.run([sys.executable, "-c", "from infra.code_deps import code_digest; "
                               "print(code_digest('features/image_stats.py'))"],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    before = digest()
    assert digest() == before
    quality = tmp_path / "data/quality.py"  # features/image_stats -> data/images -> data/quality
    quality.write_text(quality.read_text() + "\n# an edit\n")
    assert digest() != before


def _stage(work: Path, name: str) -> dict:
    run_stage(work, name)
    report = "embeddings/embeddings_efficientnet_lite0" if name == "embeddings" else name
    return json.loads((work / f"reports/quality/{report}.json").read_text())["read"]


@pytest.mark.parametrize("family, edited, computed", [
    ("image_stats", "data/images.py", "images computed"),
    ("embeddings", "data/images.py", "images computed"),
    ("landsat_summary", "data/landsat.py", "Landsat sites computed"),
])
def test_editing_a_data_module_a_family_reads_recomputes_its_cache(pristine_root, tmp_path, family, edited,
                                                                   computed):
    project_reading(pristine_root, tmp_path)
    _stage(tmp_path, "load")
    first = _stage(tmp_path, family)[computed]
    assert first > 0 and _stage(tmp_path, family).get(computed, 0) == 0  # a rerun reuses the cache
    module = tmp_path / edited
    module.write_text(module.read_text() + "\n# an edit that could change results\n")
    assert _stage(tmp_path, family)[computed] == first


@pytest.mark.parametrize("package", ["data", "infra"])
def test_data_and_infra_import_nothing_above_them(package):
    """data/ reads the raw formats and infra/ is what every stage stands on (hashing, code deps, atomic
    writes, the shard cache): neither imports a project module outside itself."""
    for module in sorted((REPO / package).glob("*.py")):
        outside = {f for f in code_files(module) if not f.startswith(f"{package}/")}
        assert not outside, f"{module.relative_to(REPO)} imports {sorted(outside)}"


def test_a_stage_is_handed_only_the_params_dvc_yaml_declares_for_it():
    """Like code: a stage reading a key its dvc.yaml entry does not list fails (a change to that key would
    not rerun it), naming the stage and the key; the execution section reaches every stage."""
    from infra.params import stage_params
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["predict"]["params"]
    seen = stage_params(params, declared, "predict")
    assert seen["train"]["rows"] == params["train"]["rows"] and seen["execution"] == params["execution"]
    assert set(seen) == {"data", "train", "predictions", "execution"} and set(seen["train"]) == {"rows"}
    with pytest.raises(KeyError, match="stage predict reads params key train.seed, which dvc.yaml does not "
                                       "declare for it"):
        seen["train"]["seed"]
    with pytest.raises(KeyError, match="params key split, which"):
        seen["split"]
    nested = stage_params(params, ["train"], "train")
    assert nested["train"]["tune"]["n_trials"] == params["train"]["tune"]["n_trials"]
    with pytest.raises(KeyError, match="params key train.tune.sampler,"):
        nested["train"]["tune"]["sampler"]


def test_no_stage_declares_the_execution_section():
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        assert not any(p.split(".")[0] == "execution" for p in stage.get("params", [])), name
