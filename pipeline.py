"""Thin CLI: `python pipeline.py <stage>` runs one DVC stage (stages/<stage>.py) with the params.yaml keys
dvc.yaml declares for that stage (and the execution section): reading any other key is an error.

A defect in the input (DataError) ends the stage with one line naming the file and the record, exit
status 1; `--traceback` (or CAMTRAP_TRACEBACK=1, e.g. under `dvc repro`) shows the traceback too."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from pathlib import Path

import yaml

from data.quality import DataError
from infra.params import stage_params

# every module of stages/ but the shared one is a stage: adding a stage never edits (and so reruns) this file
STAGES = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent / "stages")]) if m.name != "common")


def _terminate(signum, frame) -> None:
    """SIGTERM unwinds like an exception, so atomic writers remove their temporary files."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--traceback", action="store_true", default=os.environ.get("CAMTRAP_TRACEBACK") == "1",
                        help="on an input error, show the traceback as well as the one-line message")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    declared = yaml.safe_load((Path(__file__).parent / "dvc.yaml").read_text())["stages"][args.stage].get("params", [])
    params = stage_params(yaml.safe_load(Path(args.params).read_text()), declared, args.stage)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        importlib.import_module(f"stages.{args.stage}").run(params)
    except DataError as e:
        if args.traceback:
            raise
        sys.exit(f"{args.stage}: error: {' '.join(str(e).split())}")


if __name__ == "__main__":
    main()
