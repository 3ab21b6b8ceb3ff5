"""Full-scale rehearsal: the whole pipeline at iWildCam 2020's shape on this machine, measured.

    make rehearse                                  # = .venv/bin/python benchmarks/rehearse.py
    make rehearse-wilds                            # = ... --layout wilds --report reports/scale_wilds.json
    .venv/bin/python benchmarks/rehearse.py --scale 0.01 --camera-scale 0.05 --report /tmp/scale.json

Writes the rehearsal dataset (sample/rehearsal.py; kept and reused while its settings are unchanged) under
`--out`/data, copies this checkout's files to `--out`/repo, points data.root there and data.supplemental at its
two iNaturalist sources (their estimated real size), imports the generated embeddings (embeddings.backbones:
[parquet]), then runs each DVC stage with `dvc repro --single-item`,
recording its wall time, the peak resident memory of its process tree (DVC's own process excluded) and the
size of what it wrote; then times a no-op `dvc repro`, and the real backbone's inference on a few
thousand of the rehearsal's JPEGs. Everything goes to `--report` (reports/scale.json) and a summary table
is printed. With `--layout wilds` the rehearsal dataset is re-packed as iWildCam2020-WILDS (sample/wilds.py:
the official split sizes and camera counts, the competition's MegaDetector file and the Landsat tree beside
it) under `--out`/wilds, and the pipeline runs the WILDS scheme on it (`--out`/repo_wilds).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from sample.rehearsal import generate_rehearsal  # noqa: E402
from sample.wilds import CAMERAS, IMAGES, write_wilds  # noqa: E402

MODEL_STAGES = ("train", "evaluate")
NOT_BUDGETED = ("embeddings",)  # imported here: its real cost is the inference throughput below


def _tree_rss(root: psutil.Process) -> int:
    """Resident bytes of `root`'s descendants (the stage command and its workers), not `root` itself."""
    total = 0
    for p in root.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], cwd: Path, env: dict) -> dict:
    """Run `cmd`, polling its process tree's memory every 0.1 s; fail loudly if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    peak, handle = 0, psutil.Process(proc.pid)
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.wait(0.1):
            try:
                peak = max(peak, _tree_rss(handle))
            except psutil.Error:
                pass
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    output = proc.communicate()[0]
    done.set()
    watcher.join()
    print(output, end="", flush=True)
    if proc.returncode:
        raise SystemExit(f"rehearse: {' '.join(cmd)} failed with exit status {proc.returncode}")
    return {"wall_s": round(time.perf_counter() - started, 1), "peak_rss_gb": round(peak / 2**30, 2),
            "ran": "Running stage" in output}


def stage_outputs(stage: dict) -> list[str]:
    """The paths a dvc.yaml stage writes (outs, metrics and plots)."""
    return [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots")
            for o in stage.get(key, [])]


def outputs_of(stage: dict, repo: Path) -> dict:
    """Rows and columns of each parquet the stage wrote."""
    shapes = {}
    for path in stage_outputs(stage):
        if str(path).endswith(".parquet"):
            meta = pq.ParquetFile(repo / path).metadata
            shapes[path] = {"rows": meta.num_rows, "columns": meta.num_columns}
    return shapes


def copy_checkout(repo: Path, reuse: bool) -> None:
    """This checkout's files (tracked and untracked, not ignored, but dvc.lock) in a fresh git repository
    at `repo`; with `reuse`, copied over the last run's repository, whose lock and stage outputs (the
    tracked reports/ too) stay."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    reuse = reuse and (repo / ".git").exists()
    if reuse:
        stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"].values()
        outputs = tuple(path for stage in stages for path in stage_outputs(stage))
        files = [f for f in files if not f.startswith(outputs)]
    else:
        shutil.rmtree(repo, ignore_errors=True)
    for name in filter(None, files):
        if (PROJECT / name).is_file() and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, repo / name)
    if not reuse:
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)


def keep_embeddings(src: Path, dst: Path, ids: pd.Index) -> None:
    """The rows of the embeddings file `src` whose image id is in `ids`, streamed to `dst` a batch at a time:
    what a user who embedded the WILDS images alone imports."""
    source = pq.ParquetFile(src)
    keep = pa.array(ids.astype(str))
    with pq.ParquetWriter(dst, source.schema_arrow) as writer:
        for batch in source.iter_batches(batch_size=20_000):
            writer.write_batch(batch.filter(pc.is_in(batch.column("image_id"), value_set=keep)))


