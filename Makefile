# Two commands on a fresh machine: `make run` and `make test` create .venv, install
# requirements.txt into it (once, again when requirements.txt changes), then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast sweep analyze bench mutate clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python train.py

test: $(STAMP)
	$(BIN)/python -m pytest tests --durations=30

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow"

sweep: $(STAMP)
	$(BIN)/python train.py -m +experiment=grid_quick hydra/launcher=parallel

analyze: $(STAMP)
	$(BIN)/python analyze.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_epoch.py

mutate: $(STAMP)
	$(BIN)/python tests/mutations.py

clean:
	rm -rf outputs .pytest_cache
