"""The inventory stands in for DVC's hashing of the data folders: its table must change whenever a file
the stages read changes, and stay the same bytes while none does."""
import os

import pandas as pd
import yaml

from data.io import file_inventory
from infra.artifacts import DATA_FOLDERS
from infra.atomic import write_parquet
from tests.helpers import DETECTOR_JSON, REPO, TRAIN_JSON


def table_bytes(root, path) -> bytes:
    write_parquet(file_inventory(root, DATA_FOLDERS), path)
    return path.read_bytes()


def test_inventory_lists_every_data_file_sorted_and_is_stable(root, tmp_path):
    files = file_inventory(root, DATA_FOLDERS)
    on_disk = sorted(str(p.relative_to(root)) for f in DATA_FOLDERS for p in (root / f).rglob("*") if p.is_file())
    assert files["path"].tolist() == on_disk and len(on_disk) > 100
    assert {TRAIN_JSON, DETECTOR_JSON} <= set(files["path"])  # a metadata edit reruns the stages reading it
    (root / "metadata.csv").write_text("split,filename\n")  # the WILDS layout's metadata: a file, not a folder
    assert "metadata.csv" in set(file_inventory(root, DATA_FOLDERS)["path"])
    (root / "metadata.csv").unlink()
    assert (files["size"] > 0).all() and files["mtime_ns"].dtype == "int64"
    assert table_bytes(root, tmp_path / "a.parquet") == table_bytes(root, tmp_path / "b.parquet")


def test_inventory_changes_with_any_edit_a_stage_would_see(root, tmp_path):
    before = table_bytes(root, tmp_path / "t.parquet")
    jpeg = sorted((root / "train").glob("*.jpg"))[0]
    stat = jpeg.stat()
    jpeg.write_bytes(jpeg.read_bytes() + b"maker trailer")  # resized
    assert table_bytes(root, tmp_path / "t.parquet") != before
    jpeg.write_bytes(jpeg.read_bytes()[:-13])  # same size as before, rewritten later
    os.utime(jpeg, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = table_bytes(root, tmp_path / "t.parquet")
    assert changed != before
    (root / "test" / "sub").mkdir()
    (root / "test" / "sub" / "new.jpg").write_bytes(jpeg.read_bytes())  # a MegaDetector-style subfolder
    os.symlink(jpeg, root / "test" / "link.jpg")  # links are not followed
    files = file_inventory(root, DATA_FOLDERS)
    assert "test/sub/new.jpg" in set(files["path"]) and "test/link.jpg" not in set(files["path"])


def test_no_stage_depends_on_a_data_folder_and_every_reader_of_one_depends_on_the_inventory():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    # stages that open data files (predict: a Camtrap DP package's tables, for the export)
    readers = {"load", "image_stats", "embeddings", "landsat_summary", "predict"}
    for name, stage in stages.items():
        deps = [str(d) for d in stage.get("deps", [])]
        assert not any(d.startswith("${data.root}/") and d.split("/")[1] in DATA_FOLDERS for d in deps), name
        assert ("artifacts/tables/files.parquet" in deps) == (name in readers), name
    assert stages["inventory"]["always_changed"] is True
    assert pd.Series(stages["inventory"]["outs"]).tolist() == ["artifacts/tables/files.parquet"]
