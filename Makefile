# One command per habit; the README and CI call these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= $(or $(TABSERVE_MODELS_DIR),models)
DEFAULT_MODEL ?= iris
# Empty: the server's own settings decide (TABSERVE_HOST, TABSERVE_PORT, else
# 127.0.0.1:8000), so `TABSERVE_PORT=8021 make serve` and `make serve PORT=8021` agree.
HOST ?=
PORT ?=
# Serving needs the package alone; the dev tools (pytest, mypy, schemathesis, ...)
# come on top, only for the targets that use them.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP   := $(VENV)/.installed-dev

.PHONY: install install-dev serve train test lint typecheck pytest bench clean grpc-code

$(SERVE_STAMP): pyproject.toml
	@echo "make: installing tabserve and what serving needs into $(VENV) (first run: about half a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEV_STAMP): $(SERVE_STAMP)
	@echo "make: adding the dev tools (tests, lint, types) to $(VENV)"
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(SERVE_STAMP)  ## create the virtualenv with the package (what serving needs)

install-dev: $(DEV_STAMP)  ## add the dev tools: pytest, ruff, mypy, schemathesis, ...

train: install  ## train the default model (a new version each time)
	$(BIN)/tabserve train --dataset iris --model random_forest --name $(DEFAULT_MODEL) --models-dir $(MODELS)

serve: install  ## train the default model if none exists, then serve everything under models/
	@if [ -z "$$(find $(MODELS) -name model.json 2>/dev/null | head -n 1)" ]; then \
		echo "make: no model under $(MODELS) yet: training $(DEFAULT_MODEL) first"; \
		$(MAKE) --no-print-directory train; fi
	$(BIN)/tabserve serve --models-dir $(MODELS)$(if $(HOST), --host $(HOST))$(if $(PORT), --port $(PORT))

lint: install-dev  ## ruff lint + format check, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

typecheck: install-dev  ## mypy strict on the packages
	$(BIN)/mypy -p tabserve

pytest: install-dev
	$(BIN)/pytest -n 2 --dist loadscope

test: lint typecheck pytest  ## everything CI runs

bench: install-dev  ## throughput vs the seed-style baseline, drift's cost, stream vs HTTP rows/s, gRPC vs HTTP (and gRPC on vs off), the prediction log's, rollouts', tracing's and access control's cost, boosters' and exported pipelines' engines, import time
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 || \
		echo "wrk not installable: using the slower Python load generator"
	$(BIN)/python -m bench
	$(BIN)/python -m bench.drift --together --rounds 4
	$(BIN)/python -m bench.stream --seconds 5
	$(BIN)/python -m bench.grpc --rounds 3 --seconds 3
	$(BIN)/python -m bench.predlog --seconds 5 --rounds 2
	$(BIN)/python -m bench.rollout --rounds 3
	$(BIN)/python -m bench.tracing --rounds 3
	$(BIN)/python -m bench.auth --rounds 3
	$(BIN)/python -m bench.engines --only XGB --only LGBM --only CatBoost
	$(BIN)/python -m bench.frame_pipelines
	$(BIN)/python -m bench.import_time --runs 3

grpc-code: install-dev  ## regenerate the committed gRPC modules from service/protocol/pb/grpc_predict_v2.proto
	$(BIN)/python tools/grpc_codegen.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
