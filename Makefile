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

# The CPU benchmarks at their recorded settings, into runs/bench/ (about 32 minutes on an idle
# 2-core machine; which ones and why: analysis/README.md, section `make bench`).
bench: install
	mkdir -p runs/bench
	$(PY) -m analysis.assimilation_speed.bench_assimilation --out runs/bench/bench_assimilation.md
	$(PY) -m analysis.model_load.bench_model_load --root here=. --repeats 5 --out runs/bench/model_load
	$(PY) -m analysis.demo.bench_demo --root here=. --repeats 3 --warm --out runs/bench/demo_time
	$(PY) -m analysis.compiled_growth.bench_compiled_growth --n-calls 300 \
	  --out runs/bench/bench_compiled_growth
	$(PY) -m analysis.throughput.bench_reanalysis --n-times 24 --chains 4 --batch-times 4 \
	  --warmup 200 --draws 250 --out runs/bench/bench_reanalysis

lint: install
	$(VENV)/bin/ruff check bayesda tests analysis .ci docs/_hooks
	$(VENV)/bin/ruff format --check bayesda tests analysis .ci docs/_hooks
	$(VENV)/bin/mypy

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs site .pytest_cache
