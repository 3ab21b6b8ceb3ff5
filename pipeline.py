"""Thin CLI: `python pipeline.py <stage>` runs one DVC stage (stages/<stage>.py) with params.yaml."""
from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

import yaml

STAGES = ("sample", "load", "detector_stats", "sequence_timing", "landsat_summary", "image_stats", "join",
          "train", "evaluate", "predict")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = yaml.safe_load(Path(args.params).read_text())
    importlib.import_module(f"stages.{args.stage}").run(params)


if __name__ == "__main__":
    main()
