# Two entry points, each doing all set-up on a fresh machine:
#   make demo   -- assimilate one held-out day with the shipped model (the main job)
#   make test   -- the default (fast) test suite
# and `make docs`: the documentation site, built strictly (warnings are errors) into site/.
VENV ?= .venv
PY := $(VENV)/bin/python
# Real data: an explicit BAYESDA_DATA_DIR wins; otherwise use ../shared/data when present;
# otherwise bayesda falls back to xarray.tutorial (downloads on a machine with internet).
BAYESDA_DATA_DIR ?= $(wildcard $(abspath ../shared/data))
export BAYESDA_DATA_DIR

.PHONY: install demo test test-slow lint docs bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/bayesda demo --out runs/demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check bayesda tests analysis .ci docs/_hooks
	$(VENV)/bin/ruff format --check bayesda tests analysis .ci docs/_hooks
	$(VENV)/bin/mypy

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache
