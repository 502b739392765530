# One command per habit; the README and CI call these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= models
DEFAULT_MODEL ?= iris
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve train test lint typecheck pytest bench clean

$(BIN)/tabserve: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/tabserve  ## create the virtualenv with the package and dev tools

train: install  ## train the default model (a new version each time)
	$(BIN)/tabserve train --dataset iris --model random_forest --name $(DEFAULT_MODEL) --models-dir $(MODELS)

serve: install  ## train the default model if none exists, then serve everything under models/
	@if [ -z "$$(find $(MODELS) -name model.json 2>/dev/null | head -n 1)" ]; then \
		$(MAKE) --no-print-directory train; fi
	$(BIN)/tabserve serve --models-dir $(MODELS) --host $(HOST) --port $(PORT)

lint: install  ## ruff lint + format check, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: install  ## mypy strict on the packages
	$(BIN)/mypy -p tabserve

pytest: install
	$(BIN)/pytest -n 2 --dist loadscope

test: lint typecheck pytest  ## everything CI runs

bench: install  ## throughput vs the seed-style baseline, drift's cost, stream vs HTTP rows/s, the prediction log's cost, boosters' engines
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 || \
		echo "wrk not installable: using the slower Python load generator"
	$(BIN)/python -m bench
	$(BIN)/python -m bench.drift --together --rounds 4
	$(BIN)/python -m bench.stream --seconds 5
	$(BIN)/python -m bench.predlog --seconds 5 --rounds 2
	$(BIN)/python -m bench.engines --only XGB --only LGBM --only CatBoost

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
