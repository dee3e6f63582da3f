# Everything runs from the repository's own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.birdwatch-installed

.PHONY: venv test test-fast lint typecheck check classify clean

venv: $(STAMP)

# Re-install only when the dependency list changed: TensorFlow is ~2 GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,lite,dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check consumer schemas tests bench scripts
	$(BIN)/ruff format --check consumer schemas tests bench scripts

typecheck: venv
	$(BIN)/mypy consumer schemas bench scripts

test: venv lint typecheck
	$(BIN)/pytest --cov --cov-report=term

# The inner loop (about a minute): no broker, no Java, no TensorFlow import (tests/conftest.py).
test-fast: venv
	$(BIN)/pytest --fast -q

classify: venv
	$(BIN)/birdwatch classify

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

# All benchmark scenarios (several minutes): JSON and PNG plots in bench/out/, a summary on
# stdout; `$(BIN)/python -m bench SCENARIO` runs one. Needs ../shared/data; the Kafka scenarios
# start scripts/kafka when no broker runs. Method and figures: docs/PERFORMANCE.md.
.PHONY: bench
bench: venv
	$(BIN)/python -m bench
