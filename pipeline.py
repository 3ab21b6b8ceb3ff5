"""Thin CLI: `python pipeline.py <stage>` runs one DVC stage (stages/<stage>.py) with params.yaml."""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
from pathlib import Path

import yaml

# every module of stages/ but the shared one is a stage: adding a stage never edits (and so reruns) this file
STAGES = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent / "stages")]) if m.name != "common")


def _terminate(signum, frame) -> None:
    """SIGTERM unwinds like an exception, so atomic writers remove their temporary files."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = yaml.safe_load(Path(args.params).read_text())
    signal.signal(signal.SIGTERM, _terminate)
    importlib.import_module(f"stages.{args.stage}").run(params)


if __name__ == "__main__":
    main()
