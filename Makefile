# Crayonflow. `make demo` and `make test` are all the set-up a fresh machine needs:
# each creates .venv and installs the project when it is missing or pyproject.toml changed.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA  ?= data

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)  ## generated data -> verified datasets (grows into the whole pipeline)
	$(VENV)/bin/crayonflow demo --data-dir $(DATA)

test: $(STAMP)  ## import layering contract, then every test (slow end-to-end ones included)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: $(STAMP)  ## speed targets, as ratios against baselines measured in the same run
	$(PY) tests/benchmarks/bench_store.py
	$(PY) tests/benchmarks/bench_builders.py
	$(PY) tests/benchmarks/bench_segment.py
	$(PY) tests/benchmarks/bench_model.py
	$(PY) tests/benchmarks/bench_training.py

clean:
	rm -rf $(VENV) $(DATA) build *.egg-info .pytest_cache .import_linter_cache
