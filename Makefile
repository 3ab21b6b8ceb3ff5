# Quick start: `make repro` then `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyTorch's CPU build, wherever pip finds it: PyPI's torch of the same version pulls several GB of CUDA
# libraries. This extra index serves CPU wheels (2.13.0+cpu, which `torch==2.13.0` accepts); a machine
# whose pip configuration already offers a CPU wheel (find-links) takes that. `make TORCH_INDEX=` leaves
# only your pip configuration; point it at a mirror of CPU wheels if the default is out of reach.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# DVC stage commands say `python`: make it the project's environment.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro repro-camtrap-dp test compare rehearse rehearse-wilds env clean-env

env: $(STAMP)

# pip installs without compiling and compileall then compiles every package on all cores (pip compiles on one):
# make env 80 s instead of 125 s on 2 cores. The bytecode must be written here: where PYTHONDONTWRITEBYTECODE is
# set, Python never caches what it compiles, and every stage process would compile torch and the rest again.
# compileall exits 1 on files written for other Python versions (torch's py312 test helpers); pip skips those too.
$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -c constraints.txt torch
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt -c constraints.txt
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

# ends with the headline (models/headline.py): the chosen model and the baselines beside it, with their intervals
repro: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/python -m models.headline

# The whole pipeline on the sample's Camtrap DP package (sample_data/camtrap_dp) as a DVC experiment: its reports,
# and reports/camtrap_dp/, the package written back with the model's observations (README, Your own cameras).
repro-camtrap-dp: $(STAMP)
	$(BIN)/dvc exp run -n camtrap-dp -S data.layout=camtrap_dp -S data.root=sample_data/camtrap_dp \
		-S data.metadata=datapackage.json -S 'data.supplemental=[]'
	$(BIN)/python -m models.headline

# The test modules on up to 4 processes (2 on a 2-core machine), longest first (LONGEST_FIRST in tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# The DVC experiments of this commit (dvc exp run -S split.seed=N, or queued) over seeds, grouped by the params
# that differ: reports/experiments.md and .json (models/experiments.py).
compare: $(STAMP)
	$(BIN)/python -m models.experiments

# The whole pipeline at iWildCam 2020's real shape (about 60 min on 2 cores, ~27 GB of disk under
# benchmarks/out/rehearsal): writes reports/scale.json. See benchmarks/rehearse.py.
rehearse: $(STAMP)
	$(BIN)/python benchmarks/rehearse.py

# The same dataset re-packed at iWildCam2020-WILDS's shape (203,029 images, official split sizes), run with
# split.scheme: wilds: writes reports/scale_wilds.json.
rehearse-wilds: $(STAMP)
	$(BIN)/python benchmarks/rehearse.py --layout wilds --report reports/scale_wilds.json

clean-env:
	rm -rf $(VENV)
