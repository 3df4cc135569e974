# The two commands of the README: `make repro` and `make test`. Each installs what is missing first
# (Debian packages, then a .venv with the package and its dev extras) and skips what is already done.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := dataset-fashion-mnist latexmk texlive-latex-base texlive-latex-recommended \
                texlive-science texlive-latex-extra poppler-utils libjs-mathjax chromium chromium-driver
DVC := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" DVC_NO_ANALYTICS=1 $(VENV)/bin/dvc

.PHONY: setup system venv test test-fast repro retrain campaign-status site compare modes quick golden bench clean help

help:
	@echo "make repro   - set up, rebuild everything (models, tables, figures, notebooks, paper) with dvc repro,"
	@echo "               then compare the rebuild with the committed build (report in build/reproduction.md)"
	@echo "make retrain - train (resume) every paper-scale model of params.yaml's campaign, in priority order;"
	@echo "               BUDGET=minutes stops cleanly after that long, and no run starts in its last MIN_MINUTES"
	@echo "               (default 10); rerun to continue (README: a working stretch)"
	@echo "make campaign-status - where each campaign run stands, and the hours left"
	@echo "make site    - build the website (rendered notebooks and paper, offline) into build/site"
	@echo "make compare - only that comparison: every number, claim and per-datapoint table against git's HEAD"
	@echo "make modes   - run the notebooks in every numeric mode and print how far each printed number moves"
	@echo "make test    - set up, then run the whole test suite (nbval notebook regressions included)"
	@echo "make test-fast - set up, then run the unit tests only (no goldens, browser or pipeline; about 1.5 minutes)"
	@echo "make quick   - set up, then run the whole pipeline at quick scale in build/quick (a few minutes)"
	@echo "make bench   - run the benchmarks, print the table, write bench/results.json"
	@echo "make golden  - re-execute the notebooks at their defaults into tests/golden (nbval's expectations)"
	@echo "make setup   - only install what is missing (Debian packages and $(VENV))"

setup: system venv

system:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "Debian packages: already installed"; \
	else \
	  echo "Debian packages: installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

test: setup
	$(PY) -m pytest

# The unit layer alone: no nbval goldens, numeric modes, browser or quick pipeline (pytest markers,
# tests/conftest.py); `-o addopts=-ra` leaves out --nbval, so no notebook is collected.
test-fast: setup
	$(PY) -m pytest -o addopts=-ra -m "not slow and not golden and not browser and not pipeline"

# From scratch: the evaluation parts kept for resuming a stage across stretches (results/parts) go too.
repro: setup
	find results/parts -name '*.pkl.xz' -delete
	$(DVC) repro --force
	$(PY) -m amortgap.build.compare --quiet

# Days of CPU over many working stretches: each call resumes from models/campaign (rm -rf it first
# to retrain from scratch), then records the campaign stages' outputs (train@, train_encoder@, train_distilled@<run>) in dvc.lock.
retrain: setup
	$(PY) -m amortgap.campaign run $(if $(BUDGET),--budget-minutes $(BUDGET)) $(if $(MIN_MINUTES),--min-minutes $(MIN_MINUTES))
	$(DVC) commit -f train train_encoder train_distilled

campaign-status: setup
	$(PY) -m amortgap.campaign status

site: setup
	$(DVC) repro site
	@echo "open build/site/index.html"

compare: setup
	$(PY) -m amortgap.build.compare

modes: setup
	$(PY) -m amortgap.build.numeric_modes run && $(PY) -m amortgap.build.numeric_modes spread

quick: setup
	$(PY) -m amortgap.build.pipeline repro-copy build/quick --profile quick

golden: setup
	$(PY) -m amortgap.build.pipeline golden

clean:
	rm -rf $(VENV) build .pytest_cache

bench: setup
	$(PY) bench/benchmarks.py
