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
	$(BIN)/python -m pip install --quiet -e '.[tf,lite,tracing,dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check consumer schemas tests bench scripts e2e monitoring
	$(BIN)/ruff format --check consumer schemas tests bench scripts e2e monitoring

typecheck: venv
	$(BIN)/mypy consumer schemas bench scripts e2e monitoring

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

# The deployment run for real (e2e/, docs/OPERATIONS.md "What ran"): plain docker, docker
# compose and kubectl against the engine and cluster the environment points at. Images go into
# the cluster with $(E2E_LOAD_IMAGE) (default `kind load docker-image`); the model, labels and
# photos come from a web server on the host at $(E2E_HOST_IP) (e2e/settings.py). Each target
# tears down what it started, also after a failure. E2E_ARGS passes options, e.g.
# `make e2e-handover E2E_ARGS="--rate 40 --guarantee exactly_once --disruptions rollout,crash"`.
.PHONY: e2e-compose e2e-k8s e2e-handover
e2e-compose: venv
	$(BIN)/python -m e2e compose $(E2E_ARGS)

e2e-k8s: venv
	$(BIN)/python -m e2e k8s $(E2E_ARGS)

e2e-handover: venv
	$(BIN)/python -m e2e handover $(E2E_ARGS)