def set_params(path: Path, overrides: dict) -> dict:
    params = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for p in parents:
            node = node[p]
        node[key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def inference_throughput(repo: Path, params: dict, n: int) -> dict:
    """The real backbone (params' embeddings section, the first backbone of params.yaml) over the first `n`
    rehearsal images with their crops, in this process: images per second."""
    import pandas as pd
    from data import QualityReport
    from features.embeddings import compute_embeddings
    from features.backbones import build_backbone
    from stages.embeddings import settings
    name = yaml.safe_load((PROJECT / "params.yaml").read_text())["embeddings"]["backbones"][0]
    cfg = settings(params)
    images = pd.read_parquet(repo / "artifacts/tables/images.parquet").iloc[:n]
    detections = pd.read_parquet(repo / "artifacts/tables/detections.parquet")
    backbone = build_backbone(name, cfg, repo / "artifacts/cache/embeddings/onnx")
    started = time.perf_counter()
    frame, crop = compute_embeddings(images, detections, params["data"]["root"], cfg, lambda: backbone,
                                     repo / "artifacts/cache/inference_check", QualityReport())
    seconds = time.perf_counter() - started
    crops = int((~pd.isna(crop[:, 0])).sum())
    return {"images": len(images), "crops": crops, "seconds": round(seconds, 1),
            "images_per_s": round(len(images) / seconds, 1), "backbone": name,
            "runtime": backbone.runtime, "threads": cfg["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks/out/rehearsal")
    parser.add_argument("--report", type=Path, default=PROJECT / "reports/scale.json")
    parser.add_argument("--scale", type=float, default=1.0, help="share of the real image counts")
    parser.add_argument("--camera-scale", type=float, default=1.0, help="share of the real camera counts")
    parser.add_argument("--landsat-size", type=int, default=48, help="patch side (the real one is 200)")
    parser.add_argument("--jpeg-divisor", type=int, default=12, help="JPEG side = metadata side / this")
    parser.add_argument("--inference-images", type=int, default=2000, help="0: skip the inference check")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--layout", choices=("kaggle", "wilds"), default="kaggle",
                        help="wilds: re-pack the dataset as iWildCam2020-WILDS and run the WILDS scheme")
    parser.add_argument("--generate-only", action="store_true", help="write the dataset, run nothing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the last run's repository: only stages whose code, params or inputs changed "
                             "run; the others keep their measurements from --report")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more params.yaml overrides (yaml values), e.g. train.tune.n_trials=5")
    args = parser.parse_args()
    out = args.out.resolve()
    data = out / "data"
    settings = {"scale": args.scale, "camera_scale": args.camera_scale, "landsat_size": args.landsat_size,
                "jpeg_divisor": args.jpeg_divisor, "generator": (PROJECT / "sample/rehearsal.py").read_text()}
    stamp = data / ".rehearsal.json"
    report: dict = {"machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                                "python": platform.python_version(), "platform": platform.platform()},
                    "settings": {k: v for k, v in settings.items() if k != "generator"}}
    if stamp.exists() and json.loads(stamp.read_text()).get("settings") == settings:
        report["shape"], report["generate_s"] = (json.loads(stamp.read_text())[k] for k in ("shape", "generate_s"))
        print(f"rehearse: reusing the dataset in {data}")
    else:
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        report["shape"] = generate_rehearsal(data, scale=args.scale, camera_scale=args.camera_scale,
                                             jpeg_divisor=args.jpeg_divisor, landsat_size=args.landsat_size,
                                             n_jobs=args.jobs)
        report["generate_s"] = round(time.perf_counter() - started, 1)
        stamp.write_text(json.dumps({"settings": settings, "shape": report["shape"],
                                     "generate_s": report["generate_s"]}))

    root = data
    if args.layout == "wilds":
        root = out / "wilds"
        targets = {s: round(n * args.scale) for s, n in IMAGES.items()}
        cameras = {s: max(1, round(n * args.camera_scale)) for s, n in CAMERAS.items()}
        wilds_stamp = root / ".rehearsal.json"
        if wilds_stamp.exists() and json.loads(wilds_stamp.read_text())["settings"] == report["settings"]:
            report["wilds_shape"] = json.loads(wilds_stamp.read_text())["shape"]
        else:
            shutil.rmtree(root, ignore_errors=True)
            started = time.perf_counter()
            report["wilds_shape"] = write_wilds(data, root, targets, cameras, seed=0)
            ids = pd.read_csv(root / "metadata.csv", usecols=["filename"])["filename"].str[:-4]
            keep_embeddings(data / "embeddings.parquet", root / "embeddings.parquet", pd.Index(ids))
            report["wilds_shape"]["repack_s"] = round(time.perf_counter() - started, 1)
            wilds_stamp.write_text(json.dumps({"settings": report["settings"], "shape": report["wilds_shape"]}))
    if args.generate_only:
        print(json.dumps(report["shape"], indent=1))
        return
    repo = out / ("repo_wilds" if args.layout == "wilds" else "repo")
    copy_checkout(repo, args.reuse)
    previous = json.loads(args.report.read_text())["stages"] if args.reuse and args.report.exists() else {}
    imported = repo / "weights/embeddings.parquet"  # under weights/, the stage's tracked folder
    imported.unlink(missing_ok=True)
    imported.symlink_to(root / "embeddings.parquet")
    overrides = {"data.root": str(root), "embeddings.backbones": ["parquet"],
                 "embeddings.import_file": str(imported.relative_to(repo)),
                 "data.supplemental": report["shape"]["supplemental"]}  # under data/: a WILDS root has none
    if args.layout == "wilds":
        overrides.update({"data.layout": "wilds", "data.metadata": "metadata.csv", "split.scheme": "wilds"})
    overrides.update({k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
    params = set_params(repo / "params.yaml", overrides)
    report["overrides"] = overrides
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dvc = [sys.executable, "-m", "dvc"]
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    report["stages"] = {}
    for name, stage in stages.items():
        if name == "sample":  # the embedded sample: not part of a run on a download
            continue
        print(f"rehearse: stage {name}", flush=True)
        measured = run_measured(dvc + ["repro", "--single-item", name], repo, env)
        if not measured.pop("ran") and name in previous:  # unchanged since the measured run
            measured = {k: previous[name][k] for k in ("wall_s", "peak_rss_gb")}
        report["stages"][name] = dict(measured, outputs=outputs_of(stage, repo))
        print(f"rehearse: {name}: {measured}", flush=True)
    noop = [run_measured(dvc + ["repro", "evaluate", "predict"], repo, env)["wall_s"] for _ in range(2)]
    report["noop_repro_s"] = noop
    walls = {n: s["wall_s"] for n, s in report["stages"].items()}
    report["totals"] = {
        "train_evaluate_s": round(sum(walls[n] for n in MODEL_STAGES), 1),
        "other_stages_s": round(sum(w for n, w in walls.items() if n not in MODEL_STAGES + NOT_BUDGETED), 1),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in report["stages"].values())}
    report["metrics"] = json.loads((repo / "reports/metrics.json").read_text())
    report["metrics"].pop("per_class", None)
    timings = json.loads((repo / "reports/timings.json").read_text())
    report["baselines"] = {name: ({"skipped": m["skipped"]} if "skipped" in m else dict(
        {k: m[k] for k in ("accuracy", "macro_f1", "n_images", "split")}, fit_seconds=timings[name],
        splits={s: {k: r[k] for k in ("accuracy", "macro_f1")} for s, r in m["splits"].items()}))
                           for name, m in json.loads((repo / "reports/baselines.json").read_text()).items()}
    report["best_params"] = json.loads((repo / "artifacts/models/best_params.json").read_text())
    report["calibration"] = json.loads((repo / "artifacts/models/calibration.json").read_text())
    if args.inference_images:
        report["inference"] = inference_throughput(repo, params, args.inference_images)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| stage | wall s | peak RSS GB | wrote |\n|---|---|---|---|")
    for name, s in report["stages"].items():
        wrote = "; ".join(f"{Path(p).name} {v['rows']:,} x {v['columns']:,}" for p, v in s["outputs"].items())
        print(f"| {name} | {s['wall_s']:,.0f} | {s['peak_rss_gb']:.1f} | {wrote} |")
    print(f"\nno-op dvc repro: {noop} s; totals: {report['totals']}; written to {args.report}")


if __name__ == "__main__":
    main()
