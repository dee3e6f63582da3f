# Everything runs from the repository's own virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.birdwatch-installed

.PHONY: venv test lint typecheck check classify clean

venv: $(STAMP)

# Re-install only when the dependency list changed: TensorFlow is ~2 GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tf,lite,dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check consumer schemas tests
	$(BIN)/ruff format --check consumer schemas tests

typecheck: venv
	$(BIN)/mypy consumer schemas

test: venv lint typecheck
	$(BIN)/pytest --cov --cov-report=term

classify: venv
	$(BIN)/birdwatch classify

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
