"""Thin CLI: `python pipeline.py <stage>` runs one DVC stage (stages/<stage>.py) with params.yaml."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
from pathlib import Path

import yaml

# every module of stages/ but the shared one is a stage: adding a stage never edits (and so reruns) this file
STAGES = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent / "stages")]) if m.name != "common")


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
