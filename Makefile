# The two commands of the README: `make repro` and `make test`. Each installs what is missing first
# (Debian packages, then a .venv with the package and its dev extras) and skips what is already done.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := dataset-fashion-mnist latexmk texlive-latex-base texlive-latex-recommended \
                texlive-science texlive-latex-extra
RUN := runs/reference
# The reference model of Cremer et al.'s architecture (784-200-200-(2x50), ELU) and its decomposition.
TRAIN_ARGS := --epochs 500 --warmup-epochs 10 --patience 50 --lr-schedule cosine --lr-decay 0.1
EVAL_ARGS := --split test --num-points 100

.PHONY: setup system venv test repro clean help

help:
	@echo "make repro  - set up, train the reference VAE and print its gap decomposition"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make setup  - only install what is missing (Debian packages and $(VENV))"

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

repro: setup
	$(PY) -m amortgap train --out $(RUN) --resume $(TRAIN_ARGS)
	$(PY) -m amortgap evaluate $(RUN)/model.pt $(EVAL_ARGS) --out $(RUN)/decomposition_test.csv

clean:
	rm -rf $(VENV) runs .pytest_cache
