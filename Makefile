# `make run` and `make test` each set up .venv from nothing (torch first, then this package) and
# then do their job. TORCH_INDEX: the package index torch comes from. Empty (the default): pip's
# own (PyPI's Linux torch is the CUDA build, several GB, unless a local CPU wheel is found first);
# on a CPU-only machine set it to PyTorch's CPU index to skip the CUDA packages:
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/darknet-py demo --out demo

test: install
	$(PY) -m pytest -q -ra

.PHONY: install run test
