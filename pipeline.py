"""Thin CLI: `python pipeline.py <stage>` runs one DVC stage (stages/<stage>.py) with the params.yaml keys
dvc.yaml declares for that stage (and the execution section): reading any other key is an error.

A defect in the input (DataError) ends the stage with one line naming the file and the record, exit
status 1; `--traceback` (or CAMTRAP_TRACEBACK=1, e.g. under `dvc repro`) shows the traceback too."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import yaml

from data.quality import DataError
from infra.params import stage_params

DVC_YAML = Path(__file__).parent / "dvc.yaml"
PARAMS_READ = "CAMTRAP_PARAMS_READ"  # a folder: each stage that ends well writes there the params keys it read


def _terminate(signum, frame) -> None:
    """SIGTERM unwinds like an exception, so atomic writers remove their temporary files."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", help="a stage of dvc.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--traceback", action="store_true", default=os.environ.get("CAMTRAP_TRACEBACK") == "1",
                        help="on an input error, show the traceback as well as the one-line message")
    args = parser.parse_args(argv)
    # dvc.yaml's stages are the stages: adding one never edits (and so reruns) this file, and stages/ holds nothing else
    stages = yaml.safe_load(DVC_YAML.read_text())["stages"]
    if args.stage not in stages:
        sys.exit(f"pipeline.py: {args.stage!r} is not a stage of dvc.yaml; the stages are {', '.join(stages)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    declared = stages[args.stage].get("params", [])
    params = stage_params(yaml.safe_load(Path(args.params).read_text()), declared, args.stage)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        importlib.import_module(f"stages.{args.stage}").run(params)
    except DataError as e:
        if args.traceback:
            raise
        sys.exit(f"{args.stage}: error: {' '.join(str(e).split())}")
    if os.environ.get(PARAMS_READ):  # the keys the stage read, for the test that finds declared keys never read
        folder = Path(os.environ[PARAMS_READ])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{args.stage}.json").write_text(json.dumps(sorted(params.read)))


if __name__ == "__main__":
    main()
