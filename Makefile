# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint conformance bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml examples/fhirhub-clinic-csv/setup.cfg
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -e examples/fhirhub-clinic-csv
	touch $@

run: $(VENV)/.installed
	$(BIN)/hub db upgrade
	$(BIN)/hub demo --if-empty
	@# A local client for trying the API (every request needs a token; docs/security.md).
	@$(BIN)/hub clients add local-dev --scopes "system/*.cruds" --grant-label "*" >/dev/null 2>&1 || true
	@echo "Authorization: Bearer $$($(BIN)/hub token local-dev --lifetime 86400)"
	@cat instance/demo-login.txt 2>/dev/null || true
	$(BIN)/hub serve --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/pytest -n auto -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check hub plugins tests conformance bench tools conftest.py
	$(BIN)/ruff format --check hub plugins tests conformance bench tools conftest.py
	@# The layers' import contracts in .importlinter (docs/architecture.md).
	$(BIN)/lint-imports

conformance: $(VENV)/.installed
	$(BIN)/hub conformance run

clean:
	rm -rf $(VENV) instance/hub.db*
