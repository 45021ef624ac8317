# `make run` and `make test` each set up .venv from nothing (torch pinned to the CPU build first,
# so that pip never pulls CUDA packages) and then do their job.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/darknet-py demo --out demo

test: install
	$(PY) -m pytest -q -ra

.PHONY: install run test
