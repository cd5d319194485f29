# One entry point for every routine task. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test pytest lint proto proto-check deploy-check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $@

setup: $(BIN)/.installed  ## create .venv with the pinned dependencies

demo: setup  ## synthetic data -> train -> serve -> analyze, on CPU, no Redis (~5 min on 2 cores)
	$(BIN)/lus demo --workdir demo-output

test: setup lint proto-check deploy-check pytest  ## everything CI checks

pytest: setup
	$(BIN)/python -m pytest

lint: setup  ## ruff, mypy, and the import order (pyproject.toml [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

proto: setup  ## regenerate the gRPC stubs from proto/
	$(BIN)/python tools/gen_protos.py

proto-check: setup
	$(BIN)/python tools/gen_protos.py --check

deploy-check: setup  ## render the Kustomize overlays and validate every manifest
	bash deploy/validate.sh

clean:
	rm -rf $(VENV) demo-output .mypy_cache .ruff_cache .pytest_cache
