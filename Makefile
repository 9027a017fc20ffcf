# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint conformance bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/hub db upgrade
	$(BIN)/hub demo --if-empty
	$(BIN)/hub serve --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/pytest -n auto -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check hub plugins tests conformance bench tools
	$(BIN)/ruff format --check hub plugins tests conformance bench tools

conformance: $(VENV)/.installed
	$(BIN)/hub conformance run

clean:
	rm -rf $(VENV) instance/hub.db*
