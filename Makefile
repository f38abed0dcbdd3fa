# Crayonflow. `make demo` and `make test` are all the set-up a fresh machine needs:
# each creates .venv and installs the project when it is missing or pyproject.toml changed.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA  ?= demo-output
CF    := $(VENV)/bin/crayonflow

.PHONY: demo test bench chaos ui ui-stop deploy worker clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)  ## the demo flow on the local Prefect server: sample world -> datasets -> training -> eval
	$(CF) demo --data-dir $(DATA)

ui: $(STAMP)  ## the local Prefect server and its UI alone, in the foreground (SQLite in $(DATA)/prefect)
	$(CF) server --data-dir $(DATA) --foreground

ui-stop: $(STAMP)  ## stop the background server that make demo / make deploy started
	$(CF) server --data-dir $(DATA) --stop

deploy: $(STAMP)  ## register prefect.yaml's deployments, schedules and trigger with the local server
	$(CF) deploy --data-dir $(DATA)

worker: $(STAMP)  ## a process worker for the local-process pool (runs deployments; Ctrl-C stops it)
	$(CF) worker --data-dir $(DATA)

test: $(STAMP)  ## import layering contract, then every test (slow end-to-end ones included)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: $(STAMP)  ## speed targets, as ratios against baselines measured in the same run
	$(PY) tests/benchmarks/bench_store.py
	$(PY) tests/benchmarks/bench_builders.py
	$(PY) tests/benchmarks/bench_segment.py
	$(PY) tests/benchmarks/bench_model.py
	$(PY) tests/benchmarks/bench_training.py

chaos: $(STAMP)  ## every fault-injection, hostile-input and scale scenario at full count -> docs/reliability.md
	$(PY) -m tests.reliability.trials

clean:
	rm -rf $(VENV) $(DATA) data build *.egg-info .pytest_cache .import_linter_cache
